//! The vault's sealed snapshot (`vault.snap`): its state (live identities, MPI log, next record id)
//! as of a prefix of the vault file, so an open decrypts compact chunks instead of parsing every
//! frame's JSON, and replays only the frames appended after it.
//!
//! Layout: `KBVSNAP1`, then length-prefixed sealed parts: a JSON header (vault length covered, its
//! BLAKE3 digest, next record id, counts), the identity chunks (a compact binary encoding, 100,000
//! records each) and the JSON log. Every part's associated data names the snapshot's digest and the
//! part's index, so parts cannot be swapped between snapshots or reordered. The snapshot is trusted
//! only if every part opens with the key store's master key, the counts agree, nothing trails, and
//! the digest equals the BLAKE3 of the vault file's first `vault_len` bytes now; otherwise it is
//! ignored (the caller replays the whole file and may write a new one). It never holds more than
//! the vault itself: the same identities, sealed the same way.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StoredIdentity;
use crate::keystore::KeyStore;
use crate::mpi::LogEntry;

const MAGIC: &[u8; 8] = b"KBVSNAP1";
const CHUNK: usize = 100_000;

/// What a snapshot is bound to.
pub(super) struct Bound {
    pub vault_len: u64,
    pub digest: [u8; 32],
    pub next_record: u32,
}

#[derive(Serialize, Deserialize)]
struct Header {
    vault_len: u64,
    digest: String,
    next_record: u32,
    records: usize,
    chunks: usize,
}

/// A trusted snapshot, with the digest state of the prefix it covers.
pub(super) struct Loaded {
    pub vault_len: u64,
    pub next_record: u32,
    pub records: BTreeMap<u32, StoredIdentity>,
    pub log: Vec<LogEntry>,
    pub hasher: blake3::Hasher,
}

fn aad(digest: &str, part: &str) -> Vec<u8> {
    format!("kiban/vault-snapshot/v1|{digest}|{part}").into_bytes()
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode(records: &[&StoredIdentity]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 160);
    for r in records {
        out.extend_from_slice(&r.record.to_le_bytes());
        out.extend_from_slice(&r.person.to_le_bytes());
        out.extend_from_slice(&r.normalization.to_le_bytes());
        for s in [&r.provider, &r.patient, &r.kanji, &r.kana, &r.sex, &r.birth, &r.postal, &r.address, &r.phone] {
            put_str(&mut out, s);
        }
        for s in &r.card {
            put_str(&mut out, s);
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("a snapshot chunk is truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a snapshot string is not UTF-8".to_owned())
    }
}

fn decode(bytes: &[u8]) -> Result<Vec<StoredIdentity>, String> {
    let mut r = Reader(bytes);
    let mut out = Vec::new();
    while !r.0.is_empty() {
        let (record, person, normalization) = (r.u32()?, r.u64()?, r.u32()?);
        let mut s = || r.string();
        out.push(StoredIdentity {
            record,
            person,
            normalization,
            provider: s()?,
            patient: s()?,
            kanji: s()?,
            kana: s()?,
            sex: s()?,
            birth: s()?,
            postal: s()?,
            address: s()?,
            phone: s()?,
            card: [s()?, s()?, s()?, s()?],
        });
    }
    Ok(out)
}

fn frame(out: &mut impl Write, sealed: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(sealed.len()).map_err(|_| std::io::Error::other("snapshot part over 4 GiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(sealed)
}

/// Writes the snapshot (temporary file, sync, rename).
pub(super) fn write(
    path: &Path,
    keys: &KeyStore,
    bound: &Bound,
    records: &BTreeMap<u32, StoredIdentity>,
    log: &[LogEntry],
) -> std::io::Result<()> {
    let digest = hex::encode(bound.digest);
    let all: Vec<&StoredIdentity> = records.values().collect();
    let chunks: Vec<&[&StoredIdentity]> = all.chunks(CHUNK).collect();
    let header = Header {
        vault_len: bound.vault_len,
        digest: digest.clone(),
        next_record: bound.next_record,
        records: all.len(),
        chunks: chunks.len(),
    };
    // Encoding and sealing are per chunk and independent: all cores, then written in order.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let per = chunks.len().div_ceil(threads).max(1);
    let sealed: Vec<Vec<u8>> = std::thread::scope(|sc| {
        let handles: Vec<_> = chunks
            .chunks(per)
            .enumerate()
            .map(|(g, group)| {
                let digest = &digest;
                sc.spawn(move || {
                    group
                        .iter()
                        .enumerate()
                        .map(|(i, c)| keys.seal(&aad(digest, &format!("chunk/{}", g * per + i)), &encode(c)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("snapshot sealer thread")).collect()
    });
    let tmp = path.with_extension("snap.tmp");
    let f = fs::File::create(&tmp)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    w.write_all(MAGIC)?;
    frame(&mut w, &keys.seal(&aad("", "header"), &serde_json::to_vec(&header).expect("serializable")))?;
    for s in &sealed {
        frame(&mut w, s)?;
    }
    frame(&mut w, &keys.seal(&aad(&digest, "log"), &serde_json::to_vec(log).expect("serializable")))?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// Loads the snapshot at `path` if there is one and it can be trusted for `vault` (the vault file's
/// bytes now). `Ok(None)`: no snapshot; `Err`: one that is not trusted, and why.
pub(super) fn load(path: &Path, keys: &KeyStore, vault: &[u8]) -> Result<Option<Loaded>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut r = Reader(&bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return Err("not a vault snapshot".into());
    }
    let part = |r: &mut Reader<'_>| -> Result<Vec<u8>, String> {
        let n = r.u32()? as usize;
        Ok(r.take(n)?.to_vec())
    };
    let head = keys.open_sealed(&aad("", "header"), &part(&mut r)?).map_err(|e| format!("header: {e}"))?;
    let h: Header = serde_json::from_slice(&head).map_err(|e| format!("header: {e}"))?;
    let covered = usize::try_from(h.vault_len).map_err(|_| "length".to_owned())?;
    if covered > vault.len() {
        return Err(format!("it covers {covered} bytes, the vault has {}", vault.len()));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&vault[..covered]);
    if hex::encode(hasher.finalize().as_bytes()) != h.digest {
        return Err("its digest is not that of the vault file".into());
    }
    let mut sealed = Vec::with_capacity(h.chunks);
    for _ in 0..h.chunks {
        sealed.push(part(&mut r)?);
    }
    let log_part = part(&mut r)?;
    if !r.0.is_empty() {
        return Err("bytes trail the snapshot".into());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let per = sealed.len().div_ceil(threads).max(1);
    let decoded: Vec<Result<Vec<StoredIdentity>, String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = sealed
            .chunks(per)
            .enumerate()
            .map(|(g, group)| {
                let digest = &h.digest;
                sc.spawn(move || {
                    group
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let plain = keys
                                .open_sealed(&aad(digest, &format!("chunk/{}", g * per + i)), c)
                                .map_err(|e| format!("chunk {}: {e}", g * per + i))?;
                            decode(&plain)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("snapshot decoder thread")).collect()
    });
    let mut records = Vec::with_capacity(h.records);
    for d in decoded {
        records.extend(d?.into_iter().map(|s| (s.record, s)));
    }
    if records.len() != h.records {
        return Err(format!("it holds {} identities, its header says {}", records.len(), h.records));
    }
    let log = keys.open_sealed(&aad(&h.digest, "log"), &log_part).map_err(|e| format!("log: {e}"))?;
    let log: Vec<LogEntry> = serde_json::from_slice(&log).map_err(|e| format!("log: {e}"))?;
    Ok(Some(Loaded {
        vault_len: h.vault_len,
        next_record: h.next_record,
        records: records.into_iter().collect(),
        log,
        hasher,
    }))
}
