//! The microloan API, generated at build time from `proto/`.
//!
//! Module paths follow the proto packages: `microloan::ledger::v1::ledger_service_server`
//! and so on. `FILE_DESCRIPTOR_SET` feeds gRPC reflection.
#![forbid(unsafe_code)]
#![allow(clippy::all, clippy::pedantic, missing_debug_implementations)]

/// Encoded `google.protobuf.FileDescriptorSet` of every file under `proto/`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/microloan_descriptor.bin"));

pub mod google {
    pub mod r#type {
        tonic::include_proto!("google.r#type");
    }
}

pub mod microloan {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("microloan.common.v1");
        }
    }
    pub mod account {
        pub mod v1 {
            tonic::include_proto!("microloan.account.v1");
        }
    }
    pub mod scoring {
        pub mod v1 {
            tonic::include_proto!("microloan.scoring.v1");
        }
    }
    pub mod ledger {
        pub mod v1 {
            tonic::include_proto!("microloan.ledger.v1");
        }
    }
    pub mod notification {
        pub mod v1 {
            tonic::include_proto!("microloan.notification.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("microloan.events.v1");
        }
    }
}

pub use microloan::{account, common, events, ledger, notification, scoring};
