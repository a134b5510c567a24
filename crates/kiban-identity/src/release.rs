//! Per-release pseudonym domains (issue 4 item 4, A3): every release gets its own domain, so the
//! tokens of two releases cannot be joined, unless the review committee's decision allows linkage
//! with an earlier release; then that release's domain is reused and the decision is recorded.
//!
//! A release's key is derived, not stored: `HMAC-SHA-256(root, "kiban/release-domain" ‖ 0x00 ‖
//! domain)` under the key store's `release-root` domain key (random, wrapped by the master key like
//! every domain key). The register `<keys>/releases.json` records, per release id, the domain, the
//! root key version and the linkage decision — never a key — so any release's tokens can be made
//! again while the root key version exists, and a rotated root gives new releases fresh keys.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::keystore::{KeyStore, KeyStoreError};
use crate::pseudonym::PseudonymKey;

/// The key-store domain whose key the release keys are derived from.
pub const ROOT_DOMAIN: &str = "release-root";
const REGISTER: &str = "releases.json";

/// Errors of the release register.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The key store.
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    /// The release id is not a plain name.
    #[error("release id {0:?} must be 1–128 characters of A–Z a–z 0–9 . _ -")]
    BadId(String),
    /// Linkage asked with a release that has no domain.
    #[error("release {0} has no pseudonym domain: linkage needs an earlier release")]
    UnknownRelease(String),
    /// The release was registered before with another linkage.
    #[error("release {release} already has domain {domain}; its linkage cannot change")]
    Conflict {
        /// The release.
        release: String,
        /// Its recorded domain.
        domain: String,
    },
    /// The register file.
    #[error("{path}: {reason}")]
    Register {
        /// The file.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
}

/// The committee's decision that allows a release to be linked with an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkageDecision {
    /// The earlier release whose tokens the new one must join.
    pub earlier_release: String,
    /// The decision's reference (application and decision id in the registry).
    pub decision: String,
}

/// One release's entry in the register (no key material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseDomain {
    /// Release id.
    pub release: String,
    /// Pseudonym domain (`release/<id>`, or the linked release's).
    pub domain: String,
    /// Version of the `release-root` key the domain key is derived from.
    pub root_version: u32,
    /// The release whose domain is reused, when linkage was allowed.
    pub linked_to: Option<String>,
    /// The committee's decision that allowed it.
    pub decision: Option<String>,
    /// When registered (RFC 3339).
    pub created: String,
}

fn plain(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn register_path(ks: &KeyStore) -> PathBuf {
    ks.dir().join(REGISTER)
}

/// The register: every release's domain, oldest first.
pub fn releases(ks: &KeyStore) -> Result<Vec<ReleaseDomain>, ReleaseError> {
    let path = register_path(ks);
    match fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| ReleaseError::Register { path, reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(ReleaseError::Register { path, reason: e.to_string() }),
    }
}

fn save(path: &Path, all: &[ReleaseDomain]) -> Result<(), ReleaseError> {
    let err = |e: std::io::Error| ReleaseError::Register { path: path.to_owned(), reason: e.to_string() };
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(all).expect("serializable")).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

fn derive(ks: &mut KeyStore, domain: &str, root_version: u32) -> Result<PseudonymKey, ReleaseError> {
    let root = ks.domain_key_version(ROOT_DOMAIN, root_version)?;
    let key = root.keyed_digest("release-domain", domain.as_bytes());
    Ok(PseudonymKey::from_bytes(domain, root_version, key))
}

/// The pseudonym key of `release`: its own new domain, or — with the committee's `linkage`
/// decision — the earlier release's domain. Registering is idempotent: asking again for a
/// registered release gives the same key (and refuses a different linkage).
pub fn release_key(
    ks: &mut KeyStore,
    release: &str,
    linkage: Option<&LinkageDecision>,
) -> Result<(PseudonymKey, ReleaseDomain), ReleaseError> {
    if !plain(release) {
        return Err(ReleaseError::BadId(release.to_owned()));
    }
    let path = register_path(ks);
    // Read-modify-write of the register: one process at a time (the server and the CLI share it).
    let lock_path = ks.dir().join("releases.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .and_then(|f| f.lock().map(|_| f))
        .map_err(|e| ReleaseError::Register { path: lock_path.clone(), reason: e.to_string() })?;
    let mut all = releases(ks)?;
    if let Some(r) = all.iter().find(|r| r.release == release).cloned() {
        if linkage.map(|l| &l.earlier_release) != r.linked_to.as_ref() {
            return Err(ReleaseError::Conflict { release: r.release, domain: r.domain });
        }
        return Ok((derive(ks, &r.domain, r.root_version)?, r));
    }
    let (domain, root_version) = match linkage {
        Some(l) => {
            let earlier = all
                .iter()
                .find(|r| r.release == l.earlier_release)
                .ok_or_else(|| ReleaseError::UnknownRelease(l.earlier_release.clone()))?;
            (earlier.domain.clone(), earlier.root_version)
        }
        None => (format!("release/{release}"), ks.domain_key(ROOT_DOMAIN)?.version()),
    };
    let entry = ReleaseDomain {
        release: release.to_owned(),
        domain,
        root_version,
        linked_to: linkage.map(|l| l.earlier_release.clone()),
        decision: linkage.map(|l| l.decision.clone()),
        created: chrono::Utc::now().to_rfc3339(),
    };
    let key = derive(ks, &entry.domain, entry.root_version)?;
    all.push(entry.clone());
    save(&path, &all)?;
    drop(lock);
    Ok((key, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiban_model::id::PersonKey;

    #[test]
    fn a3_each_release_has_its_own_domain_and_linkage_reuses_the_earlier_one_when_allowed() {
        let t = tempfile::tempdir().unwrap();
        let mut ks = KeyStore::create(&t.path().join("keys")).unwrap();
        let p = PersonKey::from_u64(0x1234);
        let (k1, d1) = release_key(&mut ks, "rel-2025-001", None).unwrap();
        let (k2, d2) = release_key(&mut ks, "rel-2025-002", None).unwrap();
        assert_eq!((d1.domain.as_str(), d2.domain.as_str()), ("release/rel-2025-001", "release/rel-2025-002"));
        assert_ne!(k1.token(p), k2.token(p), "two releases' tokens of one person cannot be joined");
        let allowed = LinkageDecision { earlier_release: "rel-2025-001".into(), decision: "app-7/decision-3".into() };
        let (k3, d3) = release_key(&mut ks, "rel-2025-003", Some(&allowed)).unwrap();
        assert_eq!(k3.token(p), k1.token(p), "linkage allowed: the earlier release's domain is reused");
        assert_eq!((d3.linked_to.as_deref(), d3.decision.as_deref()), (Some("rel-2025-001"), Some("app-7/decision-3")));
        // Derived, not stored: reopening the key store gives the same keys; the register holds no key.
        let dir = ks.dir().to_path_buf();
        drop(ks);
        let mut ks = KeyStore::open(&dir, None).unwrap();
        assert_eq!(release_key(&mut ks, "rel-2025-002", None).unwrap().0.token(p), k2.token(p));
        let text = fs::read_to_string(dir.join(REGISTER)).unwrap();
        assert!(!text.split(|c: char| !c.is_ascii_hexdigit()).any(|w| w.len() >= 32), "no key material: {text}");
        assert_eq!(releases(&ks).unwrap().len(), 3);
        // A recorded linkage cannot change, and linkage needs a known release.
        assert!(matches!(release_key(&mut ks, "rel-2025-002", Some(&allowed)), Err(ReleaseError::Conflict { .. })));
        let unknown = LinkageDecision { earlier_release: "nope".into(), decision: "x".into() };
        assert!(matches!(release_key(&mut ks, "rel-4", Some(&unknown)), Err(ReleaseError::UnknownRelease(_))));
        assert!(matches!(release_key(&mut ks, "../x", None), Err(ReleaseError::BadId(_))));
        // A rotated root gives new releases fresh keys; old releases keep theirs.
        ks.rotate(ROOT_DOMAIN).unwrap();
        let (k5, d5) = release_key(&mut ks, "rel-2025-005", None).unwrap();
        assert_eq!(d5.root_version, 2);
        assert_ne!(k5.token(p), k1.token(p));
        assert_eq!(release_key(&mut ks, "rel-2025-001", None).unwrap().0.token(p), k1.token(p));
    }
}
