//! Secrets on a cluster: a job's secrets travel only sealed for that job.
//!
//! Every node of a cluster (the client that submits, and each executor) holds the **cluster secret**
//! in its own key file (32 random bytes, mode 0600, never in a plan, a flag or an environment
//! variable). A job's secret payload (a pseudonym key, the gate's facts) is sealed with AES-256-GCM
//! under a **job key** = keyed BLAKE3 of (salt ‖ job id) under a key derived from the cluster secret;
//! the plan carries only the job id, the salt, the nonce and the ciphertext. The scheduler, which
//! plans and forwards but never evaluates kiban's UDFs, needs no key file at all; an executor opens a
//! payload the first time a task evaluates the UDF, and keeps the opened value only in memory.

use std::path::Path;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{ClusterError, Result};

/// The key-derivation context of job keys; changing it changes every job key.
const JOB_KDF_CONTEXT: &str = "kiban cluster job key v1";

/// The secret every node of one cluster holds in its own key file.
pub struct ClusterSecret(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ClusterSecret(Zeroizing::new(bytes))
    }

    /// A fresh random secret.
    pub fn generate() -> Self {
        let mut b = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut b[..]).expect("operating system random source");
        ClusterSecret(b)
    }

    /// Writes the secret as 64 hex digits to a new file readable by its owner only.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let io = |source| ClusterError::Io { path: path.display().to_string(), source };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        let text = Zeroizing::new(hex::encode(&self.0[..]));
        f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(io)
    }

    /// Reads a key file written by [`Self::write_new`]; refuses one that others may read.
    pub fn read(path: &Path) -> Result<Self> {
        Ok(ClusterSecret(read_key_file(path)?))
    }

    pub(crate) fn job_key(&self, salt: &[u8; 16], job_id: &str) -> Zeroizing<[u8; 32]> {
        let base = Zeroizing::new(blake3::derive_key(JOB_KDF_CONTEXT, &self.0[..]));
        let mut h = blake3::Hasher::new_keyed(&base);
        h.update(salt);
        h.update(job_id.as_bytes());
        Zeroizing::new(*h.finalize().as_bytes())
    }

    /// Seals `plain` for job `job_id`; `kind` names what it is (bound into the ciphertext).
    pub fn seal(&self, kind: &str, job_id: &str, plain: &[u8]) -> SealedJob {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut salt).expect("operating system random source");
        getrandom::fill(&mut nonce).expect("operating system random source");
        let key = self.job_key(&salt, job_id);
        let cipher = Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key");
        let aad = aad(kind, job_id);
        let ct = cipher.encrypt(&nonce.into(), Payload { msg: plain, aad: &aad }).expect("AES-GCM encryption");
        SealedJob { kind: kind.to_owned(), job_id: job_id.to_owned(), salt, nonce, ciphertext: ct }
    }

    /// Opens a sealed payload; a wrong cluster secret, another job's payload or any damage is an error.
    pub fn open(&self, sealed: &SealedJob) -> Result<Zeroizing<Vec<u8>>> {
        let key = self.job_key(&sealed.salt, &sealed.job_id);
        let cipher = Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key");
        let aad = aad(&sealed.kind, &sealed.job_id);
        cipher
            .decrypt(&sealed.nonce.into(), Payload { msg: &sealed.ciphertext, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| {
                ClusterError::Secret(format!(
                    "the {} payload of job {} does not open with this node's cluster secret",
                    sealed.kind, sealed.job_id
                ))
            })
    }
}

/// Reads a 32-byte key kept as 64 hex digits in a file readable by its owner only (mode 0600).
pub fn read_key_file(path: &Path) -> Result<Zeroizing<[u8; 32]>> {
    let io = |source| ClusterError::Io { path: path.display().to_string(), source };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(ClusterError::Secret(format!(
                "{}: a key file must be readable by its owner only (mode 0600), is {:o}",
                path.display(),
                mode & 0o777
            )));
        }
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    let mut b = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut b[..])
        .map_err(|_| ClusterError::Secret(format!("{}: a key file must hold 64 hex digits", path.display())))?;
    Ok(b)
}

fn aad(kind: &str, job_id: &str) -> Vec<u8> {
    format!("kiban cluster job v1\0{kind}\0{job_id}").into_bytes()
}

/// A job's secret payload as it travels inside a plan: nothing here reveals the payload.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SealedJob {
    /// What the payload is (`token_key`, `gate_facts`).
    pub kind: String,
    /// The job it belongs to.
    pub job_id: String,
    /// The job key's salt.
    pub salt: [u8; 16],
    /// The AES-GCM nonce.
    pub nonce: [u8; 12],
    /// The sealed payload.
    pub ciphertext: Vec<u8>,
}

/// The wire form of [`SealedJob`] (hex strings in JSON).
#[derive(Serialize, Deserialize)]
struct SealedWire {
    v: u32,
    kind: String,
    job_id: String,
    salt: String,
    nonce: String,
    ciphertext: String,
}

impl std::fmt::Debug for SealedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedJob({} for job {}, {} bytes)", self.kind, self.job_id, self.ciphertext.len())
    }
}

impl SealedJob {
    /// The bytes carried in a plan.
    pub fn to_bytes(&self) -> Vec<u8> {
        let w = SealedWire {
            v: 1,
            kind: self.kind.clone(),
            job_id: self.job_id.clone(),
            salt: hex::encode(self.salt),
            nonce: hex::encode(self.nonce),
            ciphertext: hex::encode(&self.ciphertext),
        };
        serde_json::to_vec(&w).expect("sealed job serializes")
    }

    /// Parses the bytes carried in a plan.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let bad = |what: &str| ClusterError::Secret(format!("a sealed job payload is malformed: {what}"));
        let w: SealedWire = serde_json::from_slice(b).map_err(|e| bad(&e.to_string()))?;
        if w.v != 1 {
            return Err(bad("unknown version"));
        }
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        hex::decode_to_slice(&w.salt, &mut salt).map_err(|_| bad("salt"))?;
        hex::decode_to_slice(&w.nonce, &mut nonce).map_err(|_| bad("nonce"))?;
        let ciphertext = hex::decode(&w.ciphertext).map_err(|_| bad("ciphertext"))?;
        Ok(SealedJob { kind: w.kind, job_id: w.job_id, salt, nonce, ciphertext })
    }
}

/// The cluster secret of this process, when it is an executor (installed once at start).
static NODE_SECRET: std::sync::OnceLock<ClusterSecret> = std::sync::OnceLock::new();

/// Installs this node's cluster secret (an executor, at start); a second call is an error.
pub fn install_node_secret(secret: ClusterSecret) -> Result<()> {
    NODE_SECRET.set(secret).map_err(|_| ClusterError::Secret("this node's cluster secret is already installed".into()))
}

/// Opens a payload with this node's cluster secret.
pub(crate) fn open_on_node(sealed: &SealedJob) -> Result<Zeroizing<Vec<u8>>> {
    let Some(s) = NODE_SECRET.get() else {
        return Err(ClusterError::Secret(format!(
            "job {} needs the cluster secret, and this process has none (start executors with --key-file)",
            sealed.job_id
        )));
    };
    s.open(sealed)
}

/// Opens a job file with this node's cluster secret.
pub(crate) fn open_job_file_on_node(r: &crate::jobfile::JobFileRef) -> Result<crate::jobfile::JobFileReader> {
    let Some(s) = NODE_SECRET.get() else {
        return Err(ClusterError::Secret(format!(
            "job {} needs the cluster secret, and this process has none (start executors with --key-file)",
            r.job_id
        )));
    };
    s.open_job_file(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_payload_opens_only_with_the_same_secret_job_and_kind() {
        let s = ClusterSecret::from_bytes([7; 32]);
        let sealed = s.seal("token_key", "job-1", b"secret bytes");
        assert_eq!(&s.open(&sealed).unwrap()[..], b"secret bytes");
        assert!(ClusterSecret::from_bytes([8; 32]).open(&sealed).is_err());
        let mut other = sealed.clone();
        other.job_id = "job-2".into();
        assert!(s.open(&other).is_err());
        other = sealed.clone();
        other.kind = "gate_facts".into();
        assert!(s.open(&other).is_err());
        let text = String::from_utf8(sealed.to_bytes()).unwrap();
        assert!(!text.contains(&hex::encode(b"secret bytes")));
        assert!(!format!("{sealed:?}").contains("secret"));
    }

    #[test]
    fn key_file_is_owner_only_and_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cluster.key");
        let s = ClusterSecret::from_bytes([3; 32]);
        s.write_new(&p).unwrap();
        let back = ClusterSecret::read(&p).unwrap();
        let sealed = s.seal("k", "j", b"x");
        assert_eq!(&back.open(&sealed).unwrap()[..], b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(ClusterSecret::read(&p).unwrap_err().to_string().contains("0600"));
        }
    }
}
