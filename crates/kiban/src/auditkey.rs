//! The audit log's checkpoint key: random, sealed by the key store, never stored in the clear.

use std::fs;

use anyhow::{Context, Result};
use kiban_audit::CheckpointKey;
use zeroize::Zeroizing;

use crate::datadir::DataDir;

const FILE: &str = "audit-checkpoint.sealed";
const AAD: &[u8] = b"kiban/audit-checkpoint-key/v1";

/// Loads the checkpoint key of `dd`'s audit log, creating and sealing a fresh one on first use.
pub fn audit_checkpoint_key(dd: &DataDir) -> Result<CheckpointKey> {
    let ks = dd.key_store()?;
    let path = dd.keys().join(FILE);
    if !path.exists() {
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::fill(&mut raw[..]);
        fs::write(&path, ks.seal(AAD, &raw[..])).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let sealed = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let raw = Zeroizing::new(ks.open_sealed(AAD, &sealed).context("audit checkpoint key")?);
    CheckpointKey::from_bytes(&raw).context("audit checkpoint key")
}
