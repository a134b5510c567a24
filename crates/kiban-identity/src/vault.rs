//! The identity vault (IDAT): the only place direct identifiers are stored.
//!
//! One append-only file, `<data-dir>/identity/vault.kbv`. Each entry is a 4-byte little-endian
//! length followed by a sealed entry ([`KeyStore::seal`], a fresh data key per entry, associated
//! data `kiban/vault/v1`), whose plaintext is one JSON [`VaultEntry`]. Appends are synced before a
//! write returns; a torn last entry (a crash mid-append, never acknowledged) is ignored and cut on
//! the next write. Erasure (P7) appends a tombstone and then rewrites the file without the erased
//! records (temporary file, then rename), so the identifiers are physically gone.
//!
//! Every access — open, write, read, erase — is reported to the caller's [`VaultAudit`] before
//! the data is returned; events carry person keys and counts, never identifiers.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use kiban_model::id::PersonKey;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;
use crate::keystore::{KeyStore, KeyStoreError};
use crate::mpi::RecordId;
use crate::normalize::NORMALIZATION_VERSION;

const AAD: &[u8] = b"kiban/vault/v1";

/// What was done to the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VaultAction {
    /// The vault was opened (all entries decrypted into memory).
    Open,
    /// Identities were written.
    Write,
    /// Identities were read.
    Read,
    /// A person's identities were erased (P7).
    Erase,
}

/// One audited access; holds no identifier beyond the person key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultEvent<'a> {
    /// The action.
    pub action: VaultAction,
    /// Who (operator or job id).
    pub actor: &'a str,
    /// Why (e.g. `linkage`, `opt-out check`, `P7 deletion request 12`).
    pub purpose: &'a str,
    /// The person concerned, when one.
    pub person: Option<PersonKey>,
    /// Number of identity records touched.
    pub records: usize,
}

/// Receives every vault access; kiban-audit plugs in here through the binary.
pub trait VaultAudit: Send + Sync {
    /// Records one access. Called before data is returned or after it is durably written.
    fn record(&self, event: &VaultEvent<'_>);
}

/// An audit hook that keeps events in memory (tests and the demo).
#[derive(Debug, Default)]
pub struct MemoryAudit(pub std::sync::Mutex<Vec<AuditedAccess>>);

/// One remembered access: action, purpose, person, record count.
pub type AuditedAccess = (VaultAction, String, Option<PersonKey>, usize);

impl VaultAudit for MemoryAudit {
    fn record(&self, e: &VaultEvent<'_>) {
        self.0.lock().expect("audit lock").push((e.action, e.purpose.to_owned(), e.person, e.records));
    }
}

/// A stored identity in canonical text form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredIdentity {
    /// MPI record id.
    pub record: u32,
    /// Person key.
    pub person: u64,
    /// Canonical form version the fields were made with.
    pub normalization: u32,
    /// Provider id.
    pub provider: String,
    /// Provider patient id.
    pub patient: String,
    /// Kanji name (canonical).
    pub kanji: String,
    /// Kana name (canonical).
    pub kana: String,
    /// Sex code.
    pub sex: String,
    /// Birth date, ISO.
    pub birth: String,
    /// Postal code digits.
    pub postal: String,
    /// Address.
    pub address: String,
    /// Phone digits.
    pub phone: String,
    /// Insurer number, symbol, number, branch (empty when no card).
    pub card: [String; 4],
}

impl StoredIdentity {
    /// Builds the stored form of a parsed identity.
    pub fn new(record: RecordId, person: PersonKey, id: &Identity) -> Self {
        StoredIdentity {
            record: record.0,
            person: person.as_u64(),
            normalization: NORMALIZATION_VERSION,
            provider: id.provider.to_string(),
            patient: id.patient.to_string(),
            kanji: id.kanji.to_string(),
            kana: id.kana.to_string(),
            sex: id.sex.code().to_owned(),
            birth: id.birth.to_string(),
            postal: id.postal.clone(),
            address: id.address.clone(),
            phone: id.phone.clone(),
            card: id.card.as_ref().map_or_else(Default::default, |c| {
                [c.insurer.to_string(), c.symbol.as_str().to_owned(), c.number.as_str().to_owned(), c.branch.as_str()]
            }),
        }
    }
}

/// One vault file entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum VaultEntry {
    /// An identity record (a later entry for the same record replaces it, e.g. after a re-link).
    Put(Box<StoredIdentity>),
    /// All records of a person erased.
    Erase {
        /// The person.
        person: u64,
    },
}

/// Vault errors.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// File-system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// An entry did not open: wrong master key or damage. Nothing is guessed.
    #[error("vault entry {index} does not open: {source}")]
    Sealed {
        /// Entry index.
        index: usize,
        /// Cause.
        source: KeyStoreError,
    },
    /// An entry opened but is not a vault entry.
    #[error("vault entry {index} is malformed: {reason}")]
    Malformed {
        /// Entry index.
        index: usize,
        /// Cause.
        reason: String,
    },
}

/// The opened vault.
pub struct Vault<'k> {
    path: PathBuf,
    keys: &'k KeyStore,
    audit: Box<dyn VaultAudit>,
    records: BTreeMap<u32, StoredIdentity>,
    /// Length of the valid prefix of the file (a torn tail beyond it is cut on the next write).
    valid_len: u64,
}

impl std::fmt::Debug for Vault<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("path", &self.path).field("records", &self.records.len()).finish()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |source| VaultError::Io { path: path.to_path_buf(), source }
}

impl<'k> Vault<'k> {
    /// Opens (or creates) the vault at `path`, decrypting it with `keys`; the open is audited.
    pub fn open(path: &Path, keys: &'k KeyStore, audit: Box<dyn VaultAudit>, actor: &str) -> Result<Self, VaultError> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(VaultError::Io { path: path.to_path_buf(), source: e }),
        };
        let mut records = BTreeMap::new();
        let mut pos = 0usize;
        let mut index = 0usize;
        while pos + 4 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            if pos + 4 + len > bytes.len() {
                break; // torn tail
            }
            let plain = keys
                .open_sealed(AAD, &bytes[pos + 4..pos + 4 + len])
                .map_err(|source| VaultError::Sealed { index, source })?;
            let entry: VaultEntry =
                serde_json::from_slice(&plain).map_err(|e| VaultError::Malformed { index, reason: e.to_string() })?;
            apply(&mut records, entry);
            pos += 4 + len;
            index += 1;
        }
        audit.record(&VaultEvent {
            action: VaultAction::Open,
            actor,
            purpose: "open",
            person: None,
            records: records.len(),
        });
        Ok(Vault { path: path.to_path_buf(), keys, audit, records, valid_len: pos as u64 })
    }

    fn append(&mut self, entries: &[VaultEntry]) -> Result<(), VaultError> {
        let mut buf = Vec::new();
        for e in entries {
            let sealed = self.keys.seal(AAD, &serde_json::to_vec(e).expect("serializable"));
            buf.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
            buf.extend_from_slice(&sealed);
        }
        let mut f =
            fs::OpenOptions::new().create(true).write(true).truncate(false).open(&self.path).map_err(io(&self.path))?;
        f.set_len(self.valid_len).map_err(io(&self.path))?;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::End(0)).map_err(io(&self.path))?;
        f.write_all(&buf).map_err(io(&self.path))?;
        f.sync_data().map_err(io(&self.path))?;
        self.valid_len += buf.len() as u64;
        Ok(())
    }

    /// Stores identities (durably, one sync per call) and audits the write.
    pub fn put(&mut self, actor: &str, items: &[StoredIdentity]) -> Result<(), VaultError> {
        let entries: Vec<VaultEntry> = items.iter().cloned().map(|s| VaultEntry::Put(Box::new(s))).collect();
        self.append(&entries)?;
        for e in entries {
            apply(&mut self.records, e);
        }
        self.audit.record(&VaultEvent {
            action: VaultAction::Write,
            actor,
            purpose: "register",
            person: None,
            records: items.len(),
        });
        Ok(())
    }

    /// Reads a person's identities for a stated purpose; audited before returning.
    pub fn read_person(&self, actor: &str, purpose: &str, person: PersonKey) -> Vec<StoredIdentity> {
        let out: Vec<StoredIdentity> = self.records.values().filter(|r| r.person == person.as_u64()).cloned().collect();
        self.audit.record(&VaultEvent {
            action: VaultAction::Read,
            actor,
            purpose,
            person: Some(person),
            records: out.len(),
        });
        out
    }

    /// Erases every identity of a person (P7): tombstone, then compaction that rewrites the file
    /// without them. Returns how many records were erased.
    pub fn erase_person(&mut self, actor: &str, purpose: &str, person: PersonKey) -> Result<usize, VaultError> {
        self.append(&[VaultEntry::Erase { person: person.as_u64() }])?;
        let before = self.records.len();
        apply(&mut self.records, VaultEntry::Erase { person: person.as_u64() });
        let erased = before - self.records.len();
        self.compact()?;
        self.audit.record(&VaultEvent {
            action: VaultAction::Erase,
            actor,
            purpose,
            person: Some(person),
            records: erased,
        });
        Ok(erased)
    }

    /// Rewrites the file with only the live records (atomic rename).
    fn compact(&mut self) -> Result<(), VaultError> {
        let tmp = self.path.with_extension("kbv.tmp");
        let _ = fs::remove_file(&tmp);
        let live: Vec<VaultEntry> = self.records.values().cloned().map(|s| VaultEntry::Put(Box::new(s))).collect();
        let (path, valid) = (std::mem::replace(&mut self.path, tmp.clone()), self.valid_len);
        self.valid_len = 0;
        let r = self.append(&live);
        self.path = path;
        if let Err(e) = r {
            self.valid_len = valid;
            return Err(e);
        }
        fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        Ok(())
    }

    /// Number of live identity records.
    pub fn len(&self) -> usize {
        self.records.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

fn apply(records: &mut BTreeMap<u32, StoredIdentity>, e: VaultEntry) {
    match e {
        VaultEntry::Put(s) => {
            records.insert(s.record, *s);
        }
        VaultEntry::Erase { person } => records.retain(|_, r| r.person != person),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityInput;
    use std::sync::Arc;

    struct Shared(Arc<MemoryAudit>);
    impl VaultAudit for Shared {
        fn record(&self, e: &VaultEvent<'_>) {
            self.0.record(e)
        }
    }

    fn identity(name: &str) -> Identity {
        Identity::parse(&IdentityInput {
            provider_id: "prov-a".into(),
            patient_id: "001".into(),
            name_kanji: "山田 花子".into(),
            name_kana: name.into(),
            sex: "2".into(),
            birth_date: "1980-01-01".into(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn p7_vault_is_encrypted_audited_and_erasure_removes_the_bytes() {
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::create(&t.path().join("keys")).unwrap();
        let path = t.path().join("identity/vault.kbv");
        let audit = Arc::new(MemoryAudit::default());
        let (p1, p2) = (PersonKey::from_u64(1), PersonKey::from_u64(2));
        {
            let mut v = Vault::open(&path, &ks, Box::new(Shared(audit.clone())), "op").unwrap();
            v.put(
                "op",
                &[
                    StoredIdentity::new(RecordId(0), p1, &identity("ヤマダ ハナコ")),
                    StoredIdentity::new(RecordId(1), p2, &identity("スズキ イチロウ")),
                ],
            )
            .unwrap();
        }
        let raw = fs::read(&path).unwrap();
        assert!(!raw.windows("ヤマダ".len()).any(|w| w == "ヤマダ".as_bytes()), "vault is encrypted at rest");
        let mut v = Vault::open(&path, &ks, Box::new(Shared(audit.clone())), "op").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v.read_person("op", "linkage", p1)[0].kana, "ヤマダ ハナコ");
        assert_eq!(v.erase_person("op", "P7 request 1", p1).unwrap(), 1);
        let reopened = Vault::open(&path, &ks, Box::new(Shared(audit.clone())), "op").unwrap();
        assert_eq!(reopened.len(), 1);
        assert!(reopened.read_person("op", "check", p1).is_empty());
        let actions: Vec<VaultAction> = audit.0.lock().unwrap().iter().map(|e| e.0).collect();
        use VaultAction::*;
        assert_eq!(actions, vec![Open, Write, Open, Read, Erase, Open, Read]);
        // A different key store cannot read it, and says so.
        let other = KeyStore::create(&t.path().join("keys2")).unwrap();
        let e = Vault::open(&path, &other, Box::new(MemoryAudit::default()), "x").unwrap_err();
        assert!(e.to_string().contains("wrong master key"), "{e}");
    }

    #[test]
    fn a_torn_last_entry_is_ignored_and_cut_on_the_next_write() {
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::create(&t.path().join("keys")).unwrap();
        let path = t.path().join("vault.kbv");
        let mut v = Vault::open(&path, &ks, Box::new(MemoryAudit::default()), "op").unwrap();
        v.put("op", &[StoredIdentity::new(RecordId(0), PersonKey::from_u64(1), &identity("ア"))]).unwrap();
        fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        let mut v = Vault::open(&path, &ks, Box::new(MemoryAudit::default()), "op").unwrap();
        assert_eq!(v.len(), 1);
        v.put("op", &[StoredIdentity::new(RecordId(1), PersonKey::from_u64(2), &identity("イ"))]).unwrap();
        assert_eq!(Vault::open(&path, &ks, Box::new(MemoryAudit::default()), "op").unwrap().len(), 2);
    }
}

impl StoredIdentity {
    /// The stored fields as an input record (canonical forms parse to themselves).
    pub fn to_input(&self) -> crate::identity::IdentityInput {
        crate::identity::IdentityInput {
            provider_id: self.provider.clone(),
            patient_id: self.patient.clone(),
            name_kanji: self.kanji.clone(),
            name_kana: self.kana.clone(),
            sex: self.sex.clone(),
            birth_date: self.birth.clone(),
            postal_code: self.postal.clone(),
            address: self.address.clone(),
            phone: self.phone.clone(),
            insurer_number: self.card[0].clone(),
            card_symbol: self.card[1].clone(),
            card_number: self.card[2].clone(),
            card_branch: self.card[3].clone(),
        }
    }
}

/// One row of a linkage-key export: a person and its ID1/ID2 keys (hex) or the reason none was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkageRow {
    /// The person.
    pub person: PersonKey,
    /// ID1 (kana name, birth date, sex).
    pub id1: Result<String, crate::normalize::FieldError>,
    /// ID2 (individual insured-person number, birth date, sex); `None` without a card.
    pub id2: Option<Result<String, crate::normalize::FieldError>>,
}

/// Exports linkage keys (L1, L2) for `persons` from their first vault record; the reads are audited.
pub fn export_linkage_keys(
    vault: &Vault<'_>,
    actor: &str,
    keyer: &crate::linkage::LinkageKeyer,
    persons: &[PersonKey],
) -> Vec<LinkageRow> {
    persons
        .iter()
        .filter_map(|&person| {
            let stored = vault.read_person(actor, "linkage-key export", person).into_iter().next()?;
            let id = Identity::parse(&stored.to_input()).ok()?;
            let id1 = keyer.id1(&id.kana, id.birth, id.sex).map(|k| k.to_string());
            let id2 = id.card.as_ref().map(|c| keyer.id2(c, id.birth, id.sex).map(|k| k.to_string()));
            Some(LinkageRow { person, id1, id2 })
        })
        .collect()
}

#[cfg(test)]
mod export_tests {
    use super::*;
    use crate::identity::IdentityInput;

    #[test]
    fn l1_export_gives_the_same_keys_as_direct_computation() {
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::create(&t.path().join("keys")).unwrap();
        let mut v = Vault::open(&t.path().join("v.kbv"), &ks, Box::new(MemoryAudit::default()), "op").unwrap();
        let input = IdentityInput {
            provider_id: "prov-b".into(),
            patient_id: "9".into(),
            name_kanji: "山田太郎".into(),
            name_kana: "ﾔﾏﾀﾞ ﾀﾛｳ".into(),
            sex: "1".into(),
            birth_date: "昭和55年4月1日".into(),
            insurer_number: "1130012".into(),
            card_symbol: "１２３４".into(),
            card_number: "0567".into(),
            card_branch: "0".into(),
            ..Default::default()
        };
        let id = Identity::parse(&input).unwrap();
        let p = PersonKey::from_u64(5);
        v.put("op", &[StoredIdentity::new(RecordId(0), p, &id)]).unwrap();
        let keyer = crate::linkage::test_vector_keyer();
        let rows = export_linkage_keys(&v, "op", &keyer, &[p, PersonKey::from_u64(6)]);
        assert_eq!(rows.len(), 1);
        // Same as the published vector for person A in tests/data/linkage.tsv.
        assert_eq!(rows[0].id1.as_deref().unwrap(), keyer.id1(&id.kana, id.birth, id.sex).unwrap().to_string());
        assert!(rows[0].id1.as_deref().unwrap().starts_with("c9859d3e168f"));
        assert!(rows[0].id2.as_ref().unwrap().as_deref().unwrap().starts_with("cb9ddd8c9b2c"));
    }
}
