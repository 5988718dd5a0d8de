//! PII at rest (DESIGN §9, docs/deploy.md §7): every PII field is sealed with
//! AES-256-GCM under a key id, and found by a keyed hash that never uses the
//! encryption key.
//!
//! Sealed form (bytes, stored as `bytea`):
//! `version (1) | key id (8) | nonce (12) | ciphertext and tag`. The key id is derived
//! from the key itself (the first 8 bytes of SHA-256 over a label and the key), so an
//! operator rotates by swapping base64 secrets without naming ids. The associated data
//! binds a ciphertext to its field and its customer: a sealed phone copied into another
//! row or column does not open.
//!
//! Rotation: `PII_ENCRYPTION_KEY` seals and opens; `PII_DECRYPT_ONLY_KEY` only opens.
//! `account reencrypt` reseals every row under the active key. The lookup hash
//! (HMAC-SHA256 with `PII_LOOKUP_KEY`) does not change under that rotation.

use std::fmt;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const SEALED_VERSION: u8 = 1;
const KEY_BYTES: usize = 32;
const KEY_ID_BYTES: usize = 8;
const NONCE_BYTES: usize = 12;
const HEADER_BYTES: usize = 1 + KEY_ID_BYTES + NONCE_BYTES;
const KEY_ID_LABEL: &[u8] = b"microloan-pii-key-id-v1";

/// Which PII field a value belongs to: part of the associated data and of the lookup
/// hash input, so equal values in different fields never match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PiiField {
    Name,
    NationalId,
    Phone,
}

impl PiiField {
    fn label(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::NationalId => "national_id",
            Self::Phone => "phone",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    #[error("a PII key must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("sealed PII is malformed")]
    Malformed,
    #[error("sealed PII is under key {0}, which is not configured")]
    UnknownKey(String),
    #[error("sealed PII does not open (tampered, or another field or customer)")]
    DoesNotOpen,
}

/// One AES-256 key and its derived id.
#[derive(Clone)]
struct SealingKey {
    id: [u8; KEY_ID_BYTES],
    cipher: Aes256Gcm,
}

impl SealingKey {
    fn from_base64(text: &str) -> Result<Self, PiiError> {
        let bytes = BASE64.decode(text.trim()).map_err(|_| PiiError::BadKey)?;
        if bytes.len() != KEY_BYTES {
            return Err(PiiError::BadKey);
        }
        let digest = Sha256::new()
            .chain_update(KEY_ID_LABEL)
            .chain_update(&bytes)
            .finalize();
        let mut id = [0; KEY_ID_BYTES];
        id.copy_from_slice(&digest[..KEY_ID_BYTES]);
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| PiiError::BadKey)?;
        Ok(Self { id, cipher })
    }
}

/// The keys of the account service; `Debug` shows key ids only.
#[derive(Clone)]
pub struct PiiKeys {
    active: SealingKey,
    decrypt_only: Option<SealingKey>,
    lookup: Hmac<Sha256>,
}

impl fmt::Debug for PiiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PiiKeys")
            .field("active", &hex(&self.active.id))
            .field(
                "decrypt_only",
                &self.decrypt_only.as_ref().map(|key| hex(&key.id)),
            )
            .finish_non_exhaustive()
    }
}

impl PiiKeys {
    /// From the base64 secrets `PII_ENCRYPTION_KEY`, `PII_DECRYPT_ONLY_KEY` (optional)
    /// and `PII_LOOKUP_KEY`. The lookup key must differ from both sealing keys.
    pub fn from_base64(
        encryption_key: &str,
        decrypt_only_key: Option<&str>,
        lookup_key: &str,
    ) -> Result<Self, PiiError> {
        let active = SealingKey::from_base64(encryption_key)?;
        let decrypt_only = decrypt_only_key.map(SealingKey::from_base64).transpose()?;
        let lookup_bytes = BASE64
            .decode(lookup_key.trim())
            .map_err(|_| PiiError::BadKey)?;
        if lookup_bytes.len() != KEY_BYTES {
            return Err(PiiError::BadKey);
        }
        let lookup_as_sealing = SealingKey::from_base64(lookup_key)?;
        let reused = lookup_as_sealing.id == active.id
            || decrypt_only
                .as_ref()
                .is_some_and(|key| key.id == lookup_as_sealing.id);
        if reused {
            return Err(PiiError::BadKey);
        }
        let lookup =
            <Hmac<Sha256> as Mac>::new_from_slice(&lookup_bytes).map_err(|_| PiiError::BadKey)?;
        Ok(Self {
            active,
            decrypt_only,
            lookup,
        })
    }

    /// The active key's id (hex), as stored in sealed values.
    pub fn active_key_id(&self) -> String {
        hex(&self.active.id)
    }

    /// The active key's id as stored: bytes 2-9 of every value it sealed.
    pub fn active_key_id_bytes(&self) -> [u8; KEY_ID_BYTES] {
        self.active.id
    }

    /// Seals `plaintext` of `field` for `customer_id` under the active key.
    pub fn seal(&self, field: PiiField, customer_id: &str, plaintext: &str) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_BYTES] = rand_nonce();
        let aad = associated_data(field, customer_id);
        let ciphertext = self
            .active
            .cipher
            .encrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of a short string cannot fail");
        let mut sealed = Vec::with_capacity(HEADER_BYTES + ciphertext.len());
        sealed.push(SEALED_VERSION);
        sealed.extend_from_slice(&self.active.id);
        sealed.extend_from_slice(&nonce_bytes);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Opens a sealed value with whichever configured key sealed it.
    pub fn open(
        &self,
        field: PiiField,
        customer_id: &str,
        sealed: &[u8],
    ) -> Result<String, PiiError> {
        if sealed.len() < HEADER_BYTES || sealed[0] != SEALED_VERSION {
            return Err(PiiError::Malformed);
        }
        let key_id = &sealed[1..1 + KEY_ID_BYTES];
        let key = [Some(&self.active), self.decrypt_only.as_ref()]
            .into_iter()
            .flatten()
            .find(|key| key.id == key_id)
            .ok_or_else(|| PiiError::UnknownKey(hex(key_id)))?;
        let nonce_bytes: [u8; NONCE_BYTES] = sealed[1 + KEY_ID_BYTES..HEADER_BYTES]
            .try_into()
            .map_err(|_| PiiError::Malformed)?;
        let aad = associated_data(field, customer_id);
        let plaintext = key
            .cipher
            .decrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: &sealed[HEADER_BYTES..],
                    aad: &aad,
                },
            )
            .map_err(|_| PiiError::DoesNotOpen)?;
        String::from_utf8(plaintext).map_err(|_| PiiError::Malformed)
    }

    /// True when `sealed` is under the active key (else `reencrypt` should reseal it).
    pub fn is_sealed_with_active_key(&self, sealed: &[u8]) -> bool {
        sealed.len() >= HEADER_BYTES && sealed[1..1 + KEY_ID_BYTES] == self.active.id
    }

    /// The keyed lookup hash of a normalised value (HMAC-SHA256, 32 bytes): equal
    /// values of one field hash equal, and without the key nothing can be tested.
    pub fn lookup_hash(&self, field: PiiField, normalised_value: &str) -> [u8; 32] {
        let mut mac = self.lookup.clone();
        mac.update(field.label().as_bytes());
        mac.update(b"\0");
        mac.update(normalised_value.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// [`Self::lookup_hash`] as lowercase hex: the form scoring receives.
    pub fn lookup_hash_hex(&self, field: PiiField, normalised_value: &str) -> String {
        hex(&self.lookup_hash(field, normalised_value))
    }
}

fn associated_data(field: PiiField, customer_id: &str) -> Vec<u8> {
    [field.label().as_bytes(), b"\0", customer_id.as_bytes()].concat()
}

/// A fresh random 96-bit nonce: with at most a few billion seals per key, the chance of
/// a repeat stays far below AES-GCM's 2^-32 bound.
fn rand_nonce() -> [u8; NONCE_BYTES] {
    use aes_gcm::aead::{AeadCore, OsRng};
    Aes256Gcm::generate_nonce(&mut OsRng).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE="; // "a" x 32
    const KEY_B: &str = "YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI="; // "b" x 32
    const LOOKUP: &str = "bGxsbGxsbGxsbGxsbGxsbGxsbGxsbGxsbGxsbGxsbGw="; // "l" x 32
    const CUSTOMER: &str = "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f";

    fn keys(active: &str, decrypt_only: Option<&str>) -> PiiKeys {
        PiiKeys::from_base64(active, decrypt_only, LOOKUP).expect("keys")
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_field_and_customer() {
        let keys = keys(KEY_A, None);
        let sealed = keys.seal(PiiField::Phone, CUSTOMER, "+8613812345678");
        assert!(
            !sealed.windows(4).any(|window| window == b"1381"),
            "no plaintext"
        );
        assert_eq!(
            keys.open(PiiField::Phone, CUSTOMER, &sealed).as_deref(),
            Ok("+8613812345678")
        );
        assert_eq!(
            keys.open(PiiField::NationalId, CUSTOMER, &sealed),
            Err(PiiError::DoesNotOpen)
        );
        assert_eq!(
            keys.open(PiiField::Phone, "another-customer", &sealed),
            Err(PiiError::DoesNotOpen)
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            keys.open(PiiField::Phone, CUSTOMER, &tampered),
            Err(PiiError::DoesNotOpen)
        );
        assert_eq!(
            keys.open(PiiField::Phone, CUSTOMER, &sealed[..10]),
            Err(PiiError::Malformed)
        );
        // A fresh nonce each time: sealing twice gives two ciphertexts.
        assert_ne!(
            sealed,
            keys.seal(PiiField::Phone, CUSTOMER, "+8613812345678")
        );
        assert_eq!(
            keys.open(
                PiiField::Name,
                CUSTOMER,
                &keys.seal(PiiField::Name, CUSTOMER, "买买提·艾力")
            )
            .as_deref(),
            Ok("买买提·艾力")
        );
    }

    #[test]
    fn rotation_opens_old_rows_with_the_decrypt_only_key_and_seals_with_the_new() {
        let old = keys(KEY_A, None);
        let sealed_old = old.seal(PiiField::NationalId, CUSTOMER, "11010519491231002X");
        let rotating = keys(KEY_B, Some(KEY_A));
        assert_eq!(
            rotating
                .open(PiiField::NationalId, CUSTOMER, &sealed_old)
                .as_deref(),
            Ok("11010519491231002X")
        );
        assert!(!rotating.is_sealed_with_active_key(&sealed_old));
        let resealed = rotating.seal(PiiField::NationalId, CUSTOMER, "11010519491231002X");
        assert!(rotating.is_sealed_with_active_key(&resealed));
        let new_only = keys(KEY_B, None);
        assert!(matches!(
            new_only.open(PiiField::NationalId, CUSTOMER, &sealed_old),
            Err(PiiError::UnknownKey(_))
        ));
        assert!(
            new_only
                .open(PiiField::NationalId, CUSTOMER, &resealed)
                .is_ok()
        );
    }

    #[test]
    fn the_lookup_hash_survives_rotation_and_separates_fields() {
        let before = keys(KEY_A, None).lookup_hash_hex(PiiField::Phone, "+8613812345678");
        let after = keys(KEY_B, Some(KEY_A)).lookup_hash_hex(PiiField::Phone, "+8613812345678");
        assert_eq!(before, after);
        assert_eq!(before.len(), 64);
        assert_ne!(
            before,
            keys(KEY_A, None).lookup_hash_hex(PiiField::NationalId, "+8613812345678")
        );
        let other_lookup = PiiKeys::from_base64(KEY_A, None, KEY_B).expect("keys");
        assert_ne!(
            before,
            other_lookup.lookup_hash_hex(PiiField::Phone, "+8613812345678")
        );
    }

    #[test]
    fn keys_must_be_32_bytes_and_the_lookup_key_its_own() {
        for bad in ["", "not base64!", "YWJj", &format!("{KEY_A}YQ==")] {
            assert_eq!(
                PiiKeys::from_base64(bad, None, LOOKUP).err(),
                Some(PiiError::BadKey),
                "{bad}"
            );
        }
        assert_eq!(
            PiiKeys::from_base64(KEY_A, None, KEY_A).err(),
            Some(PiiError::BadKey)
        );
        assert_eq!(
            PiiKeys::from_base64(KEY_A, Some(KEY_B), KEY_B).err(),
            Some(PiiError::BadKey)
        );
        let debug = format!("{:?}", keys(KEY_A, Some(KEY_B)));
        assert!(!debug.contains(KEY_A) && !debug.contains("aaaa"), "{debug}");
    }
}
