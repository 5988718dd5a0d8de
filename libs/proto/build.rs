//! Compiles every `.proto` under `<repo>/proto` with protox (pure Rust: no `protoc` on
//! the machine) and generates tonic clients and servers. The encoded descriptor set is
//! written next to the code so that every service can serve reflection from it.

use std::path::{Path, PathBuf};

use prost::Message;

/// Upper bound on proto files, so a runaway directory walk fails loudly.
const PROTO_FILES_MAX: usize = 256;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto").canonicalize()?;
    let mut files = Vec::new();
    collect_protos(&proto_root, &mut files)?;
    files.sort();
    assert!(
        !files.is_empty(),
        "no .proto files under {}",
        proto_root.display()
    );
    assert!(files.len() <= PROTO_FILES_MAX, "too many .proto files");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let file_descriptors = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("microloan_descriptor.bin"),
        file_descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        // RPCs that a later issue implements answer UNIMPLEMENTED until then.
        .generate_default_stubs(true)
        .compile_fds(file_descriptors)?;
    Ok(())
}

fn collect_protos(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    Ok(())
}
