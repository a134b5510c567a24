//! The checkpoint key: signs checkpoints with HMAC-SHA-256.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::AuditError;

/// The secret that signs checkpoints; supplied by the caller from the key store, never stored in the audit directory.
#[derive(Clone)]
pub struct CheckpointKey(Zeroizing<Vec<u8>>);

impl CheckpointKey {
    /// The shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 32;

    /// A key from raw bytes; at least [`Self::MIN_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AuditError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(AuditError::KeyTooShort { len: bytes.len(), min: Self::MIN_LEN });
        }
        Ok(CheckpointKey(Zeroizing::new(bytes.to_vec())))
    }

    /// A key from hexadecimal text; at least [`Self::MIN_LEN`] bytes once decoded.
    pub fn from_hex(text: &str) -> Result<Self, AuditError> {
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| AuditError::KeyNotHex)?);
        Self::from_bytes(&bytes)
    }

    /// HMAC-SHA-256 of `message` under this key.
    pub(crate) fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(message);
        m.finalize().into_bytes().into()
    }

    /// Whether `tag` is the HMAC of `message`, compared in constant time.
    pub(crate) fn check(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(message);
        m.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CheckpointKey(<redacted>)")
    }
}
