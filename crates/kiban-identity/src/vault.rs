//! The identity vault (IDAT): the only place direct identifiers are stored, and the MPI's log.
//!
//! One append-only file, `<data-dir>/identity/vault.kbv`. Each frame is a 4-byte little-endian
//! length followed by a sealed frame ([`KeyStore::seal`], a fresh data key per frame, associated
//! data `kiban/vault/v2`), whose plaintext is a JSON array of [`VaultEntry`]: identities put, records
//! erased, and the MPI's review items, decisions and undos ([`crate::mpi::LogEntry`]). An operation
//! writes its entries as frames of at most 20,000 entries (each review item right after the record it
//! concerns) and syncs once before the call returns; a torn last frame (a crash mid-append, never
//! acknowledged) is ignored and cut on the next write. Erasure
//! (P7) appends a `Forget` entry and then rewrites the file without the erased identities
//! (temporary file, then rename), so the identifiers are physically gone; the MPI log is kept.
//!
//! Several processes may hold the vault open (`kiban serve` and the CLI): `<vault>.lock` is taken
//! only for the length of a write, and a handle first reads what others appended since
//! ([`Vault::refresh`]); a rewrite by compaction is noticed by the file's identity and means reopen.
//! The identities are not kept in memory: per record only its place (a snapshot chunk and offset,
//! or a frame's file offset and slot) and a digest of its canonical fields ([`Records`]); a read
//! decrypts the chunks or frames holding what was asked, each once, through the handle's open files
//! (so another process's snapshot or compaction never moves them under it).
//!
//! `vault.snap` ([`snapshot`]) is a sealed copy of the state as of a prefix of the file, bound to
//! that prefix's length and BLAKE3 digest: an open uses it only when it still matches, then
//! replays only the frames after it; a snapshot that does not open, does not match or is damaged is
//! ignored and the whole file replayed. Compaction deletes it first (it holds erased identities).
//!
//! Every access — open, write, read, decide, export, erase — is reported to the caller's
//! [`VaultAudit`]; events carry person keys and counts, never identifiers. A hook that cannot record
//! fails the operation (reads return nothing).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use kiban_model::id::PersonKey;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;
use crate::keystore::{KeyStore, KeyStoreError};
use crate::mpi::{LogEntry, RecordId};
use crate::normalize::NORMALIZATION_VERSION;

mod records;
mod snapshot;

use records::Place;
pub use records::{Records, StoredRef, content_digest};
pub use snapshot::IndexReader;

/// Writes the caller's index state into a snapshot ([`Vault::write_snapshot_with_index`]).
pub type IndexWriter<'a> = &'a dyn Fn(&mut dyn Write) -> std::io::Result<()>;

/// An opened vault, what the visitor made per identity read, and the snapshot's index state if used.
pub type Opened<'k, T> = (Vault, Vec<(u32, T)>, Option<IndexReader<'k>>);

const AAD: &[u8] = b"kiban/vault/v2";
/// Entries per sealed frame: keeps frames far below the 4 GiB a length prefix can say, and a
/// bulk registration streams instead of building one giant plaintext.
const FRAME_ENTRIES: usize = 20_000;

/// What was done to the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultAction {
    /// The vault was opened.
    Open,
    /// Identities were written.
    Write,
    /// Identities were read.
    Read,
    /// A review decision (merge, split, keep apart, undo) was recorded.
    Decide,
    /// Linkage keys derived from identities were exported.
    Export,
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

/// The audit hook could not record an event; the operation is not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit log could not record the vault access: {0}")]
pub struct AuditFailed(pub String);

/// Receives every vault access; kiban-audit plugs in here through the binary and the server.
pub trait VaultAudit: Send + Sync {
    /// Records one access. Called before data is returned or after it is durably written.
    fn record(&self, event: &VaultEvent<'_>) -> Result<(), AuditFailed>;
}

/// An audit hook that keeps events in memory (tests and the demo).
#[derive(Debug, Default)]
pub struct MemoryAudit(pub std::sync::Mutex<Vec<AuditedAccess>>);

/// One remembered access: action, purpose, person, record count.
pub type AuditedAccess = (VaultAction, String, Option<PersonKey>, usize);

impl VaultAudit for MemoryAudit {
    fn record(&self, e: &VaultEvent<'_>) -> Result<(), AuditFailed> {
        self.0.lock().expect("audit lock").push((e.action, e.purpose.to_owned(), e.person, e.records));
        Ok(())
    }
}

/// A stored identity in canonical text form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredIdentity {
    /// MPI record id.
    pub record: u32,
    /// Person key the record was registered to (decisions in the log may have moved it since).
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
#[serde(rename_all = "snake_case")]
pub enum VaultEntry {
    /// An identity record (a later entry for the same record replaces it).
    Put(Box<StoredIdentity>),
    /// An MPI log entry: review item, decision, undo or erasure of records.
    Mpi(LogEntry),
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
    /// A frame did not open: wrong master key or damage. Nothing is guessed.
    #[error("vault frame {index} does not open: {source}")]
    Sealed {
        /// Frame index.
        index: usize,
        /// Cause.
        source: KeyStoreError,
    },
    /// A frame opened but is not a list of vault entries.
    #[error("vault frame {index} is malformed: {reason}")]
    Malformed {
        /// Frame index.
        index: usize,
        /// Cause.
        reason: String,
    },
    /// The vault file was rewritten (compacted after an erasure) by another process since this one
    /// read it; reopen.
    #[error("the identity vault {path} was rewritten by another kiban process; reopen it")]
    Changed {
        /// The vault file.
        path: PathBuf,
    },
    /// The audit hook failed; the access was not done.
    #[error(transparent)]
    Audit(#[from] AuditFailed),
    /// An identity could not be read back from where the vault last saw it (damage since open).
    #[error("vault identity at {at} could not be read: {reason}")]
    Unreadable {
        /// File offset (0 for a snapshot chunk).
        at: u64,
        /// Cause.
        reason: String,
    },
}

/// The opened vault: live identities by record id and the MPI log, in file order.
pub struct Vault {
    path: PathBuf,
    records: Records,
    log: Vec<LogEntry>,
    /// One past the highest record id ever written (erased ids included).
    next_record: u32,
    /// Length of the valid prefix of the file (a torn tail beyond it is cut on the next write).
    valid_len: u64,
    /// BLAKE3 of the valid prefix so far (what a snapshot is bound to).
    digest: blake3::Hasher,
    /// Entries applied since the last snapshot (or since open without one).
    since_snapshot: usize,
    /// How the last open went (for benchmarks and the demo).
    opened: OpenStats,
    /// `<vault>.lock`: held exclusively while writing (two writers would cut each other's frames).
    lock_path: PathBuf,
    /// The lock while this handle holds it.
    held: Option<fs::File>,
    /// Device and inode of the file read, to notice a rewrite by another process.
    file_id: Option<(u64, u64)>,
    /// The vault file open for on-demand reads of identities in its frames.
    file: Option<fs::File>,
    /// The snapshot this handle read, open for on-demand reads of identities in its chunks.
    snap: Option<snapshot::Source>,
    /// MPI log entries the snapshot read at open held (those after came from the file's tail).
    snap_log_len: usize,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("path", &self.path).field("records", &self.records.len()).finish()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |source| VaultError::Io { path: path.to_path_buf(), source }
}

impl Vault {
    /// Opens (or creates) the vault at `path`, decrypting it with `keys`; the open is audited.
    pub fn open(path: &Path, keys: &KeyStore, audit: &dyn VaultAudit, actor: &str) -> Result<Self, VaultError> {
        Ok(Self::open_visiting(path, keys, audit, actor, &|_| ())?.0)
    }

    /// Opens the vault and hands every identity read on the way to `visit` (on the thread that
    /// decrypted it), returning what it made per record, in the order read (a record may come more
    /// than once: the last one is current; erased ones come too — check [`Records::contains`]).
    /// The identities themselves are not kept: only where each one is.
    pub fn open_visiting<T: Send>(
        path: &Path,
        keys: &KeyStore,
        audit: &dyn VaultAudit,
        actor: &str,
        visit: &(dyn Fn(&StoredRef<'_>) -> T + Sync),
    ) -> Result<(Self, Vec<(u32, T)>), VaultError> {
        let (v, seen, _) = Self::open_indexed(path, keys, audit, actor, visit, false)?;
        Ok((v, seen))
    }

    /// [`Vault::open_visiting`], and with `want_index`, when the snapshot holds an index state
    /// (written by [`Vault::write_snapshot_with_index`]), that state to read instead: the snapshot's
    /// identities are then not visited (only those appended after it are).
    pub fn open_indexed<'k, T: Send>(
        path: &Path,
        keys: &'k KeyStore,
        audit: &dyn VaultAudit,
        actor: &str,
        visit: &(dyn Fn(&StoredRef<'_>) -> T + Sync),
        want_index: bool,
    ) -> Result<Opened<'k, T>, VaultError> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let lock_path = path.with_extension("lock");
        let mut v = Vault {
            path: path.to_path_buf(),
            records: Records::default(),
            log: vec![],
            next_record: 0,
            valid_len: 0,
            digest: blake3::Hasher::new(),
            since_snapshot: 0,
            opened: OpenStats::default(),
            lock_path,
            held: None,
            file_id: None,
            file: None,
            snap: None,
            snap_log_len: 0,
        };
        let mut seen: Vec<(u32, T)> = vec![];
        let mut index = None;
        // A snapshot covers a prefix of the file: it is used only when it opens with this key and its
        // bound digest is that of the file's prefix now; anything else is ignored and rebuilt. Only
        // the part of the file after it is read into memory.
        let (base, file_len) = match fs::File::open(path) {
            Ok(mut f) => {
                let meta = f.metadata().map_err(io(path))?;
                v.file_id = file_id(&meta);
                let mut base = 0u64;
                match snapshot::load(&snapshot_path(path), keys, &mut f, meta.len(), visit, want_index) {
                    Ok(Some(snap)) => {
                        base = snap.vault_len;
                        seen.reserve(snap.records.len());
                        for r in snap.records {
                            v.records.put(r.record, Place::Snap(r.chunk, r.offset), r.digest);
                            if let Some(value) = r.value {
                                seen.push((r.record, value));
                            }
                        }
                        index = snap.index;
                        v.log = snap.log;
                        v.snap_log_len = v.log.len();
                        v.next_record = snap.next_record;
                        v.digest = snap.hasher;
                        v.snap = Some(snap.source);
                        v.opened.snapshot = SnapshotUse::Used;
                    }
                    Ok(None) => v.opened.snapshot = SnapshotUse::Absent,
                    Err(reason) => v.opened.snapshot = SnapshotUse::Ignored(reason),
                }
                v.file = Some(f);
                (base, meta.len())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, 0),
            Err(e) => return Err(VaultError::Io { path: path.to_path_buf(), source: e }),
        };
        // Frame boundaries first (the length prefixes only), then the frames a batch at a time:
        // read, decrypted and parsed on all cores, applied in order and dropped, so memory stays
        // near one batch of frames however long the tail is.
        use std::os::unix::fs::FileExt;
        let mut frames: Vec<(u64, usize)> = vec![];
        let mut pos = base;
        if let Some(f) = &v.file {
            let mut n = [0u8; 4];
            while pos + 4 <= file_len {
                f.read_exact_at(&mut n, pos).map_err(io(path))?;
                let len = u32::from_le_bytes(n) as u64;
                if pos + 4 + len > file_len {
                    break; // torn tail
                }
                frames.push((pos, len as usize));
                pos += 4 + len;
            }
        }
        type Decoded<T> = Vec<(VaultEntry, Option<(u64, T)>)>;
        let decode = |index: usize, frame: &[u8]| -> Result<Decoded<T>, VaultError> {
            let plain = keys.open_sealed(AAD, frame).map_err(|source| VaultError::Sealed { index, source })?;
            let entries: Vec<VaultEntry> =
                serde_json::from_slice(&plain).map_err(|e| VaultError::Malformed { index, reason: e.to_string() })?;
            Ok(entries
                .into_iter()
                .map(|e| {
                    let made = match &e {
                        VaultEntry::Put(s) => {
                            Some((content_digest(&StoredIdentity::as_ref(s)), visit(&StoredIdentity::as_ref(s))))
                        }
                        VaultEntry::Mpi(_) => None,
                    };
                    (e, made)
                })
                .collect())
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
        let per_batch = threads * 2;
        for (bi, batch) in frames.chunks(per_batch).enumerate() {
            let f = v.file.as_ref().expect("frames come from the open file");
            let mut raw = Vec::with_capacity(batch.len());
            for &(at, len) in batch {
                let mut b = vec![0u8; 4 + len];
                f.read_exact_at(&mut b, at).map_err(io(path))?;
                v.digest.update(&b);
                raw.push(b);
            }
            let decoded: Vec<Result<Decoded<T>, VaultError>> = std::thread::scope(|sc| {
                let handles: Vec<_> = raw
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        let decode = &decode;
                        sc.spawn(move || decode(bi * per_batch + i, &b[4..]))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("vault decoder thread")).collect()
            });
            drop(raw);
            for (entries, (at, _)) in decoded.into_iter().zip(batch) {
                for (slot, (e, made)) in entries?.into_iter().enumerate() {
                    let digest = match (&e, made) {
                        (VaultEntry::Put(s), Some((d, t))) => {
                            seen.push((s.record, t));
                            d
                        }
                        _ => 0,
                    };
                    v.apply(e, Place::Frame(*at, slot as u32), digest);
                    v.since_snapshot += 1;
                }
            }
        }
        v.opened.tail_entries = v.since_snapshot;
        v.valid_len = pos;
        audit.record(&VaultEvent {
            action: VaultAction::Open,
            actor,
            purpose: "open",
            person: None,
            records: v.records.len(),
        })?;
        Ok((v, seen, index))
    }

    /// Applies one entry found at `place` (`digest`: its identity's content digest, for a put).
    fn apply(&mut self, e: VaultEntry, place: Place, digest: u64) {
        match e {
            VaultEntry::Put(s) => {
                self.next_record = self.next_record.max(s.record + 1);
                self.records.put(s.record, place, digest);
            }
            VaultEntry::Mpi(l) => {
                if let LogEntry::Forget { records } = &l {
                    for r in records {
                        self.next_record = self.next_record.max(r.0 + 1);
                        self.records.remove(r.0);
                    }
                }
                self.log.push(l);
            }
        }
    }

    /// Writes frames (their JSON plaintexts, each at most [`FRAME_ENTRIES`] entries) after the first
    /// `valid_len` bytes (cutting any torn tail), then syncs once; returns the bytes written and
    /// each frame's offset in the file.
    fn write_frames(
        path: &Path,
        valid_len: u64,
        keys: &KeyStore,
        frames: impl Iterator<Item = Vec<u8>>,
        digest: &mut blake3::Hasher,
    ) -> Result<(u64, Vec<u64>), VaultError> {
        let mut w = FrameWriter::at(path, valid_len)?;
        let mut starts = vec![];
        for plain in frames {
            starts.push(w.push(keys, &plain, digest)?);
        }
        Ok((w.finish()?, starts))
    }

    /// Takes the write lock (blocking until another process's write is done); see [`Vault::end`].
    pub fn begin(&mut self) -> Result<(), VaultError> {
        if self.held.is_none() {
            let lock = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&self.lock_path)
                .map_err(io(&self.lock_path))?;
            lock.lock().map_err(io(&self.lock_path))?;
            self.held = Some(lock);
        }
        Ok(())
    }

    /// Releases the write lock.
    pub fn end(&mut self) {
        self.held = None;
    }

    /// Reads what other processes appended since this handle last read or wrote, applies it and
    /// returns it (so the caller can apply it to its index too). Frames still being written are
    /// left for the next refresh.
    pub fn refresh(&mut self, keys: &KeyStore) -> Result<Refresh, VaultError> {
        use std::io::{Read, Seek};
        let mut f = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(if self.valid_len == 0 { Refresh::Same } else { Refresh::Replaced });
            }
            Err(e) => return Err(VaultError::Io { path: self.path.clone(), source: e }),
        };
        let meta = f.metadata().map_err(io(&self.path))?;
        let id = file_id(&meta);
        if self.file_id.is_some() && id != self.file_id || meta.len() < self.valid_len {
            return Ok(Refresh::Replaced);
        }
        self.file_id = id;
        if meta.len() == self.valid_len {
            return Ok(Refresh::Same);
        }
        f.seek(std::io::SeekFrom::Start(self.valid_len)).map_err(io(&self.path))?;
        let mut buf = vec![];
        f.read_to_end(&mut buf).map_err(io(&self.path))?;
        if self.file.is_none() {
            self.file = Some(f);
        }
        let mut pos = 0usize;
        let mut out = vec![];
        let mut index = 0;
        while pos + 4 <= buf.len() {
            let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            if pos + 4 + len > buf.len() {
                break;
            }
            let plain = keys
                .open_sealed(AAD, &buf[pos + 4..pos + 4 + len])
                .map_err(|source| VaultError::Sealed { index, source })?;
            let entries: Vec<VaultEntry> =
                serde_json::from_slice(&plain).map_err(|e| VaultError::Malformed { index, reason: e.to_string() })?;
            let at = self.valid_len + pos as u64;
            for (slot, e) in entries.into_iter().enumerate() {
                out.push(e.clone());
                let d = put_digest(&e);
                self.apply(e, Place::Frame(at, slot as u32), d);
            }
            pos += 4 + len;
            index += 1;
        }
        self.digest.update(&buf[..pos]);
        self.valid_len += pos as u64;
        self.since_snapshot += out.len();
        Ok(if out.is_empty() { Refresh::Same } else { Refresh::Appended(out) })
    }

    /// Hands the write lock to `other` (a reopened handle of the same vault).
    pub fn pass_lock(&mut self, other: &mut Vault) {
        other.held = self.held.take();
    }

    /// Appends entries as one frame, durably, and applies them. Outside [`Vault::begin`]/[`Vault::end`]
    /// it takes the lock and reads other processes' appends first.
    pub fn append(&mut self, keys: &KeyStore, entries: Vec<VaultEntry>) -> Result<(), VaultError> {
        if entries.is_empty() {
            return Ok(());
        }
        if self.held.is_none() {
            self.begin()?;
            let r = self.refresh(keys).and_then(|r| match r {
                Refresh::Replaced => Err(VaultError::Changed { path: self.path.clone() }),
                _ => self.append(keys, entries),
            });
            self.end();
            return r;
        }
        // The digest moves only once the write is durable; a failed write poisons the store anyway.
        let mut d = self.digest.clone();
        let (written, starts) = Self::write_frames(&self.path, self.valid_len, keys, json_frames(&entries), &mut d)?;
        self.valid_len += written;
        self.digest = d;
        if self.file_id.is_none() {
            self.file_id = fs::metadata(&self.path).ok().as_ref().and_then(file_id);
        }
        if self.file.is_none() {
            self.file = Some(fs::File::open(&self.path).map_err(io(&self.path))?);
        }
        self.since_snapshot += entries.len();
        for (i, e) in entries.into_iter().enumerate() {
            let d = put_digest(&e);
            self.apply(e, Place::Frame(starts[i / FRAME_ENTRIES], (i % FRAME_ENTRIES) as u32), d);
        }
        Ok(())
    }

    /// Stores identities (durably, one frame) and audits the write.
    pub fn put(
        &mut self,
        keys: &KeyStore,
        audit: &dyn VaultAudit,
        actor: &str,
        items: Vec<StoredIdentity>,
    ) -> Result<(), VaultError> {
        let n = items.len();
        self.append(keys, items.into_iter().map(|s| VaultEntry::Put(Box::new(s))).collect())?;
        audit.record(&VaultEvent {
            action: VaultAction::Write,
            actor,
            purpose: "register",
            person: None,
            records: n,
        })?;
        Ok(())
    }

    /// The entries of the frame at file offset `at`.
    fn frame_at(&self, keys: &KeyStore, at: u64) -> Result<Vec<VaultEntry>, VaultError> {
        use std::os::unix::fs::FileExt;
        let f = self.file.as_ref().ok_or_else(|| unreadable(at, "the vault file is not open"))?;
        let mut n = [0u8; 4];
        f.read_exact_at(&mut n, at).map_err(io(&self.path))?;
        let mut sealed = vec![0u8; u32::from_le_bytes(n) as usize];
        f.read_exact_at(&mut sealed, at + 4).map_err(io(&self.path))?;
        let plain = keys.open_sealed(AAD, &sealed).map_err(|e| unreadable(at, &e.to_string()))?;
        serde_json::from_slice(&plain).map_err(|e| unreadable(at, &e.to_string()))
    }

    /// Hands the live identities among `ids` to `f`, reading each snapshot chunk or vault frame
    /// that holds any of them once, in file order (not in the order of `ids`).
    pub(crate) fn visit_records(
        &self,
        keys: &KeyStore,
        ids: impl Iterator<Item = u32>,
        f: &mut dyn FnMut(StoredRef<'_>) -> Result<(), VaultError>,
    ) -> Result<(), VaultError> {
        let mut places: Vec<(Place, u32)> = ids.filter_map(|r| self.records.place(r).map(|p| (p, r))).collect();
        places.sort_unstable();
        places.dedup();
        let mut i = 0;
        while i < places.len() {
            match places[i].0 {
                Place::Snap(c, _) => {
                    let snap = self.snap.as_ref().ok_or_else(|| unreadable(0, "no snapshot is open"))?;
                    let plain = snap.chunk(keys, c).map_err(|e| unreadable(0, &format!("snapshot {e}")))?;
                    while let Some(&(Place::Snap(c2, off), r)) = places.get(i)
                        && c2 == c
                    {
                        match records::record_at(&plain, off) {
                            Some(s) if s.record == r => f(s)?,
                            _ => return Err(unreadable(0, &format!("snapshot chunk {c} lacks record {r}"))),
                        }
                        i += 1;
                    }
                }
                Place::Frame(at, _) => {
                    let entries = self.frame_at(keys, at)?;
                    while let Some(&(Place::Frame(at2, slot), r)) = places.get(i)
                        && at2 == at
                    {
                        match entries.get(slot as usize) {
                            Some(VaultEntry::Put(s)) if s.record == r => f(StoredIdentity::as_ref(s))?,
                            _ => return Err(unreadable(at, &format!("the frame lacks record {r}"))),
                        }
                        i += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads identity records for a stated purpose (from the sealed files: identities are not kept
    /// in memory), in the order asked; audited before returning.
    pub fn read_records(
        &self,
        keys: &KeyStore,
        audit: &dyn VaultAudit,
        actor: &str,
        purpose: &str,
        person: Option<PersonKey>,
        records: &[RecordId],
    ) -> Result<Vec<StoredIdentity>, VaultError> {
        let mut got = std::collections::HashMap::new();
        self.visit_records(keys, records.iter().map(|r| r.0), &mut |s| {
            got.insert(s.record, s.to_owned());
            Ok(())
        })?;
        let out: Vec<StoredIdentity> = records.iter().filter_map(|r| got.get(&r.0).cloned()).collect();
        audit.record(&VaultEvent { action: VaultAction::Read, actor, purpose, person, records: out.len() })?;
        Ok(out)
    }

    /// Every live identity in record order (tests and small vaults; not audited: callers outside
    /// this crate go through [`Vault::read_records`]).
    pub fn identities(&self, keys: &KeyStore) -> Result<Vec<StoredIdentity>, VaultError> {
        let mut all = vec![];
        self.visit_records(keys, self.records.ids(), &mut |s| {
            all.push(s.to_owned());
            Ok(())
        })?;
        all.sort_by_key(|s| s.record);
        Ok(all)
    }

    /// Erases identity records (P7): a `Forget` entry, then compaction that rewrites the file
    /// without them. Returns how many identities were erased.
    pub fn erase(
        &mut self,
        keys: &KeyStore,
        audit: &dyn VaultAudit,
        actor: &str,
        purpose: &str,
        person: Option<PersonKey>,
        records: &[RecordId],
    ) -> Result<usize, VaultError> {
        let own = self.held.is_none();
        if own {
            self.begin()?;
            if let Refresh::Replaced = self.refresh(keys)? {
                self.end();
                return Err(VaultError::Changed { path: self.path.clone() });
            }
        }
        let before = self.records.len();
        let r = self
            .append(keys, vec![VaultEntry::Mpi(LogEntry::Forget { records: records.to_vec() })])
            .and_then(|_| self.compact(keys));
        if own {
            self.end();
        }
        r?;
        let erased = before - self.records.len();
        audit.record(&VaultEvent { action: VaultAction::Erase, actor, purpose, person, records: erased })?;
        Ok(erased)
    }

    /// The live identities' places sorted by file position (what a streaming rewrite reads).
    fn sorted_places(&self) -> Vec<(Place, u32)> {
        let mut places: Vec<(Place, u32)> = self.records.places().map(|(r, p)| (p, r)).collect();
        places.sort_unstable();
        places
    }

    /// Rewrites the file with the live identities and the whole MPI log (atomic rename).
    fn compact(&mut self, keys: &KeyStore) -> Result<(), VaultError> {
        let tmp = self.path.with_extension("kbv.tmp");
        let _ = fs::remove_file(&tmp);
        // Streamed a frame at a time from the sealed files: the identities are never all in memory.
        let places = self.sorted_places();
        let mut d = blake3::Hasher::new();
        let mut w = FrameWriter::at(&tmp, 0)?;
        let mut moved: Vec<(u32, Place)> = Vec::with_capacity(places.len());
        let mut batch: Vec<VaultEntry> = Vec::with_capacity(FRAME_ENTRIES.min(places.len()));
        let mut flush = |batch: &mut Vec<VaultEntry>, w: &mut FrameWriter, moved: &mut Vec<(u32, Place)>| {
            let at = w.push(keys, &serde_json::to_vec(&*batch).expect("serializable"), &mut d)?;
            for (slot, e) in batch.drain(..).enumerate() {
                if let VaultEntry::Put(s) = e {
                    moved.push((s.record, Place::Frame(at, slot as u32)));
                }
            }
            Ok::<_, VaultError>(())
        };
        self.visit_records(keys, places.iter().map(|p| p.1), &mut |s| {
            batch.push(VaultEntry::Put(Box::new(s.to_owned())));
            if batch.len() == FRAME_ENTRIES {
                flush(&mut batch, &mut w, &mut moved)?;
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            flush(&mut batch, &mut w, &mut moved)?;
        }
        let log: Vec<VaultEntry> = self.log.iter().cloned().map(VaultEntry::Mpi).collect();
        for plain in json_frames(&log) {
            w.push(keys, &plain, &mut d)?;
        }
        let len = w.finish()?;
        let live = moved.len() + log.len();
        // The old snapshot describes the old file: gone first, so a crash never pairs it with the new one
        // (it would be ignored anyway, its digest no longer matching).
        // It also holds the erased identities (P7), so failing to remove it fails the erasure.
        let snap = snapshot_path(&self.path);
        match fs::remove_file(&snap) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(VaultError::Io { path: snap, source: e }),
        }
        self.snap = None;
        fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        // The old file (with the erased identities) is closed here: its bytes are gone once no
        // process holds it.
        self.file = Some(fs::File::open(&self.path).map_err(io(&self.path))?);
        self.file_id = fs::metadata(&self.path).ok().as_ref().and_then(file_id);
        for (r, p) in moved {
            self.records.relocate(r, p);
        }
        self.valid_len = len;
        self.digest = d;
        self.since_snapshot = live;
        Ok(())
    }

    /// Writes a sealed snapshot of the vault's state bound to the file's current length and digest
    /// (temporary file, then rename), so the next open replays only what is appended after it.
    pub fn write_snapshot(&mut self, keys: &KeyStore) -> Result<(), VaultError> {
        self.write_snapshot_with_index(keys, None)
    }

    /// [`Vault::write_snapshot`] with the caller's index state (the MPI's, in step with this vault),
    /// which [`Vault::open_indexed`] hands back so an open need not rebuild the index.
    pub fn write_snapshot_with_index(
        &mut self,
        keys: &KeyStore,
        index: Option<IndexWriter<'_>>,
    ) -> Result<(), VaultError> {
        let own = self.held.is_none();
        if own {
            self.begin()?;
        }
        let r = self.write_snapshot_locked(keys, index);
        if own {
            self.end();
        }
        r
    }

    fn write_snapshot_locked(&mut self, keys: &KeyStore, index: Option<IndexWriter<'_>>) -> Result<(), VaultError> {
        let digest = *self.digest.finalize().as_bytes();
        let snap_path = snapshot_path(&self.path);
        let bound = snapshot::Bound { vault_len: self.valid_len, digest, next_record: self.next_record };
        let mut w = snapshot::Writer::create(&snap_path, keys, &bound, self.records.len()).map_err(io(&snap_path))?;
        // Streamed from the old snapshot and the frames after it, one chunk in memory at a time.
        let places = self.sorted_places();
        let mut moved: Vec<(u32, Place)> = Vec::with_capacity(places.len());
        let mut buf = Vec::new();
        let (mut chunk, mut in_buf) = (0u32, 0usize);
        self.visit_records(keys, places.iter().map(|p| p.1), &mut |s| {
            moved.push((s.record, Place::Snap(chunk, buf.len() as u32)));
            records::encode_into(&mut buf, &s);
            in_buf += 1;
            if in_buf == snapshot::CHUNK {
                w.push(keys, &buf).map_err(io(&snap_path))?;
                buf.clear();
                (chunk, in_buf) = (chunk + 1, 0);
            }
            Ok(())
        })?;
        if in_buf > 0 {
            w.push(keys, &buf).map_err(io(&snap_path))?;
        }
        let mut places = Vec::with_capacity(moved.len() * 20);
        for (r, p) in &moved {
            let Place::Snap(c, off) = *p else { unreachable!("every record was just placed in a chunk") };
            places.extend_from_slice(&r.to_le_bytes());
            places.extend_from_slice(&c.to_le_bytes());
            places.extend_from_slice(&off.to_le_bytes());
            places.extend_from_slice(&self.records.digest(*r).unwrap_or(0).to_le_bytes());
        }
        let source = w.finish(keys, &self.log, &places, index).map_err(io(&snap_path))?;
        self.snap = Some(source);
        for (r, p) in moved {
            self.records.relocate(r, p);
        }
        self.since_snapshot = 0;
        Ok(())
    }

    /// How many entries of [`Vault::log`] came from the snapshot at open (0 without one).
    pub fn snapshot_log_len(&self) -> usize {
        self.snap_log_len
    }

    /// Entries appended (or replayed) since the last snapshot.
    pub fn since_snapshot(&self) -> usize {
        self.since_snapshot
    }

    /// Records that the index came from the snapshot's index state.
    pub fn note_index_from_snapshot(&mut self) {
        self.opened.index_from_snapshot = true;
    }

    /// Records the open's timings (the store measures both phases).
    pub fn note_open_times(&mut self, vault_seconds: f64, index_seconds: f64) {
        self.opened.vault_seconds = vault_seconds;
        self.opened.index_seconds = index_seconds;
    }

    /// How the last open went: snapshot used, absent or ignored, and the entries replayed after it.
    pub fn open_stats(&self) -> &OpenStats {
        &self.opened
    }

    /// The live identities by record id.
    pub fn records(&self) -> &Records {
        &self.records
    }
    /// The MPI log, oldest first.
    pub fn log(&self) -> &[LogEntry] {
        &self.log
    }
    /// One past the highest record id ever written.
    pub fn next_record(&self) -> u32 {
        self.next_record
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

/// The JSON plaintexts of `entries` in frames of at most [`FRAME_ENTRIES`].
fn json_frames(entries: &[VaultEntry]) -> impl Iterator<Item = Vec<u8>> + '_ {
    entries.chunks(FRAME_ENTRIES).map(|c| serde_json::to_vec(c).expect("serializable"))
}

/// The content digest of a put entry (0 for a log entry).
fn put_digest(e: &VaultEntry) -> u64 {
    match e {
        VaultEntry::Put(s) => content_digest(&StoredIdentity::as_ref(s)),
        VaultEntry::Mpi(_) => 0,
    }
}

fn unreadable(at: u64, reason: &str) -> VaultError {
    VaultError::Unreadable { at, reason: reason.to_owned() }
}

/// Appends sealed, length-prefixed frames to a file after its first `len` bytes (cutting what
/// follows), feeding the digest; [`FrameWriter::finish`] syncs once.
struct FrameWriter {
    w: std::io::BufWriter<fs::File>,
    path: PathBuf,
    pos: u64,
    written: u64,
}

impl FrameWriter {
    fn at(path: &Path, len: u64) -> Result<FrameWriter, VaultError> {
        use std::io::Seek;
        let mut f = fs::OpenOptions::new().create(true).write(true).truncate(false).open(path).map_err(io(path))?;
        f.set_len(len).map_err(io(path))?;
        f.seek(std::io::SeekFrom::End(0)).map_err(io(path))?;
        let w = std::io::BufWriter::with_capacity(1 << 20, f);
        Ok(FrameWriter { w, path: path.to_path_buf(), pos: len, written: 0 })
    }
    /// Seals and writes one frame; returns its offset in the file.
    fn push(&mut self, keys: &KeyStore, plain: &[u8], digest: &mut blake3::Hasher) -> Result<u64, VaultError> {
        let sealed = keys.seal(AAD, plain);
        let len = u32::try_from(sealed.len()).expect("a frame of FRAME_ENTRIES entries is far below 4 GiB");
        self.w.write_all(&len.to_le_bytes()).map_err(io(&self.path))?;
        self.w.write_all(&sealed).map_err(io(&self.path))?;
        digest.update(&len.to_le_bytes());
        digest.update(&sealed);
        let at = self.pos;
        self.pos += 4 + sealed.len() as u64;
        self.written += 4 + sealed.len() as u64;
        Ok(at)
    }
    /// Flushes and syncs; returns the bytes written.
    fn finish(self) -> Result<u64, VaultError> {
        let path = self.path;
        let f = self.w.into_inner().map_err(|e| VaultError::Io { path: path.clone(), source: e.into_error() })?;
        f.sync_data().map_err(io(&path))?;
        Ok(self.written)
    }
}

/// What [`Vault::refresh`] found.
#[derive(Debug)]
pub enum Refresh {
    /// Nothing new.
    Same,
    /// Entries other processes appended (already applied to the vault).
    Appended(Vec<VaultEntry>),
    /// The file was rewritten (compaction): reopen.
    Replaced,
}

#[cfg(unix)]
fn file_id(m: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// Whether an open used a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotUse {
    /// None was there.
    #[default]
    Absent,
    /// It was used; only the entries after it were replayed.
    Used,
    /// It was there and not trusted (the reason); the whole file was replayed.
    Ignored(String),
}

/// How an open went.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OpenStats {
    /// The snapshot.
    pub snapshot: SnapshotUse,
    /// Entries replayed from the file (after the snapshot, or all of them).
    pub tail_entries: usize,
    /// Seconds to open the vault (snapshot and tail, or the whole file).
    pub vault_seconds: f64,
    /// Seconds to rebuild the index from it (set by the identity store).
    pub index_seconds: f64,
    /// The index was read from the snapshot's index state, not rebuilt (set by the identity store).
    pub index_from_snapshot: bool,
}

/// The snapshot file beside a vault file (`vault.snap`).
pub fn snapshot_path(vault: &Path) -> PathBuf {
    vault.with_extension("snap")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityInput;

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
        let audit = MemoryAudit::default();
        let (p1, p2) = (PersonKey::from_u64(1), PersonKey::from_u64(2));
        {
            let mut v = Vault::open(&path, &ks, &audit, "op").unwrap();
            v.put(
                &ks,
                &audit,
                "op",
                vec![
                    StoredIdentity::new(RecordId(0), p1, &identity("ヤマダ ハナコ")),
                    StoredIdentity::new(RecordId(1), p2, &identity("スズキ イチロウ")),
                ],
            )
            .unwrap();
        }
        let raw = fs::read(&path).unwrap();
        assert!(!raw.windows("ヤマダ".len()).any(|w| w == "ヤマダ".as_bytes()), "vault is encrypted at rest");
        let mut v = Vault::open(&path, &ks, &audit, "op").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            v.read_records(&ks, &audit, "op", "linkage", Some(p1), &[RecordId(0)]).unwrap()[0].kana,
            "ヤマダ ハナコ"
        );
        assert_eq!(v.erase(&ks, &audit, "op", "P7 request 1", Some(p1), &[RecordId(0)]).unwrap(), 1);
        drop(v);
        let reopened = Vault::open(&path, &ks, &audit, "op").unwrap();
        assert_eq!(reopened.len(), 1);
        assert_eq!(reopened.next_record(), 2, "an erased id is never handed out again");
        assert!(reopened.read_records(&ks, &audit, "op", "check", Some(p1), &[RecordId(0)]).unwrap().is_empty());
        assert_eq!(reopened.log(), &[LogEntry::Forget { records: vec![RecordId(0)] }]);
        let actions: Vec<VaultAction> = audit.0.lock().unwrap().iter().map(|e| e.0).collect();
        use VaultAction::*;
        assert_eq!(actions, vec![Open, Write, Open, Read, Erase, Open, Read]);
        drop(reopened);
        // A different key store cannot read it, and says so.
        let other = KeyStore::create(&t.path().join("keys2")).unwrap();
        let e = Vault::open(&path, &other, &MemoryAudit::default(), "x").unwrap_err();
        assert!(e.to_string().contains("wrong master key"), "{e}");
    }

    #[test]
    fn p7_a_snapshot_is_used_only_when_it_matches_and_replay_covers_the_tail() {
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::create(&t.path().join("keys")).unwrap();
        let path = t.path().join("vault.kbv");
        let a = MemoryAudit::default();
        let put = |v: &mut Vault, i: u32, kana: &str| {
            v.put(
                &ks,
                &a,
                "op",
                vec![StoredIdentity::new(RecordId(i), PersonKey::from_u64(i as u64 + 1), &identity(kana))],
            )
            .unwrap()
        };
        let mut v = Vault::open(&path, &ks, &a, "op").unwrap();
        put(&mut v, 0, "ア");
        put(&mut v, 1, "イ");
        v.append(&ks, vec![VaultEntry::Mpi(LogEntry::Undo { decision: 9, by: "x".into() })]).unwrap();
        v.write_snapshot(&ks).unwrap();
        put(&mut v, 2, "ウ");
        let want = (v.identities(&ks).unwrap(), v.log().to_vec(), v.next_record());
        drop(v);
        let snap = snapshot_path(&path);
        assert!(!fs::read(&snap).unwrap().windows("イ".len()).any(|w| w == "イ".as_bytes()), "sealed");
        let v = Vault::open(&path, &ks, &a, "op").unwrap();
        assert_eq!((&v.open_stats().snapshot, v.open_stats().tail_entries), (&SnapshotUse::Used, 1));
        assert_eq!((v.identities(&ks).unwrap(), v.log().to_vec(), v.next_record()), want);
        drop(v);
        // A flipped byte anywhere, another key store's snapshot, or a vault that changed under it:
        // ignored, the whole file replayed, same state.
        let good = fs::read(&snap).unwrap();
        let mut bad = good.clone();
        let n = bad.len() - 40;
        bad[n] ^= 1;
        fs::write(&snap, &bad).unwrap();
        let v = Vault::open(&path, &ks, &a, "op").unwrap();
        assert!(matches!(v.open_stats().snapshot, SnapshotUse::Ignored(_)), "{:?}", v.open_stats());
        assert_eq!((v.identities(&ks).unwrap(), v.log().to_vec(), v.next_record()), want);
        assert_eq!(v.open_stats().tail_entries, 4);
        drop(v);
        let other = KeyStore::create(&t.path().join("k2")).unwrap();
        let p2 = t.path().join("other.kbv");
        let mut o = Vault::open(&p2, &other, &a, "op").unwrap();
        o.put(&other, &a, "op", vec![StoredIdentity::new(RecordId(0), PersonKey::from_u64(5), &identity("エ"))])
            .unwrap();
        o.write_snapshot(&other).unwrap();
        drop(o);
        fs::copy(snapshot_path(&p2), &snap).unwrap();
        let v = Vault::open(&path, &ks, &a, "op").unwrap();
        assert!(matches!(v.open_stats().snapshot, SnapshotUse::Ignored(_)));
        assert_eq!(v.identities(&ks).unwrap(), want.0);
        drop(v);
        // The right snapshot over a vault whose covered prefix changed (same length, other bytes).
        fs::write(&snap, &good).unwrap();
        let mut raw = fs::read(&path).unwrap();
        raw[10] ^= 1;
        let p3 = t.path().join("changed.kbv");
        fs::write(&p3, &raw).unwrap();
        fs::copy(&snap, snapshot_path(&p3)).unwrap();
        let e = Vault::open(&p3, &ks, &a, "op").unwrap_err();
        assert!(matches!(e, VaultError::Sealed { index: 0, .. }), "the snapshot is ignored, the damage reported: {e}");
        // Erasure removes the snapshot, which held the erased identity.
        let mut v = Vault::open(&path, &ks, &a, "op").unwrap();
        assert_eq!(v.open_stats().snapshot, SnapshotUse::Used);
        v.erase(&ks, &a, "op", "P7", None, &[RecordId(1)]).unwrap();
        assert!(!snap.exists());
    }

    #[test]
    fn a_torn_last_frame_is_ignored_and_cut_on_the_next_write() {
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::create(&t.path().join("keys")).unwrap();
        let path = t.path().join("vault.kbv");
        let a = MemoryAudit::default();
        let mut v = Vault::open(&path, &ks, &a, "op").unwrap();
        v.put(&ks, &a, "op", vec![StoredIdentity::new(RecordId(0), PersonKey::from_u64(1), &identity("ア"))]).unwrap();
        drop(v);
        fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        let mut v = Vault::open(&path, &ks, &a, "op").unwrap();
        assert_eq!(v.len(), 1);
        v.put(&ks, &a, "op", vec![StoredIdentity::new(RecordId(1), PersonKey::from_u64(2), &identity("イ"))]).unwrap();
        drop(v);
        assert_eq!(Vault::open(&path, &ks, &a, "op").unwrap().len(), 2);
    }

    #[test]
    fn a_failing_audit_hook_refuses_the_read() {
        struct Broken;
        impl VaultAudit for Broken {
            fn record(&self, _: &VaultEvent<'_>) -> Result<(), AuditFailed> {
                Err(AuditFailed("disk full".into()))
            }
        }
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::create(&t.path().join("keys")).unwrap();
        let path = t.path().join("vault.kbv");
        let a = MemoryAudit::default();
        let mut v = Vault::open(&path, &ks, &a, "op").unwrap();
        v.put(&ks, &a, "op", vec![StoredIdentity::new(RecordId(0), PersonKey::from_u64(1), &identity("ア"))]).unwrap();
        assert!(matches!(v.read_records(&ks, &Broken, "op", "x", None, &[RecordId(0)]), Err(VaultError::Audit(_))));
        drop(v);
        assert!(Vault::open(&path, &ks, &Broken, "op").is_err());
    }
}
