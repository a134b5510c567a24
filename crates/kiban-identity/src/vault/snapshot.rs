//! The vault's sealed snapshot (`vault.snap`): its state (live identities, MPI log, next record id)
//! as of a prefix of the vault file, so an open decrypts compact chunks instead of parsing every
//! frame's JSON, and replays only the frames appended after it.
//!
//! Layout: `KBVSNAP2` (`KBVSNAP1`, with fixed-width string lengths, is ignored and rebuilt), then length-prefixed sealed parts: a JSON header (vault length covered, its
//! BLAKE3 digest, next record id, counts), the identity chunks (the encoding of `records.rs`, 100,000
//! records each) and the JSON log. Every part's associated data names the snapshot's digest and the
//! part's index, so parts cannot be swapped between snapshots or reordered. The snapshot is trusted
//! only if every part opens with the key store's master key, the counts agree, nothing trails, and
//! the digest equals the BLAKE3 of the vault file's first `vault_len` bytes now; otherwise it is
//! ignored (the caller replays the whole file and may write a new one). It never holds more than
//! the vault itself: the same identities, sealed the same way.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::records::Records;
use crate::keystore::KeyStore;
use crate::mpi::LogEntry;

const MAGIC: &[u8; 8] = b"KBVSNAP2";
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
    pub records: Records,
    pub log: Vec<LogEntry>,
    pub hasher: blake3::Hasher,
}

fn aad(digest: &str, part: &str) -> Vec<u8> {
    format!("kiban/vault-snapshot/v1|{digest}|{part}").into_bytes()
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
    records: &Records,
    log: &[LogEntry],
) -> std::io::Result<()> {
    let digest = hex::encode(bound.digest);
    // The records are kept in this encoding already: a chunk is a copy of their bytes.
    let chunks = records.encoded_chunks(CHUNK);
    let header = Header {
        vault_len: bound.vault_len,
        digest: digest.clone(),
        next_record: bound.next_record,
        records: records.len(),
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
                        .map(|(i, c)| keys.seal(&aad(digest, &format!("chunk/{}", g * per + i)), c))
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

/// Reads one length-prefixed part.
fn read_part(r: &mut impl Read) -> Result<Vec<u8>, String> {
    let mut n = [0u8; 4];
    r.read_exact(&mut n).map_err(|_| "a snapshot part is truncated".to_owned())?;
    let n = u32::from_le_bytes(n) as usize;
    let mut b = Vec::new();
    r.take(n as u64).read_to_end(&mut b).map_err(|e| e.to_string())?;
    if b.len() != n {
        return Err("a snapshot part is truncated".into());
    }
    Ok(b)
}

/// Loads the snapshot at `path` if there is one and it can be trusted for the vault file `vault`
/// (`vault_len` bytes long now). The vault's covered prefix is hashed as it streams past (never
/// held in memory), and the sealed chunks are read one by one and dropped once opened.
/// `Ok(None)`: no snapshot; `Err`: one that is not trusted, and why.
pub(super) fn load(
    path: &Path,
    keys: &KeyStore,
    vault: &mut fs::File,
    vault_len: u64,
) -> Result<Option<Loaded>, String> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let mut magic = [0u8; 8];
    if r.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err("not a vault snapshot".into());
    }
    let head = keys.open_sealed(&aad("", "header"), &read_part(&mut r)?).map_err(|e| format!("header: {e}"))?;
    let h: Header = serde_json::from_slice(&head).map_err(|e| format!("header: {e}"))?;
    if h.vault_len > vault_len {
        return Err(format!("it covers {} bytes, the vault has {vault_len}", h.vault_len));
    }
    let mut hasher = blake3::Hasher::new();
    vault.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut left = h.vault_len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = vault.read(&mut buf[..left.min(1 << 20) as usize]).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the vault file is shorter than it was".into());
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    if hex::encode(hasher.finalize().as_bytes()) != h.digest {
        return Err("its digest is not that of the vault file".into());
    }
    let mut sealed = Vec::with_capacity(h.chunks);
    for _ in 0..h.chunks {
        sealed.push(read_part(&mut r)?);
    }
    let log_part = read_part(&mut r)?;
    let mut rest = [0u8; 1];
    if r.read(&mut rest).map_err(|e| e.to_string())? != 0 {
        return Err("bytes trail the snapshot".into());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let per = sealed.len().div_ceil(threads).max(1);
    let mut groups: Vec<Vec<Vec<u8>>> = vec![];
    let mut it = sealed.into_iter();
    loop {
        let g: Vec<Vec<u8>> = it.by_ref().take(per).collect();
        if g.is_empty() {
            break;
        }
        groups.push(g);
    }
    let opened: Vec<Result<Vec<u8>, String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = groups
            .into_iter()
            .enumerate()
            .map(|(g, group)| {
                let digest = &h.digest;
                sc.spawn(move || {
                    // Each sealed chunk is dropped as soon as it is opened: memory stays near one copy.
                    group
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| {
                            keys.open_sealed(&aad(digest, &format!("chunk/{}", g * per + i)), &c)
                                .map_err(|e| format!("chunk {}: {e}", g * per + i))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("snapshot opener thread")).collect()
    });
    let mut records = Records::default();
    for (i, plain) in opened.into_iter().enumerate() {
        records.take_block(plain?).map_err(|e| format!("chunk {i}: {e}"))?;
    }
    if records.len() != h.records {
        return Err(format!("it holds {} identities, its header says {}", records.len(), h.records));
    }
    let log = keys.open_sealed(&aad(&h.digest, "log"), &log_part).map_err(|e| format!("log: {e}"))?;
    let log: Vec<LogEntry> = serde_json::from_slice(&log).map_err(|e| format!("log: {e}"))?;
    Ok(Some(Loaded { vault_len: h.vault_len, next_record: h.next_record, records, log, hasher }))
}
