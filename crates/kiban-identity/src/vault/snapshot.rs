//! The vault's sealed snapshot (`vault.snap`): its state (live identities, MPI log, next record id)
//! as of a prefix of the vault file, so an open decrypts compact chunks instead of parsing every
//! frame's JSON, and replays only the frames appended after it. The opened vault keeps the file
//! open and reads an identity from its chunk on demand (identities are not kept in memory).
//!
//! Layout: `KBVSNAP3` (older snapshots, `KBVSNAP1` and `KBVSNAP2`, are ignored and rebuilt), then
//! length-prefixed sealed parts: a JSON header (vault length covered, its BLAKE3 digest, next record
//! id, counts), the identity chunks (the encoding of `records.rs`, 20,000 records each but the
//! last, so an on-demand read decrypts a few megabytes), the JSON log, the places part (per
//! identity: record, chunk, offset in it, content digest; 20 bytes), the index state's parts (the
//! MPI as [`crate::mpi::Mpi::write_state`] writes it, at most 64 MiB each; none for a vault
//! snapshot written without an index) and an end part counting them. Every part's associated data names the snapshot's digest and the
//! part's index, so parts cannot be swapped between snapshots or reordered. The snapshot is trusted
//! only if every part opens with the key store's master key, the counts agree, nothing trails, and
//! the digest equals the BLAKE3 of the vault file's first `vault_len` bytes now; otherwise it is
//! ignored (the caller replays the whole file and may write a new one). It never holds more than
//! the vault itself: the same identities, sealed the same way.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::records::{StoredRef, content_digest, scan_block};
use crate::keystore::KeyStore;
use crate::mpi::LogEntry;

const MAGIC: &[u8; 8] = b"KBVSNAP3";
/// Identities per chunk (also the unit an on-demand read decrypts).
pub(super) const CHUNK: usize = 20_000;

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

/// One identity of a loaded snapshot: where it is, its content digest and what the visitor made
/// (`None` when the index state was loaded instead of visiting the identities).
pub(super) struct Placed<T> {
    pub record: u32,
    pub chunk: u32,
    pub offset: u32,
    pub digest: u64,
    pub value: Option<T>,
}

/// A trusted snapshot, with the digest state of the prefix it covers.
pub(super) struct Loaded<'k, T> {
    pub vault_len: u64,
    pub next_record: u32,
    pub records: Vec<Placed<T>>,
    pub log: Vec<LogEntry>,
    pub hasher: blake3::Hasher,
    pub source: Source,
    pub index: Option<IndexReader<'k>>,
}

fn aad(digest: &str, part: &str) -> Vec<u8> {
    format!("kiban/vault-snapshot/v1|{digest}|{part}").into_bytes()
}

fn frame(out: &mut impl Write, sealed: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(sealed.len()).map_err(|_| std::io::Error::other("snapshot part over 4 GiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(sealed)
}

/// Writes a snapshot part by part (temporary file, then [`Writer::finish`]: sync, rename). The
/// chunks are pushed one at a time, so at most one is in memory.
pub(super) struct Writer {
    w: std::io::BufWriter<fs::File>,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    digest: String,
    pos: u64,
    chunk_at: Vec<u64>,
    chunks: usize,
}

impl Writer {
    /// Starts a snapshot of `records` identities (so `records.div_ceil(CHUNK)` chunks, each of
    /// [`CHUNK`] records but the last).
    pub(super) fn create(path: &Path, keys: &KeyStore, bound: &Bound, records: usize) -> std::io::Result<Writer> {
        let digest = hex::encode(bound.digest);
        let chunks = records.div_ceil(CHUNK);
        let header = Header {
            vault_len: bound.vault_len,
            digest: digest.clone(),
            next_record: bound.next_record,
            records,
            chunks,
        };
        let tmp = path.with_extension("snap.tmp");
        let mut w = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(&tmp)?);
        w.write_all(MAGIC)?;
        let head = keys.seal(&aad("", "header"), &serde_json::to_vec(&header).expect("serializable"));
        frame(&mut w, &head)?;
        let pos = (MAGIC.len() + 4 + head.len()) as u64;
        Ok(Writer { w, tmp, path: path.to_path_buf(), digest, pos, chunk_at: vec![], chunks })
    }

    /// Seals and writes the next chunk (encoded records).
    pub(super) fn push(&mut self, keys: &KeyStore, plain: &[u8]) -> std::io::Result<()> {
        let i = self.chunk_at.len();
        if i >= self.chunks {
            return Err(std::io::Error::other("more snapshot chunks than the header says"));
        }
        let sealed = keys.seal(&aad(&self.digest, &format!("chunk/{i}")), plain);
        frame(&mut self.w, &sealed)?;
        self.chunk_at.push(self.pos);
        self.pos += 4 + sealed.len() as u64;
        Ok(())
    }

    /// Writes the log, the places of the identities (record, chunk, offset, content digest, in the
    /// order pushed), then the index state `index` streams (if any) in parts of at most 64 MiB and
    /// an end part counting them; syncs and renames into place; returns the file opened for reading.
    pub(super) fn finish(
        mut self,
        keys: &KeyStore,
        log: &[LogEntry],
        places: &[u8],
        index: Option<super::IndexWriter<'_>>,
    ) -> std::io::Result<Source> {
        if self.chunk_at.len() != self.chunks {
            return Err(std::io::Error::other("fewer snapshot chunks than the header says"));
        }
        frame(&mut self.w, &keys.seal(&aad(&self.digest, "log"), &serde_json::to_vec(log).expect("serializable")))?;
        frame(&mut self.w, &keys.seal(&aad(&self.digest, "places"), places))?;
        let mut parts = 0usize;
        if let Some(write) = index {
            let mut sink = PartSink { w: &mut self.w, keys, digest: &self.digest, buf: Vec::new(), parts: 0 };
            write(&mut sink)?;
            sink.seal_part()?;
            parts = sink.parts;
        }
        let end = serde_json::to_vec(&End { index_parts: parts }).expect("serializable");
        frame(&mut self.w, &keys.seal(&aad(&self.digest, "end"), &end))?;
        let f = self.w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&self.tmp, &self.path)?;
        Ok(Source { file: fs::File::open(&self.path)?, digest: self.digest, chunk_at: self.chunk_at })
    }
}

#[derive(Serialize, Deserialize)]
struct End {
    index_parts: usize,
}

const INDEX_PART: usize = 64 << 20;

/// Cuts a byte stream into sealed index parts.
struct PartSink<'a> {
    w: &'a mut std::io::BufWriter<fs::File>,
    keys: &'a KeyStore,
    digest: &'a str,
    buf: Vec<u8>,
    parts: usize,
}

impl PartSink<'_> {
    fn seal_part(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let sealed = self.keys.seal(&aad(self.digest, &format!("index/{}", self.parts)), &self.buf);
            frame(self.w, &sealed)?;
            self.parts += 1;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Write for PartSink<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.len().min(INDEX_PART - self.buf.len());
        self.buf.extend_from_slice(&b[..n]);
        if self.buf.len() == INDEX_PART {
            self.seal_part()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads the index state back from its sealed parts, one part in memory at a time.
pub struct IndexReader<'k> {
    file: fs::File,
    keys: &'k KeyStore,
    digest: String,
    parts: Vec<u64>,
    next: usize,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for IndexReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            let Some(&at) = self.parts.get(self.next) else { return Ok(0) };
            let sealed = read_at(&self.file, at)?;
            self.cur = self
                .keys
                .open_sealed(&aad(&self.digest, &format!("index/{}", self.next)), &sealed)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The sealed part whose length prefix is at `at`.
fn read_at(f: &fs::File, at: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut n = [0u8; 4];
    f.read_exact_at(&mut n, at)?;
    let mut sealed = vec![0u8; u32::from_le_bytes(n) as usize];
    f.read_exact_at(&mut sealed, at + 4)?;
    Ok(sealed)
}

/// An open snapshot file to read identity chunks from on demand (the open handle keeps the file it
/// was opened from readable even after a newer snapshot replaced it).
pub(super) struct Source {
    file: fs::File,
    digest: String,
    /// File offset of each chunk's length prefix.
    chunk_at: Vec<u64>,
}

impl Source {
    /// The plaintext of chunk `i`.
    pub(super) fn chunk(&self, keys: &KeyStore, i: u32) -> Result<Vec<u8>, String> {
        let at = *self.chunk_at.get(i as usize).ok_or_else(|| format!("no chunk {i}"))?;
        let sealed = read_at(&self.file, at).map_err(|e| format!("chunk {i}: {e}"))?;
        keys.open_sealed(&aad(&self.digest, &format!("chunk/{i}")), &sealed).map_err(|e| format!("chunk {i}: {e}"))
    }
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
/// held in memory). With `want_index` and an index state in the snapshot, the identity chunks are
/// not opened at all (their places come from the places part; each chunk is authenticated when an
/// identity is read from it) and the index is returned to be read. Otherwise the chunks are read a
/// few at a time, opened on all cores, and each record is handed to `visit` (in the chunk's thread)
/// and dropped with its chunk. `Ok(None)`: no snapshot; `Err`: one that is not trusted, and why.
pub(super) fn load<'k, T: Send>(
    path: &Path,
    keys: &'k KeyStore,
    vault: &mut fs::File,
    vault_len: u64,
    visit: &(dyn Fn(&StoredRef<'_>) -> T + Sync),
    want_index: bool,
) -> Result<Option<Loaded<'k, T>>, String> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let reader = f.try_clone().map_err(|e| e.to_string())?;
    let mut r = std::io::BufReader::with_capacity(1 << 16, f);
    let mut magic = [0u8; 8];
    if r.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err("not a vault snapshot".into());
    }
    let head_part = read_part(&mut r)?;
    let head = keys.open_sealed(&aad("", "header"), &head_part).map_err(|e| format!("header: {e}"))?;
    let h: Header = serde_json::from_slice(&head).map_err(|e| format!("header: {e}"))?;
    if h.vault_len > vault_len {
        return Err(format!("it covers {} bytes, the vault has {vault_len}", h.vault_len));
    }
    // Every part's place first (lengths only): chunks, log, places, index parts, end.
    let mut at = Vec::new();
    let mut pos = (MAGIC.len() + 4 + head_part.len()) as u64;
    while pos < size {
        let mut n = [0u8; 4];
        r.read_exact(&mut n).map_err(|_| "a snapshot part is truncated".to_owned())?;
        let n = u64::from(u32::from_le_bytes(n));
        if pos + 4 + n > size {
            return Err("a snapshot part is truncated".into());
        }
        at.push(pos);
        r.seek_relative(n as i64).map_err(|e| e.to_string())?;
        pos += 4 + n;
    }
    if at.len() < h.chunks + 3 {
        return Err("the snapshot lacks parts".into());
    }
    let part = |i: usize, name: &str| -> Result<Vec<u8>, String> {
        let sealed = read_at(&reader, at[i]).map_err(|e| format!("{name}: {e}"))?;
        keys.open_sealed(&aad(&h.digest, name), &sealed).map_err(|e| format!("{name}: {e}"))
    };
    let end: End = serde_json::from_slice(&part(at.len() - 1, "end")?).map_err(|e| format!("end: {e}"))?;
    if at.len() != h.chunks + 3 + end.index_parts {
        return Err(format!("it has {} parts, its header and end say {}", at.len(), h.chunks + 3 + end.index_parts));
    }
    let log: Vec<LogEntry> = serde_json::from_slice(&part(h.chunks, "log")?).map_err(|e| format!("log: {e}"))?;
    let places = part(h.chunks + 1, "places")?;
    if places.len() != h.records * 20 {
        return Err(format!("its places part holds {} bytes for {} identities", places.len(), h.records));
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
    let chunk_at = at[..h.chunks].to_vec();
    let source = |file| Source { file, digest: h.digest.clone(), chunk_at: chunk_at.clone() };
    if want_index && end.index_parts > 0 {
        let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let records = places
            .chunks_exact(20)
            .map(|p| {
                let (record, chunk, offset) = (u32_at(p, 0), u32_at(p, 4), u32_at(p, 8));
                let digest = u64::from_le_bytes(p[12..20].try_into().expect("8 bytes"));
                if chunk as usize >= h.chunks || record >= h.next_record {
                    return Err(format!("record {record} is placed outside the snapshot"));
                }
                Ok(Placed { record, chunk, offset, digest, value: None })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let index = IndexReader {
            file: reader.try_clone().map_err(|e| e.to_string())?,
            keys,
            digest: h.digest.clone(),
            parts: at[h.chunks + 2..at.len() - 1].to_vec(),
            next: 0,
            cur: vec![],
            pos: 0,
        };
        return Ok(Some(Loaded {
            vault_len: h.vault_len,
            next_record: h.next_record,
            records,
            log,
            hasher,
            source: source(reader),
            index: Some(index),
        }));
    }
    drop(places);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let mut records: Vec<Placed<T>> = Vec::with_capacity(h.records);
    for batch in (0..h.chunks).collect::<Vec<_>>().chunks(threads) {
        // A few chunks at a time: memory stays near `threads` chunks, not the whole file.
        let opened: Vec<Result<Vec<Placed<T>>, String>> = std::thread::scope(|sc| {
            let handles: Vec<_> = batch
                .iter()
                .map(|&i| {
                    let part = &part;
                    sc.spawn(move || {
                        let plain = part(i, &format!("chunk/{i}"))?;
                        let recs = scan_block(&plain).map_err(|e| format!("chunk {i}: {e}"))?;
                        if recs.len() != CHUNK.min(h.records.saturating_sub(i * CHUNK)) {
                            return Err(format!("chunk {i} holds {} identities", recs.len()));
                        }
                        Ok(recs
                            .iter()
                            .map(|(off, s)| Placed {
                                record: s.record,
                                chunk: i as u32,
                                offset: *off,
                                digest: content_digest(s),
                                value: Some(visit(s)),
                            })
                            .collect())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("snapshot opener thread")).collect()
        });
        for o in opened {
            records.extend(o?);
        }
    }
    if records.len() != h.records {
        return Err(format!("it holds {} identities, its header says {}", records.len(), h.records));
    }
    Ok(Some(Loaded {
        vault_len: h.vault_len,
        next_record: h.next_record,
        records,
        log,
        hasher,
        source: source(reader),
        index: None,
    }))
}
