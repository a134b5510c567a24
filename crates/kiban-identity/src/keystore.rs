//! The key store (`<data-dir>/keys`): the master key, the key-check record, and the per-domain
//! pseudonym keys wrapped by the master key; plus envelope encryption for files at rest.
//!
//! Layout of the directory:
//! - `master.key` — 64 hex digits and a newline, mode 0600. Absent when the operator supplies the
//!   key through `KIBAN_MASTER_KEY` instead.
//! - `keycheck.json` — an AES-256-GCM sealing of a fixed known plaintext under the master key, so a
//!   wrong key is told apart from a damaged file. It never contains the key.
//! - `pseudonym-keys.json` — the per-domain keys, each sealed under the master key with the domain
//!   and version as associated data, so a key cannot be moved to another domain.
//!
//! - `keyring.json` — the key-encryption keys (KEKs), each sealed under the master key. Data keys
//!   are wrapped by a KEK, not by the master key, so rotating the master key re-seals this small
//!   file and never touches the data (R12: rotation without data loss). Created with the store, or
//!   on first open of a store made before it existed (then exclusively, so two processes cannot
//!   each invent a different first KEK).
//!
//! Sealed data format (`seal`): `KBN2` ‖ KEK id (u32 big-endian) ‖ wrapped data key (12-byte nonce ‖
//! 32-byte key ‖ 16-byte tag) ‖ 12-byte nonce ‖ ciphertext ‖ 16-byte tag. A fresh data key is drawn
//! per sealed file. The older `KBN1` format (data key wrapped by the master key itself) still opens:
//! by the current master key, or after a rotation by the retired master kept sealed in the keyring.
//!
//! Master-key rotation ([`KeyStore::rotate_master`]) writes every file sealed under the master key
//! anew as `*.next`, then creates `rotation.commit` (the commit point), then renames the `*.next`
//! files into place. [`KeyStore::open`] finishes a committed rotation and discards an uncommitted
//! one, so a crash at any step leaves a store that opens with exactly one of the two keys.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::pseudonym::PseudonymKey;

const MASTER_FILE: &str = "master.key";
const CHECK_FILE: &str = "keycheck.json";
const DOMAIN_FILE: &str = "pseudonym-keys.json";
const RING_FILE: &str = "keyring.json";
const COMMIT_FILE: &str = "rotation.commit";
/// Files sealed under the master key, rewritten together by a rotation.
const MASTER_SEALED: [&str; 3] = [CHECK_FILE, RING_FILE, DOMAIN_FILE];
const CHECK_PLAINTEXT: &[u8] = b"kiban key check v1";
const CHECK_AAD: &[u8] = b"kiban/keycheck";
const DEK_AAD: &[u8] = b"kiban/data-key";
const MAGIC_V1: &[u8; 4] = b"KBN1";
const MAGIC: &[u8; 4] = b"KBN2";
const NONCE: usize = 12;
const TAG: usize = 16;
const WRAPPED_DEK: usize = NONCE + 32 + TAG;

/// Everything that can go wrong with the key store; no variant ever carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// No master key file and no `KIBAN_MASTER_KEY`.
    #[error("master key file {path} is missing and KIBAN_MASTER_KEY is not set (run `kiban init`)")]
    MissingKeyFile {
        /// Where the file was expected.
        path: PathBuf,
    },
    /// The master key file can be read by group or others.
    #[error("master key file {path} has mode {mode:o}; it must be readable by the owner only (chmod 600)")]
    BadPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The master key text is not 64 hex digits.
    #[error("master key from {source_name} is malformed: {rule}")]
    MalformedKey {
        /// `file` or `KIBAN_MASTER_KEY`.
        source_name: &'static str,
        /// The rule broken (never the key).
        rule: &'static str,
    },
    /// The key-check record does not open with this master key.
    #[error("the master key does not match this key store (key-check failed): wrong KIBAN_MASTER_KEY or key file")]
    WrongMasterKey,
    /// The key-check record is missing or unreadable.
    #[error("key-check record {path} is missing or damaged: {reason}")]
    BadKeyCheck {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `create` found an existing key store.
    #[error("a key store already exists in {path}; refusing to overwrite it")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
    },
    /// Sealed data did not open: wrong key, wrong associated data, or damage. Never yields garbage.
    #[error("sealed data rejected: {0}")]
    Unseal(&'static str),
    /// The domain key file is damaged.
    #[error("pseudonym key file {path} is damaged: {reason}")]
    BadDomainKeys {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The keyring file is damaged.
    #[error("keyring {path} is damaged: {reason}")]
    BadKeyring {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No key for this pseudonym domain.
    #[error("no pseudonym key for domain {0:?}")]
    UnknownDomain(String),
    /// A file-system error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyStoreError + '_ {
    move |source| KeyStoreError::Io { path: path.to_path_buf(), source }
}

/// The 256-bit master key; zeroized on drop and never printed.
#[derive(Clone)]
pub(crate) struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    fn parse(text: &str, source_name: &'static str) -> Result<Self, KeyStoreError> {
        let t = text.trim();
        if t.len() != 64 {
            return Err(KeyStoreError::MalformedKey { source_name, rule: "expected 64 hex digits (32 bytes)" });
        }
        let mut k = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(t, &mut k[..])
            .map_err(|_| KeyStoreError::MalformedKey { source_name, rule: "contains a character that is not hex" })?;
        Ok(MasterKey(k))
    }
    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.0[..]).expect("32-byte key")
    }
}

/// A fresh random master key as 64 hex digits, for a rotation whose key must be saved first.
pub fn random_master_key_hex() -> Zeroizing<String> {
    Zeroizing::new(hex::encode(random_bytes::<32>()))
}

/// Draws random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("operating system random source");
    b
}

/// AES-256-GCM seal with a random nonce: `nonce ‖ ciphertext ‖ tag`.
fn aead_seal(cipher: &Aes256Gcm, aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let nonce = random_bytes::<NONCE>();
    let ct = cipher
        .encrypt(&nonce.into(), Payload { msg, aad })
        .expect("AES-GCM encryption only fails on inputs over 64 GiB");
    let mut out = Vec::with_capacity(NONCE + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn aead_open(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE + TAG {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE);
    let nonce: [u8; NONCE] = nonce.try_into().ok()?;
    cipher.decrypt(&nonce.into(), Payload { msg: ct, aad }).ok()
}

#[derive(Serialize, Deserialize)]
struct KeyCheck {
    version: u32,
    sealed_hex: String,
}

/// One stored pseudonym key, sealed under the master key.
#[derive(Clone, Serialize, Deserialize)]
struct DomainEntry {
    domain: String,
    version: u32,
    /// Sealed key, AAD = `kiban/domain-key|{domain}|{version}`.
    sealed_hex: String,
    created: String,
    /// False once rotated out: kept so earlier releases can still be re-derived under audit.
    active: bool,
}

/// One key-encryption key of the keyring, sealed under the master key.
#[derive(Clone, Serialize, Deserialize)]
struct KekEntry {
    id: u32,
    /// Sealed key, AAD = `kiban/kek|{id}`.
    sealed_hex: String,
    created: String,
    /// New data keys are wrapped by the active KEK; the others stay for reading.
    active: bool,
    /// A retired master key: opens `KBN1` data written before the keyring existed.
    #[serde(default)]
    retired_master: bool,
}

/// `keyring.json`.
#[derive(Clone, Serialize, Deserialize)]
struct Keyring {
    version: u32,
    /// The store existed before the keyring: `KBN1` data may exist, sealed by the master key
    /// itself, so a rotation must keep the old master (as a retired KEK).
    #[serde(default)]
    legacy_v1_data: bool,
    keys: Vec<KekEntry>,
}

fn kek_aad(id: u32) -> Vec<u8> {
    format!("kiban/kek|{id}").into_bytes()
}

fn dek_aad_v2(kek: u32) -> Vec<u8> {
    format!("kiban/data-key|{kek}").into_bytes()
}

/// The new master key a rotation made, to hand to the operator (zeroized on drop, never `Debug`).
pub struct NewMasterKey(Zeroizing<String>);

impl NewMasterKey {
    /// The key as 64 hex digits, for the operator to store (e.g. in KIBAN_MASTER_KEY).
    pub fn expose_hex(&self) -> &str {
        &self.0
    }
}

/// Where a master-key rotation stops early, to prove crash safety in tests.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationStop {
    /// After the `*.next` files are written, before the commit point.
    BeforeCommit,
    /// After the commit point, before any rename.
    AfterCommit,
    /// After the first rename.
    AfterFirstRename,
}

/// What a master-key rotation did (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// KEKs re-sealed.
    pub keks: usize,
    /// Pseudonym domain keys re-sealed.
    pub domain_keys: usize,
    /// Whether the old master was kept (sealed) to open `KBN1` data.
    pub kept_retired_master: bool,
}

fn domain_aad(domain: &str, version: u32) -> Vec<u8> {
    format!("kiban/domain-key|{domain}|{version}").into_bytes()
}

/// An opened key store: holds the master key in memory and hands out pseudonym keys that cannot
/// export their bytes.
pub struct KeyStore {
    dir: PathBuf,
    master: MasterKey,
    domains: Vec<DomainEntry>,
    ring: Keyring,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("master", &self.master)
            .field("domains", &self.domains.len())
            .finish()
    }
}

/// The domain keys file as it is on disk now (another process may have added keys since).
fn read_domains(dir: &Path) -> Result<Vec<DomainEntry>, KeyStoreError> {
    let domain_path = dir.join(DOMAIN_FILE);
    match fs::read(&domain_path) {
        Ok(raw) => serde_json::from_slice(&raw)
            .map_err(|e| KeyStoreError::BadDomainKeys { path: domain_path.clone(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(KeyStoreError::Io { path: domain_path, source: e }),
    }
}

fn write_private(path: &Path, bytes: &[u8], create_new: bool) -> Result<(), KeyStoreError> {
    let mut o = fs::OpenOptions::new();
    o.write(true);
    if create_new {
        o.create_new(true);
    } else {
        o.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Writes via a temporary file and rename, so a crash leaves the old or the new file, never half.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KeyStoreError> {
    let tmp = path.with_extension("tmp");
    write_private(&tmp, bytes, false)?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn new_kek(master: &MasterKey, id: u32) -> KekEntry {
    let kek = Zeroizing::new(random_bytes::<32>());
    KekEntry {
        id,
        sealed_hex: hex::encode(aead_seal(&master.cipher(), &kek_aad(id), &kek[..])),
        created: chrono::Utc::now().to_rfc3339(),
        active: true,
        retired_master: false,
    }
}

fn sync_dir(dir: &Path) -> Result<(), KeyStoreError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Finishes a committed master-key rotation (renames the `*.next` files into place) or discards an
/// uncommitted one; a no-op when none is under way.
fn recover_rotation(dir: &Path) -> Result<(), KeyStoreError> {
    let commit = dir.join(COMMIT_FILE);
    let committed = commit.exists();
    for f in std::iter::once(MASTER_FILE).chain(MASTER_SEALED) {
        let next = dir.join(format!("{f}.next"));
        if !next.exists() {
            continue;
        }
        if committed {
            fs::rename(&next, dir.join(f)).map_err(io(&next))?;
        } else {
            fs::remove_file(&next).map_err(io(&next))?;
        }
    }
    if committed {
        sync_dir(dir)?;
        fs::remove_file(&commit).map_err(io(&commit))?;
    }
    Ok(())
}

/// Reads the keyring, creating it (exclusively) for a store made before keyrings existed; every
/// KEK must open with the master key and exactly one must be active.
fn open_keyring(dir: &Path, master: &MasterKey) -> Result<Keyring, KeyStoreError> {
    let path = dir.join(RING_FILE);
    let bad = |reason: String| KeyStoreError::BadKeyring { path: path.clone(), reason };
    let raw = match fs::read(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ring = Keyring { version: 1, legacy_v1_data: true, keys: vec![new_kek(master, 1)] };
            let json = serde_json::to_vec_pretty(&ring).expect("serializable");
            match write_private(&path, &json, true) {
                Ok(()) => {}
                // Another process made it first: use theirs.
                Err(KeyStoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            fs::read(&path).map_err(io(&path))?
        }
        Err(e) => return Err(KeyStoreError::Io { path, source: e }),
    };
    let ring: Keyring = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
    if ring.keys.iter().filter(|k| k.active).count() != 1 {
        return Err(bad("exactly one key-encryption key must be active".into()));
    }
    for k in &ring.keys {
        let sealed = hex::decode(&k.sealed_hex).map_err(|_| bad(format!("KEK {} is not hex", k.id)))?;
        if aead_open(&master.cipher(), &kek_aad(k.id), &sealed).is_none() {
            return Err(bad(format!("KEK {} does not open with the master key", k.id)));
        }
    }
    Ok(ring)
}

impl KeyStore {
    /// Creates `dir` with a fresh random master key file (mode 0600) and its key-check record.
    pub fn create(dir: &Path) -> Result<KeyStore, KeyStoreError> {
        let key_path = dir.join(MASTER_FILE);
        if key_path.exists() || dir.join(CHECK_FILE).exists() {
            return Err(KeyStoreError::AlreadyExists { path: dir.to_path_buf() });
        }
        fs::create_dir_all(dir).map_err(io(dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        }
        let master = MasterKey(Zeroizing::new(random_bytes::<32>()));
        let mut text = Zeroizing::new(hex::encode(&master.0[..]));
        text.push('\n');
        write_private(&key_path, text.as_bytes(), true)?;
        let check =
            KeyCheck { version: 1, sealed_hex: hex::encode(aead_seal(&master.cipher(), CHECK_AAD, CHECK_PLAINTEXT)) };
        let json = serde_json::to_vec_pretty(&check).expect("serializable");
        write_private(&dir.join(CHECK_FILE), &json, true)?;
        let ring = Keyring { version: 1, legacy_v1_data: false, keys: vec![new_kek(&master, 1)] };
        write_private(&dir.join(RING_FILE), &serde_json::to_vec_pretty(&ring).expect("serializable"), true)?;
        Ok(KeyStore { dir: dir.to_path_buf(), master, domains: vec![], ring })
    }

    /// Opens the key store in `dir`; `master_key_override` (from `KIBAN_MASTER_KEY`) wins over the file.
    pub fn open(dir: &Path, master_key_override: Option<&str>) -> Result<KeyStore, KeyStoreError> {
        recover_rotation(dir)?;
        let master = match master_key_override {
            Some(text) => MasterKey::parse(text, "KIBAN_MASTER_KEY")?,
            None => {
                let path = dir.join(MASTER_FILE);
                let meta = match fs::metadata(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(KeyStoreError::MissingKeyFile { path });
                    }
                    other => other.map_err(io(&path))?,
                };
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = meta.permissions().mode() & 0o777;
                    if mode & 0o077 != 0 {
                        return Err(KeyStoreError::BadPermissions { path, mode });
                    }
                }
                let _ = meta;
                let text = Zeroizing::new(fs::read_to_string(&path).map_err(io(&path))?);
                MasterKey::parse(&text, "file")?
            }
        };
        let check_path = dir.join(CHECK_FILE);
        let bad = |reason: String| KeyStoreError::BadKeyCheck { path: check_path.clone(), reason };
        let raw = fs::read(&check_path).map_err(|e| bad(e.to_string()))?;
        let check: KeyCheck = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
        let sealed = hex::decode(&check.sealed_hex).map_err(|e| bad(e.to_string()))?;
        match aead_open(&master.cipher(), CHECK_AAD, &sealed) {
            Some(p) if p == CHECK_PLAINTEXT => {}
            _ => return Err(KeyStoreError::WrongMasterKey),
        }
        let domains = read_domains(dir)?;
        let ring = open_keyring(dir, &master)?;
        Ok(KeyStore { dir: dir.to_path_buf(), master, domains, ring })
    }

    /// Lists plain problems with the key store for `kiban doctor`; empty when all is well.
    pub fn check(dir: &Path, master_key_override: Option<&str>) -> Vec<String> {
        let mut problems = vec![];
        if !dir.is_dir() {
            problems.push(format!("key store directory {} does not exist (run `kiban init`)", dir.display()));
            return problems;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key_path = dir.join(MASTER_FILE);
            if master_key_override.is_some()
                && let Ok(m) = fs::metadata(&key_path)
                && m.permissions().mode() & 0o077 != 0
            {
                problems.push(
                    KeyStoreError::BadPermissions { path: key_path, mode: m.permissions().mode() & 0o777 }.to_string(),
                );
            }
        }
        match KeyStore::open(dir, master_key_override) {
            Ok(ks) => {
                for d in &ks.domains {
                    if ks.unwrap_domain(d).is_err() {
                        problems.push(format!(
                            "pseudonym key {} v{} does not open with the master key",
                            d.domain, d.version
                        ));
                    }
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
        problems
    }

    /// The key store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Encrypts `plaintext` under a fresh data key wrapped by the active KEK; `aad` is bound, not stored.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let (id, kek) = self.active_kek();
        let dek = Zeroizing::new(random_bytes::<32>());
        let wrapped = aead_seal(&kek, &dek_aad_v2(id), &dek[..]);
        let body = aead_seal(&Aes256Gcm::new_from_slice(&dek[..]).expect("32 bytes"), aad, plaintext);
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + wrapped.len() + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&body);
        out
    }

    /// Opens what [`KeyStore::seal`] made (either format); a wrong key, wrong `aad` or any damage is
    /// an error.
    pub fn open_sealed(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let wrong = "the data key does not unwrap: wrong master key or damaged header";
        let (dek, body) = if let Some(rest) = sealed.strip_prefix(MAGIC) {
            if rest.len() < 4 + WRAPPED_DEK + NONCE + TAG {
                return Err(KeyStoreError::Unseal("truncated"));
            }
            let id = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
            let (wrapped, body) = rest[4..].split_at(WRAPPED_DEK);
            let kek = self.kek(id).ok_or(KeyStoreError::Unseal(wrong))?;
            (aead_open(&kek, &dek_aad_v2(id), wrapped).ok_or(KeyStoreError::Unseal(wrong))?, body)
        } else if let Some(rest) = sealed.strip_prefix(MAGIC_V1) {
            if rest.len() < WRAPPED_DEK + NONCE + TAG {
                return Err(KeyStoreError::Unseal("truncated"));
            }
            let (wrapped, body) = rest.split_at(WRAPPED_DEK);
            // Written before the keyring: wrapped by the master key of that time.
            let dek = std::iter::once(self.master.cipher())
                .chain(self.ring.keys.iter().filter(|k| k.retired_master).filter_map(|k| self.unwrap_kek(k)))
                .find_map(|c| aead_open(&c, DEK_AAD, wrapped))
                .ok_or(KeyStoreError::Unseal(wrong))?;
            (dek, body)
        } else {
            return Err(KeyStoreError::Unseal("not kiban sealed data (bad magic)"));
        };
        let dek = Zeroizing::new(dek);
        let cipher = Aes256Gcm::new_from_slice(&dek).map_err(|_| KeyStoreError::Unseal("data key has wrong length"))?;
        aead_open(&cipher, aad, body)
            .ok_or(KeyStoreError::Unseal("authentication failed: damaged data or wrong associated data"))
    }

    fn unwrap_kek(&self, e: &KekEntry) -> Option<Aes256Gcm> {
        let sealed = hex::decode(&e.sealed_hex).ok()?;
        let raw = Zeroizing::new(aead_open(&self.master.cipher(), &kek_aad(e.id), &sealed)?);
        Aes256Gcm::new_from_slice(&raw).ok()
    }

    fn kek(&self, id: u32) -> Option<Aes256Gcm> {
        self.ring.keys.iter().find(|k| k.id == id && !k.retired_master).and_then(|k| self.unwrap_kek(k))
    }

    fn active_kek(&self) -> (u32, Aes256Gcm) {
        let e = self.ring.keys.iter().find(|k| k.active).expect("open checked that one KEK is active");
        (e.id, self.unwrap_kek(e).expect("open checked that every KEK unwraps"))
    }

    /// Ids of the key-encryption keys and which one is active (no key material).
    pub fn keks(&self) -> Vec<(u32, bool, bool)> {
        self.ring.keys.iter().map(|k| (k.id, k.active, k.retired_master)).collect()
    }

    /// Starts a new key-encryption key for data sealed from now on; earlier data keeps opening with
    /// the KEK that wrapped it. Returns the new KEK's id.
    pub fn rotate_data_key(&mut self) -> Result<u32, KeyStoreError> {
        let id = self.ring.keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
        let mut ring = self.ring.clone();
        for k in &mut ring.keys {
            k.active = false;
        }
        ring.keys.push(new_kek(&self.master, id));
        write_atomic(&self.dir.join(RING_FILE), &serde_json::to_vec_pretty(&ring).expect("serializable"))?;
        self.ring = ring;
        Ok(id)
    }

    /// Replaces the master key by `new_key_hex` (or a fresh random key) without touching any data
    /// file: the key check, the keyring and the pseudonym keys are sealed anew under the new key.
    /// With a key file the new key replaces it; otherwise the caller must hand the returned key to
    /// the operator. Crash-safe (see the module docs).
    pub fn rotate_master(
        &mut self,
        new_key_hex: Option<&str>,
    ) -> Result<(NewMasterKey, RotationReport), KeyStoreError> {
        self.rotate_master_stopping(new_key_hex, None)
    }

    #[doc(hidden)]
    pub fn rotate_master_stopping(
        &mut self,
        new_key_hex: Option<&str>,
        stop: Option<RotationStop>,
    ) -> Result<(NewMasterKey, RotationReport), KeyStoreError> {
        let new = match new_key_hex {
            Some(h) => MasterKey::parse(h, "new master key")?,
            None => MasterKey(Zeroizing::new(random_bytes::<32>())),
        };
        if new.0[..] == self.master.0[..] {
            return Err(KeyStoreError::MalformedKey {
                source_name: "new master key",
                rule: "must differ from the current key",
            });
        }
        // Everything sealed under the master key, opened now: a failure here changes nothing.
        let mut keks = Vec::new();
        for e in &self.ring.keys {
            let sealed = hex::decode(&e.sealed_hex).map_err(|_| self.bad_ring("a KEK is not hex"))?;
            let raw = Zeroizing::new(
                aead_open(&self.master.cipher(), &kek_aad(e.id), &sealed)
                    .ok_or_else(|| self.bad_ring("a KEK does not open with the master key"))?,
            );
            keks.push((e.clone(), raw));
        }
        let mut ring = Keyring { version: 1, legacy_v1_data: false, keys: vec![] };
        for (e, raw) in &keks {
            ring.keys
                .push(KekEntry { sealed_hex: hex::encode(aead_seal(&new.cipher(), &kek_aad(e.id), raw)), ..e.clone() });
        }
        let kept_retired_master = self.ring.legacy_v1_data;
        if kept_retired_master {
            let id = ring.keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
            ring.keys.push(KekEntry {
                id,
                sealed_hex: hex::encode(aead_seal(&new.cipher(), &kek_aad(id), &self.master.0[..])),
                created: chrono::Utc::now().to_rfc3339(),
                active: false,
                retired_master: true,
            });
        }
        let mut domains = Vec::new();
        for d in &self.domains {
            let sealed = hex::decode(&d.sealed_hex).map_err(|_| self.bad_domains("sealed key is not hex"))?;
            let raw = Zeroizing::new(
                aead_open(&self.master.cipher(), &domain_aad(&d.domain, d.version), &sealed)
                    .ok_or_else(|| self.bad_domains("a domain key does not open with the master key"))?,
            );
            domains.push(DomainEntry {
                sealed_hex: hex::encode(aead_seal(&new.cipher(), &domain_aad(&d.domain, d.version), &raw)),
                ..d.clone()
            });
        }
        let check =
            KeyCheck { version: 1, sealed_hex: hex::encode(aead_seal(&new.cipher(), CHECK_AAD, CHECK_PLAINTEXT)) };
        let dir = self.dir.clone();
        let next = |f: &str| dir.join(format!("{f}.next"));
        let file_key = dir.join(MASTER_FILE).exists();
        let mut hex_text = Zeroizing::new(hex::encode(&new.0[..]));
        if file_key {
            hex_text.push('\n');
            write_private(&next(MASTER_FILE), hex_text.as_bytes(), false)?;
            hex_text.pop();
        }
        write_private(&next(CHECK_FILE), &serde_json::to_vec_pretty(&check).expect("serializable"), false)?;
        write_private(&next(RING_FILE), &serde_json::to_vec_pretty(&ring).expect("serializable"), false)?;
        write_private(&next(DOMAIN_FILE), &serde_json::to_vec_pretty(&domains).expect("serializable"), false)?;
        if stop == Some(RotationStop::BeforeCommit) {
            return Ok((NewMasterKey(hex_text), RotationReport { keks: 0, domain_keys: 0, kept_retired_master }));
        }
        write_private(&dir.join(COMMIT_FILE), b"kiban master-key rotation committed\n", true)?;
        sync_dir(&dir)?;
        let report = RotationReport { keks: keks.len(), domain_keys: domains.len(), kept_retired_master };
        match stop {
            Some(RotationStop::AfterCommit) => return Ok((NewMasterKey(hex_text), report)),
            Some(RotationStop::AfterFirstRename) => {
                fs::rename(next(CHECK_FILE), dir.join(CHECK_FILE)).map_err(io(&dir))?;
                return Ok((NewMasterKey(hex_text), report));
            }
            _ => {}
        }
        recover_rotation(&dir)?;
        self.master = new;
        self.ring = ring;
        self.domains = domains;
        Ok((NewMasterKey(hex_text), report))
    }

    fn bad_ring(&self, reason: &str) -> KeyStoreError {
        KeyStoreError::BadKeyring { path: self.dir.join(RING_FILE), reason: reason.into() }
    }

    fn bad_domains(&self, reason: &str) -> KeyStoreError {
        KeyStoreError::BadDomainKeys { path: self.dir.join(DOMAIN_FILE), reason: reason.into() }
    }

    fn unwrap_domain(&self, e: &DomainEntry) -> Result<PseudonymKey, KeyStoreError> {
        let bad =
            |reason: &str| KeyStoreError::BadDomainKeys { path: self.dir.join(DOMAIN_FILE), reason: reason.into() };
        let sealed = hex::decode(&e.sealed_hex).map_err(|_| bad("sealed key is not hex"))?;
        let mut raw = aead_open(&self.master.cipher(), &domain_aad(&e.domain, e.version), &sealed)
            .ok_or_else(|| bad("a domain key does not open with the master key"))?;
        let key: [u8; 32] = raw.as_slice().try_into().map_err(|_| bad("domain key has wrong length"))?;
        raw.zeroize();
        Ok(PseudonymKey::from_bytes(&e.domain, e.version, key))
    }

    fn save_domains(&self) -> Result<(), KeyStoreError> {
        let json = serde_json::to_vec_pretty(&self.domains).expect("serializable");
        write_atomic(&self.dir.join(DOMAIN_FILE), &json)
    }

    /// Locks the domain keys file against other processes (the server and the CLI share it): a
    /// change is read-modify-write of the whole file.
    fn lock_domains(&self) -> Result<fs::File, KeyStoreError> {
        let path = self.dir.join("pseudonym-keys.lock");
        let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
        f.lock().map_err(io(&path))?;
        Ok(f)
    }

    /// Adds a key as the domain's next version, under the lock and on the file as it is now;
    /// returns the version.
    fn add_domain_key_locked(&mut self, domain: &str, key: &[u8; 32]) -> Result<u32, KeyStoreError> {
        self.domains = read_domains(&self.dir)?;
        let version = self.domains.iter().filter(|d| d.domain == domain).map(|d| d.version).max().unwrap_or(0) + 1;
        for d in self.domains.iter_mut().filter(|d| d.domain == domain) {
            d.active = false;
        }
        let sealed = aead_seal(&self.master.cipher(), &domain_aad(domain, version), key);
        self.domains.push(DomainEntry {
            domain: domain.to_owned(),
            version,
            sealed_hex: hex::encode(sealed),
            created: chrono::Utc::now().to_rfc3339(),
            active: true,
        });
        self.save_domains()?;
        Ok(version)
    }

    /// Finds a domain entry here, or else in the file (another process may have added it).
    fn find(&self, pred: impl Fn(&DomainEntry) -> bool) -> Result<Option<DomainEntry>, KeyStoreError> {
        if let Some(e) = self.domains.iter().find(|d| pred(d)) {
            return Ok(Some(e.clone()));
        }
        Ok(read_domains(&self.dir)?.into_iter().filter(|d| pred(d)).last())
    }

    /// The active pseudonym key of `domain`, drawing and storing a new random one on first use.
    pub fn domain_key(&mut self, domain: &str) -> Result<PseudonymKey, KeyStoreError> {
        // The file, not memory, says which version is active: another process may have rotated it.
        self.domains = read_domains(&self.dir)?;
        if let Some(e) = self.domains.iter().find(|d| d.domain == domain && d.active) {
            return self.unwrap_domain(e);
        }
        let _lock = self.lock_domains()?;
        self.domains = read_domains(&self.dir)?;
        if let Some(e) = self.domains.iter().find(|d| d.domain == domain && d.active) {
            return self.unwrap_domain(e);
        }
        let key = Zeroizing::new(random_bytes::<32>());
        let version = self.add_domain_key_locked(domain, &key)?;
        Ok(PseudonymKey::from_bytes(domain, version, *key))
    }

    /// The active key of an existing domain; unlike [`KeyStore::domain_key`] it never creates one
    /// (a linkage secret must be imported, not invented).
    pub fn active_domain_key(&self, domain: &str) -> Result<PseudonymKey, KeyStoreError> {
        // The file, not memory, says which version is active: another process may have rotated it.
        let e = read_domains(&self.dir)?
            .into_iter()
            .rfind(|d| d.domain == domain && d.active)
            .ok_or_else(|| KeyStoreError::UnknownDomain(domain.to_owned()))?;
        self.unwrap_domain(&e)
    }

    /// A specific version of a domain key (active or rotated out), for re-deriving an older release.
    pub fn domain_key_version(&self, domain: &str, version: u32) -> Result<PseudonymKey, KeyStoreError> {
        let e = self
            .find(|d| d.domain == domain && d.version == version)?
            .ok_or_else(|| KeyStoreError::UnknownDomain(format!("{domain} v{version}")))?;
        self.unwrap_domain(&e)
    }

    /// Rotates `domain` to a new random key; the old version stays stored but inactive.
    pub fn rotate(&mut self, domain: &str) -> Result<PseudonymKey, KeyStoreError> {
        let key = Zeroizing::new(random_bytes::<32>());
        let _lock = self.lock_domains()?;
        let version = self.add_domain_key_locked(domain, &key)?;
        Ok(PseudonymKey::from_bytes(domain, version, *key))
    }

    /// Imports a key agreed with another party (e.g. the shared secret of a public-database linkage,
    /// L1), given as 64 hex digits; it becomes the domain's active key.
    pub fn import_domain_key(&mut self, domain: &str, hex_key: &str) -> Result<PseudonymKey, KeyStoreError> {
        let k = MasterKey::parse(hex_key, "imported domain key")?;
        let _lock = self.lock_domains()?;
        let version = self.add_domain_key_locked(domain, &k.0)?;
        Ok(PseudonymKey::from_bytes(domain, version, *k.0))
    }

    /// Domains with their versions and whether each is active (no key material).
    pub fn domains(&self) -> Vec<(String, u32, bool)> {
        self.domains.iter().map(|d| (d.domain.clone(), d.version, d.active)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, KeyStore) {
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::create(&t.path().join("keys")).unwrap();
        (t, ks)
    }

    fn key_hex(dir: &Path) -> String {
        fs::read_to_string(dir.join(MASTER_FILE)).unwrap().trim().to_owned()
    }

    #[test]
    fn a3_two_handles_share_domain_keys_without_losing_or_staling_any() {
        let (_t, mut a) = store();
        let mut b = KeyStore::open(a.dir(), None).unwrap();
        let x1 = a.domain_key("x").unwrap();
        let p = kiban_model::id::PersonKey::from_u64(9);
        assert_eq!(b.domain_key("x").unwrap().token(p), x1.token(p), "b sees a's new domain");
        let x2 = a.rotate("x").unwrap();
        assert_eq!(x2.version(), 2);
        assert_eq!(b.active_domain_key("x").unwrap().token(p), x2.token(p), "b sees a's rotation");
        b.domain_key("y").unwrap();
        a.rotate("x").unwrap();
        let c = KeyStore::open(a.dir(), None).unwrap();
        let mut got: Vec<(String, u32, bool)> = c.domains();
        got.sort();
        assert_eq!(
            got,
            [("x".into(), 1, false), ("x".into(), 2, false), ("x".into(), 3, true), ("y".into(), 1, true)],
            "a's later write kept b's domain"
        );
    }

    #[test]
    fn create_writes_an_owner_only_key_and_reopens() {
        let (_t, ks) = store();
        let dir = ks.dir().to_path_buf();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(MASTER_FILE)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(key_hex(&dir).len(), 64);
        let check = fs::read_to_string(dir.join(CHECK_FILE)).unwrap();
        assert!(!check.contains(&key_hex(&dir)), "key-check record must not contain the key");
        KeyStore::open(&dir, None).unwrap();
        assert!(KeyStore::check(&dir, None).is_empty());
        assert!(matches!(KeyStore::create(&dir), Err(KeyStoreError::AlreadyExists { .. })));
    }

    #[test]
    fn open_reports_each_problem_with_its_own_error() {
        let (t, ks) = store();
        let dir = ks.dir().to_path_buf();
        let missing = t.path().join("nokeys");
        assert!(matches!(KeyStore::open(&missing, None), Err(KeyStoreError::MissingKeyFile { .. })));
        assert!(matches!(KeyStore::open(&dir, Some("abc")), Err(KeyStoreError::MalformedKey { .. })));
        assert!(matches!(KeyStore::open(&dir, Some(&"zz".repeat(32))), Err(KeyStoreError::MalformedKey { .. })));
        let other = hex::encode([7u8; 32]);
        assert!(matches!(KeyStore::open(&dir, Some(&other)), Err(KeyStoreError::WrongMasterKey)));
        assert!(KeyStore::open(&dir, Some(&key_hex(&dir))).is_ok(), "the override opens the store");
        assert!(!KeyStore::check(&dir, Some(&other)).is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.join(MASTER_FILE), fs::Permissions::from_mode(0o644)).unwrap();
            let e = KeyStore::open(&dir, None).unwrap_err();
            assert!(matches!(e, KeyStoreError::BadPermissions { mode: 0o644, .. }), "{e}");
            assert_eq!(KeyStore::check(&dir, None).len(), 1);
        }
    }

    #[test]
    fn secrets_never_appear_in_debug_or_errors() {
        let (_t, mut ks) = store();
        let dir = ks.dir().to_path_buf();
        let k = key_hex(&dir);
        let dk = ks.domain_key("release-1").unwrap();
        let shown = format!("{ks:?} {dk:?}");
        assert!(!shown.contains(&k) && !shown.contains(&k[..16]), "{shown}");
        let e = KeyStore::open(&dir, Some(&format!("{}g", &k[..63]))).unwrap_err().to_string();
        assert!(!e.contains(&k[..16]), "{e}");
    }

    #[test]
    fn sealed_data_round_trips_and_rejects_wrong_key_aad_and_damage() {
        let (_t, ks) = store();
        let sealed = ks.seal(b"file-a", b"secret table");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(ks.open_sealed(b"file-a", &sealed).unwrap(), b"secret table");
        assert!(matches!(ks.open_sealed(b"file-b", &sealed), Err(KeyStoreError::Unseal(_))));
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(ks.open_sealed(b"file-a", &damaged).is_err());
        let (_t2, other) = store();
        let e = other.open_sealed(b"file-a", &sealed).unwrap_err().to_string();
        assert!(e.contains("wrong master key"), "{e}");
        assert!(ks.open_sealed(b"", b"KBN1").is_err());
    }

    #[test]
    fn domain_keys_persist_rotate_and_are_bound_to_their_domain() {
        let (_t, mut ks) = store();
        let dir = ks.dir().to_path_buf();
        let a1 = ks.domain_key("a").unwrap();
        let pk = kiban_model::id::PersonKey::from_u64(42);
        let reopened = KeyStore::open(&dir, None).unwrap().domain_key_version("a", 1).unwrap();
        assert_eq!(a1.token(pk), reopened.token(pk));
        let a2 = ks.rotate("a").unwrap();
        assert_eq!(a2.version(), 2);
        assert_ne!(a1.token(pk), a2.token(pk));
        let mut again = KeyStore::open(&dir, None).unwrap();
        assert_eq!(again.domain_key("a").unwrap().token(pk), a2.token(pk));
        assert_eq!(again.domains(), vec![("a".into(), 1, false), ("a".into(), 2, true)]);
        // A sealed key moved to another domain's entry does not open.
        let mut moved = again.domains.clone();
        moved[1].domain = "b".into();
        again.domains = moved;
        assert!(again.domain_key_version("b", 2).is_err());
    }

    /// Seals `msg` the way stores made before the keyring did (`KBN1`: data key under the master).
    fn seal_v1(ks: &KeyStore, aad: &[u8], msg: &[u8]) -> Vec<u8> {
        let dek = random_bytes::<32>();
        let mut out = MAGIC_V1.to_vec();
        out.extend(aead_seal(&ks.master.cipher(), DEK_AAD, &dek));
        out.extend(aead_seal(&Aes256Gcm::new_from_slice(&dek).unwrap(), aad, msg));
        out
    }

    #[test]
    fn r12_master_key_rotation_keeps_every_sealed_thing_readable_and_retires_the_old_key() {
        let (_t, ks) = store();
        let dir = ks.dir().to_path_buf();
        // A store from before keyrings: its data may be KBN1.
        fs::remove_file(dir.join(RING_FILE)).unwrap();
        let mut ks = KeyStore::open(&dir, None).unwrap();
        let old_hex = key_hex(&dir);
        let v1 = seal_v1(&ks, b"old", b"written before the keyring");
        let v2 = ks.seal(b"new", b"written with the keyring");
        let pk = kiban_model::id::PersonKey::from_u64(7);
        let token = ks.domain_key("release-9").unwrap().token(pk);
        let (new_key, report) = ks.rotate_master(None).unwrap();
        assert_eq!(report, RotationReport { keks: 1, domain_keys: 1, kept_retired_master: true });
        assert_eq!(key_hex(&dir), new_key.expose_hex());
        assert_ne!(old_hex, new_key.expose_hex());
        // No file changed but the master-sealed ones; the data opens in this process and a new one.
        for ks in [&ks, &KeyStore::open(&dir, None).unwrap()] {
            assert_eq!(ks.open_sealed(b"old", &v1).unwrap(), b"written before the keyring");
            assert_eq!(ks.open_sealed(b"new", &v2).unwrap(), b"written with the keyring");
            assert_eq!(ks.domain_key_version("release-9", 1).unwrap().token(pk), token);
        }
        assert!(matches!(KeyStore::open(&dir, Some(&old_hex)), Err(KeyStoreError::WrongMasterKey)));
        assert!(KeyStore::check(&dir, None).is_empty());
        for f in std::fs::read_dir(&dir).unwrap().map(|f| f.unwrap().path()) {
            let text = String::from_utf8_lossy(&fs::read(&f).unwrap()).into_owned();
            assert!(!text.contains(&old_hex), "{f:?} holds the old key");
            assert!(f.ends_with(MASTER_FILE) || !text.contains(new_key.expose_hex()), "{f:?} holds the new key");
        }
        // A second rotation keeps the retired master (already in the ring) and adds none.
        let (_k2, r2) = KeyStore::open(&dir, None).unwrap().rotate_master(None).unwrap();
        assert_eq!(r2, RotationReport { keks: 2, domain_keys: 1, kept_retired_master: false });
        let ks = KeyStore::open(&dir, None).unwrap();
        assert_eq!(ks.open_sealed(b"old", &v1).unwrap(), b"written before the keyring");
        assert_eq!(ks.open_sealed(b"new", &v2).unwrap(), b"written with the keyring");
    }

    #[test]
    fn r12_a_rotation_cut_at_any_step_leaves_a_store_that_opens_with_exactly_one_key() {
        for stop in [RotationStop::BeforeCommit, RotationStop::AfterCommit, RotationStop::AfterFirstRename] {
            let (_t, mut ks) = store();
            let dir = ks.dir().to_path_buf();
            let old_hex = key_hex(&dir);
            let sealed = ks.seal(b"a", b"payload");
            ks.domain_key("d").unwrap();
            let (new_key, _) = ks.rotate_master_stopping(None, Some(stop)).unwrap();
            let (good, bad) = if stop == RotationStop::BeforeCommit {
                (old_hex.clone(), new_key.expose_hex().to_owned())
            } else {
                (new_key.expose_hex().to_owned(), old_hex.clone())
            };
            let reopened = KeyStore::open(&dir, Some(&good)).unwrap_or_else(|e| panic!("{stop:?}: {e}"));
            assert_eq!(reopened.open_sealed(b"a", &sealed).unwrap(), b"payload", "{stop:?}");
            assert!(reopened.active_domain_key("d").is_ok(), "{stop:?}");
            assert!(KeyStore::open(&dir, Some(&bad)).is_err(), "{stop:?}");
            assert_eq!(key_hex(&dir), good, "{stop:?}: the key file holds the key that opens the store");
            let leftovers: Vec<_> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".next") || n == COMMIT_FILE)
                .collect();
            assert!(leftovers.is_empty(), "{stop:?}: {leftovers:?}");
        }
    }

    #[test]
    fn r12_a_new_data_key_seals_new_data_while_old_data_still_opens() {
        let (_t, mut ks) = store();
        let before = ks.seal(b"x", b"one");
        assert_eq!(ks.rotate_data_key().unwrap(), 2);
        let after = ks.seal(b"x", b"two");
        assert_eq!(u32::from_be_bytes(after[4..8].try_into().unwrap()), 2);
        let ks = KeyStore::open(ks.dir(), None).unwrap();
        assert_eq!(ks.open_sealed(b"x", &before).unwrap(), b"one");
        assert_eq!(ks.open_sealed(b"x", &after).unwrap(), b"two");
        assert_eq!(ks.keks(), vec![(1, false, false), (2, true, false)]);
        // A header naming an unknown KEK is refused, not guessed.
        let mut forged = after.clone();
        forged[7] = 9;
        assert!(ks.open_sealed(b"x", &forged).is_err());
    }
}
