//! Job files: a job's bulky secret payload (the gate's facts of every patient of a submission)
//! sealed into a file on the storage the executors already read the input from, so that a plan
//! carries only the file's path, length and digest ([`JobFileRef`]) instead of the payload itself.
//!
//! The file is sealed in 1 MiB chunks with AES-256-GCM under the job key (derived from the cluster
//! secret with the job id and the file's own fresh salt, as [`crate::seal`] does for small payloads):
//! writing and reading never hold the whole ciphertext, each chunk's associated data binds the kind,
//! the job id, the chunk's index and whether it is the last one, so chunks cannot be reordered,
//! dropped, truncated or moved to another job. Before an executor opens the file it checks the plan's
//! BLAKE3 digest of the whole file, so a file replaced by another sealed file of the same job is
//! refused too.
//!
//! Layout: `KBJOBF01` ‖ salt (16) ‖ chunks, each `last (u8) ‖ ciphertext length (u32 LE) ‖
//! ciphertext` (plaintext up to [`CHUNK`] bytes plus the 16-byte tag); the last chunk (possibly empty)
//! has `last = 1` and nothing follows it.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::seal::ClusterSecret;
use crate::{ClusterError, Result};

/// The first bytes of a job file.
const MAGIC: &[u8; 8] = b"KBJOBF01";
/// Plaintext bytes per sealed chunk (small in unit tests, so they cross chunks cheaply).
pub const CHUNK: usize = if cfg!(test) { 4096 } else { 1 << 20 };
/// The AES-GCM tag length.
const TAG: usize = 16;

/// What a plan carries about a job file: where it is and what its bytes must hash to (no secret).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JobFileRef {
    /// What the payload is (`gate_facts`).
    pub kind: String,
    /// The job it belongs to.
    pub job_id: String,
    /// Where every executor finds it (shared storage, same path on every node).
    pub path: PathBuf,
    /// The file's length in bytes.
    pub len: u64,
    /// BLAKE3 of the whole file.
    pub digest: [u8; 32],
}

impl std::fmt::Debug for JobFileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobFileRef({} for job {}, {} bytes)", self.kind, self.job_id, self.len)
    }
}

#[derive(Serialize, Deserialize)]
struct RefWire {
    v: u32,
    kind: String,
    job_id: String,
    path: String,
    len: u64,
    digest: String,
}

impl JobFileRef {
    /// The bytes carried in a plan.
    pub fn to_bytes(&self) -> Vec<u8> {
        let w = RefWire {
            v: 1,
            kind: self.kind.clone(),
            job_id: self.job_id.clone(),
            path: self.path.display().to_string(),
            len: self.len,
            digest: hex::encode(self.digest),
        };
        serde_json::to_vec(&w).expect("a job file reference serializes")
    }

    /// Parses the bytes carried in a plan.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let bad = |what: &str| ClusterError::Secret(format!("a job file reference is malformed: {what}"));
        let w: RefWire = serde_json::from_slice(b).map_err(|e| bad(&e.to_string()))?;
        if w.v != 1 {
            return Err(bad("unknown version"));
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&w.digest, &mut digest).map_err(|_| bad("digest"))?;
        Ok(JobFileRef { kind: w.kind, job_id: w.job_id, path: PathBuf::from(w.path), len: w.len, digest })
    }
}

fn aad(kind: &str, job_id: &str, index: u64, last: bool) -> Vec<u8> {
    let mut a = format!("kiban cluster job file v1\0{kind}\0{job_id}\0").into_bytes();
    a.extend_from_slice(&index.to_be_bytes());
    a.push(last as u8);
    a
}

fn nonce(index: u64, last: bool) -> [u8; 12] {
    // A fresh salt (so a fresh key) per file: a counter nonce never repeats under one key.
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[11] = last as u8;
    n
}

/// Writes a job file: plaintext goes in through [`Write`], sealed chunks go to the file.
pub struct JobFileWriter {
    out: BufWriter<std::fs::File>,
    cipher: Aes256Gcm,
    kind: String,
    job_id: String,
    path: PathBuf,
    buf: Zeroizing<Vec<u8>>,
    index: u64,
    hasher: blake3::Hasher,
    len: u64,
}

impl ClusterSecret {
    /// Starts a new job file at `path` (must not exist; mode 0600) sealed for job `job_id`.
    pub fn create_job_file(&self, kind: &str, job_id: &str, path: &Path) -> Result<JobFileWriter> {
        let io = |source| ClusterError::Io { path: path.display().to_string(), source };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let f = opts.open(path).map_err(io)?;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).expect("operating system random source");
        let key = self.job_key(&salt, job_id);
        let mut w = JobFileWriter {
            out: BufWriter::with_capacity(CHUNK + 64, f),
            cipher: Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key"),
            kind: kind.to_owned(),
            job_id: job_id.to_owned(),
            path: path.to_owned(),
            buf: Zeroizing::new(Vec::with_capacity(CHUNK)),
            index: 0,
            hasher: blake3::Hasher::new(),
            len: 0,
        };
        w.emit(MAGIC).and_then(|_| w.emit(&salt)).map_err(io)?;
        Ok(w)
    }

    /// Opens the job file `r` names: checks its length and digest, then decrypts it chunk by chunk
    /// through the returned reader (any damaged, reordered or missing chunk is an error).
    pub fn open_job_file(&self, r: &JobFileRef) -> Result<JobFileReader> {
        let shown = r.path.display().to_string();
        let io = |source| ClusterError::Io { path: shown.clone(), source };
        let mut f = std::fs::File::open(&r.path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let mut h = blake3::Hasher::new();
        std::io::copy(&mut f, &mut h).map_err(io)?;
        if len != r.len || *h.finalize().as_bytes() != r.digest {
            return Err(ClusterError::Secret(format!(
                "job file {shown} of job {}: its length or digest differs from the plan's (altered or replaced)",
                r.job_id
            )));
        }
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        let mut input = BufReader::with_capacity(CHUNK + 64, f);
        let mut head = [0u8; 24];
        input.read_exact(&mut head).map_err(io)?;
        if &head[..8] != MAGIC {
            return Err(ClusterError::Secret(format!("job file {shown}: not a kiban job file")));
        }
        let salt: [u8; 16] = head[8..].try_into().expect("16 bytes");
        let key = self.job_key(&salt, &r.job_id);
        Ok(JobFileReader {
            input,
            cipher: Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key"),
            kind: r.kind.clone(),
            job_id: r.job_id.clone(),
            path: shown,
            plain: Zeroizing::new(Vec::new()),
            at: 0,
            index: 0,
            done: false,
        })
    }
}

impl JobFileWriter {
    fn emit(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hasher.update(b);
        self.len += b.len() as u64;
        self.out.write_all(b)
    }

    fn seal_chunk(&mut self, last: bool) -> std::io::Result<()> {
        let aad = aad(&self.kind, &self.job_id, self.index, last);
        let ct = self
            .cipher
            .encrypt(&nonce(self.index, last).into(), Payload { msg: &self.buf[..], aad: &aad })
            .expect("AES-GCM encryption");
        self.buf.clear();
        self.index += 1;
        self.emit(&[last as u8])?;
        self.emit(&(ct.len() as u32).to_le_bytes())?;
        self.emit(&ct)
    }

    /// Seals the last chunk, syncs the file and returns what a plan carries about it.
    pub fn finish(mut self) -> Result<JobFileRef> {
        let shown = self.path.display().to_string();
        let io = |source| ClusterError::Io { path: shown.clone(), source };
        self.seal_chunk(true).map_err(io)?;
        self.out.flush().map_err(io)?;
        self.out.get_ref().sync_all().map_err(io)?;
        Ok(JobFileRef {
            kind: self.kind.clone(),
            job_id: self.job_id.clone(),
            path: self.path.clone(),
            len: self.len,
            digest: *self.hasher.finalize().as_bytes(),
        })
    }
}

impl Write for JobFileWriter {
    fn write(&mut self, mut b: &[u8]) -> std::io::Result<usize> {
        let n = b.len();
        while !b.is_empty() {
            let take = (CHUNK - self.buf.len()).min(b.len());
            self.buf.extend_from_slice(&b[..take]);
            b = &b[take..];
            if self.buf.len() == CHUNK {
                self.seal_chunk(false)?;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The plaintext of a job file, chunk by chunk (each chunk authenticated before any byte of it is
/// returned).
pub struct JobFileReader {
    input: BufReader<std::fs::File>,
    cipher: Aes256Gcm,
    kind: String,
    job_id: String,
    path: String,
    plain: Zeroizing<Vec<u8>>,
    at: usize,
    index: u64,
    done: bool,
}

impl JobFileReader {
    fn refused(&self, why: &str) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("job file {} of job {}: chunk {} {why}", self.path, self.job_id, self.index),
        )
    }

    fn next_chunk(&mut self) -> std::io::Result<()> {
        let mut head = [0u8; 5];
        match self.input.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(self.refused("is missing (the file is truncated)"));
            }
            Err(e) => return Err(e),
        }
        let last = match head[0] {
            0 => false,
            1 => true,
            _ => return Err(self.refused("has a bad header")),
        };
        let n = u32::from_le_bytes(head[1..].try_into().expect("4 bytes")) as usize;
        if !(TAG..=CHUNK + TAG).contains(&n) {
            return Err(self.refused("has a bad length"));
        }
        let mut ct = vec![0u8; n];
        self.input.read_exact(&mut ct).map_err(|_| self.refused("is truncated"))?;
        let aad = aad(&self.kind, &self.job_id, self.index, last);
        let plain = self
            .cipher
            .decrypt(&nonce(self.index, last).into(), Payload { msg: &ct, aad: &aad })
            .map_err(|_| self.refused("does not open with this node's cluster secret (damaged or not this job's)"))?;
        self.plain = Zeroizing::new(plain);
        self.at = 0;
        self.index += 1;
        if last {
            let mut extra = [0u8; 1];
            if self.input.read(&mut extra)? != 0 {
                return Err(self.refused("is followed by bytes after the last chunk"));
            }
            self.done = true;
        }
        Ok(())
    }
}

impl Read for JobFileReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = (self.plain.len() - self.at).min(out.len());
        out[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Removes a job file when the client's last handle on it goes (the job has ended by then).
#[derive(Debug)]
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(s: &ClusterSecret, path: &Path, plain: &[u8]) -> JobFileRef {
        let mut w = s.create_job_file("gate_facts", "job-1", path).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap()
    }

    fn read(s: &ClusterSecret, r: &JobFileRef) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        s.open_job_file(r)?.read_to_end(&mut out).map_err(|e| ClusterError::Secret(e.to_string()))?;
        Ok(out)
    }

    #[test]
    fn s4_job_file_round_trips_and_refuses_any_change() {
        let d = tempfile::tempdir().unwrap();
        let s = ClusterSecret::from_bytes([9; 32]);
        let plain: Vec<u8> = (0..(2 * CHUNK + 1234)).map(|i| (i % 251) as u8).collect();
        let p = d.path().join("facts.job");
        let r = write(&s, &p, &plain);
        assert_eq!(read(&s, &r).unwrap(), plain);
        assert_eq!(JobFileRef::from_bytes(&r.to_bytes()).unwrap(), r);
        let bytes = std::fs::read(&p).unwrap();
        assert!(!bytes.windows(64).any(|w| w == &plain[..64]), "the plaintext is not in the file");
        // Another cluster secret or another job id does not open it.
        assert!(read(&ClusterSecret::from_bytes([8; 32]), &r).is_err());
        let mut other = r.clone();
        other.job_id = "job-2".into();
        assert!(read(&s, &other).is_err());
        // A flipped byte is refused by the digest, and (digest updated) by the chunk's tag.
        let mut bad = bytes.clone();
        bad[100] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        assert!(read(&s, &r).unwrap_err().to_string().contains("differs from the plan"));
        let forged = JobFileRef { digest: *blake3::hash(&bad).as_bytes(), ..r.clone() };
        assert!(read(&s, &forged).unwrap_err().to_string().contains("chunk 0"));
        // Truncated after a whole chunk (digest and length updated): the missing last chunk is noticed.
        let cut = &bytes[..24 + 5 + CHUNK + TAG];
        std::fs::write(&p, cut).unwrap();
        let forged = JobFileRef { digest: *blake3::hash(cut).as_bytes(), len: cut.len() as u64, ..r.clone() };
        assert!(read(&s, &forged).unwrap_err().to_string().contains("truncated"));
        // An empty payload is one empty last chunk.
        let e = write(&s, &d.path().join("empty.job"), b"");
        assert!(read(&s, &e).unwrap().is_empty());
    }
}
