//! The append-only, hash-chained audit log in a directory (X4, X6).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use kiban_model::retention::RetentionRule;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::event::{Action, Actor, Entry, Event, Object, ObjectKind, Seq};
use crate::format::{self, GENESIS, Hash};
use crate::key::CheckpointKey;
use crate::monitor::{Alert, AlertQueue, Monitor, Rules};
use crate::verify::{self, VerifyReport};
use crate::{AuditError, AuditSink};

/// The subdirectory holding the segment files.
pub const SEGMENTS_DIR: &str = "segments";
/// The file of signed checkpoints (in the checkpoint directory).
pub const CHECKPOINTS_FILE: &str = "checkpoints.jsonl";
/// The file of monitoring alerts.
pub const ALERTS_FILE: &str = "alerts.jsonl";
/// The file of the log's metadata, including retention.
pub const META_FILE: &str = "audit.json";
const LOCK_FILE: &str = ".lock";
const FORMAT: &str = "kiban-audit/1";

/// How a log is opened: where checkpoints go, batching, the clock and the monitoring rules.
#[derive(Clone)]
pub struct AuditConfig {
    /// Where checkpoints are stored; keep it on other media than the log. Default: the log directory.
    pub checkpoint_dir: Option<PathBuf>,
    /// A segment file is closed and a new one started when it would grow past this many bytes.
    pub segment_bytes: u64,
    /// Appends are made durable (written, fsynced, checkpointed) after this many entries …
    pub batch_entries: usize,
    /// … or when an append finds the oldest unflushed entry older than this.
    pub batch_interval: Duration,
    /// Whether a flush calls fsync (turn off only in tests that measure something else).
    pub fsync: bool,
    /// The trusted clock.
    pub clock: Arc<dyn Clock>,
    /// The monitoring rules run on every appended entry; `None` turns monitoring off.
    pub rules: Option<Rules>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_dir: None,
            segment_bytes: 64 << 20,
            batch_entries: 4096,
            batch_interval: Duration::from_millis(50),
            fsync: true,
            clock: Arc::new(SystemClock),
            rules: Some(Rules::builtin()),
        }
    }
}

/// A signed statement that the log had `seq` entries ending in `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Its number, from 1, without gaps.
    pub n: u64,
    /// The last sequence number it covers.
    pub seq: u64,
    /// The chain hash of that entry (hex).
    pub hash: String,
    /// When it was written, from the log's clock.
    pub at: DateTime<Utc>,
    /// The segment file that held the entry.
    pub segment: String,
    /// The byte length of that segment after the entry.
    pub end_offset: u64,
}

/// The log's metadata file: its format and retention (X6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditMeta {
    /// The format name.
    pub format: String,
    /// When the log was created.
    pub created_at: DateTime<Utc>,
    /// The retention rule: at least 1 year after the end of use.
    pub retention: RetentionRule,
    /// The end of use, once known; entries are kept until at least a year after it.
    pub end_of_use: Option<NaiveDate>,
}

impl AuditMeta {
    /// The first day a purge may remove entries, once the end of use is known.
    ///
    /// A purge is not implemented: when it is, it must only remove whole segments whose entries all
    /// lie before the end of use, after this date, and it must append a signed "purged up to seq N"
    /// record that verification then accepts as the new start of the chain.
    pub fn keep_until(&self) -> Option<NaiveDate> {
        self.end_of_use.map(|d| self.retention.end_date(d))
    }
}

struct Writer {
    seg_dir: PathBuf,
    cp_path: PathBuf,
    seg_file: File,
    seg_name: String,
    seg_len: u64,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    last_seq: u64,
    last_hash: Hash,
    pending: usize,
    oldest_pending: Option<Instant>,
    cp_file: File,
    cp_n: u64,
    cp_seq: u64,
    monitor: Option<Monitor>,
    alerts: AlertQueue,
}

/// The audit log: open one per directory; appends from many threads are serialized.
pub struct AuditLog {
    dir: PathBuf,
    cp_dir: PathBuf,
    key: CheckpointKey,
    cfg: AuditConfig,
    w: Mutex<Writer>,
    _lock: File,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError {
    AuditError::io(path)
}

/// The segment files of a directory, sorted by first sequence number.
pub(crate) fn list_segments(seg_dir: &Path) -> Result<Vec<String>, AuditError> {
    let mut names = Vec::new();
    for e in fs::read_dir(seg_dir).map_err(io(seg_dir))? {
        let e = e.map_err(io(seg_dir))?;
        if let Some(name) = e.file_name().to_str()
            && format::is_segment_name(name)
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// A line of a file: its offset and bytes (without the newline).
type Line = (u64, Vec<u8>);

/// The last complete line of a file and the length up to its newline.
fn last_line(path: &Path) -> Result<(Option<Line>, u64), AuditError> {
    let mut f = File::open(path).map_err(io(path))?;
    let len = f.metadata().map_err(io(path))?.len();
    let mut chunk = 4096u64;
    loop {
        let start = len.saturating_sub(chunk);
        let mut buf = vec![0u8; (len - start) as usize];
        f.seek(SeekFrom::Start(start)).map_err(io(path))?;
        f.read_exact(&mut buf).map_err(io(path))?;
        let Some(end) = memchr::memrchr(b'\n', &buf) else {
            if start == 0 {
                return Ok((None, 0));
            }
            chunk *= 4;
            continue;
        };
        match memchr::memrchr(b'\n', &buf[..end]) {
            Some(p) => {
                return Ok((Some((start + p as u64 + 1, buf[p + 1..end].to_vec())), start + end as u64 + 1));
            }
            None if start == 0 => return Ok((Some((0, buf[..end].to_vec())), end as u64 + 1)),
            None => chunk *= 4,
        }
    }
}

/// Reads and checks the last checkpoint of a checkpoints file.
pub(crate) fn read_last_checkpoint(cp_path: &Path, key: &CheckpointKey) -> Result<Option<Checkpoint>, AuditError> {
    if !cp_path.exists() {
        return Ok(None);
    }
    let (last, _) = last_line(cp_path)?;
    let Some((offset, line)) = last else { return Ok(None) };
    let bad = |reason: &str| AuditError::Format { path: cp_path.to_path_buf(), offset, reason: reason.into() };
    let (mac, cp) = format::decode_checkpoint(&line).ok_or_else(|| bad("not a checkpoint line"))?;
    if !key.check(&format::checkpoint_message(cp), &mac) {
        return Err(AuditError::Tampered(format!(
            "the last checkpoint (offset {offset}) does not carry this key's signature: wrong key or a forged checkpoint"
        )));
    }
    serde_json::from_slice(cp).map(Some).map_err(|e| bad(&format!("checkpoint JSON: {e}")))
}

impl AuditLog {
    /// Opens (creating if needed) the log in `dir` with the default configuration.
    pub fn open(dir: impl AsRef<Path>, checkpoint_key: CheckpointKey) -> Result<Self, AuditError> {
        Self::open_with(dir, checkpoint_key, AuditConfig::default())
    }

    /// Opens (creating if needed) the log in `dir`.
    ///
    /// Refuses a log whose tail is behind its last signed checkpoint, or whose last checkpoint this key
    /// did not sign. A torn last line left by a crash (never acknowledged as durable) is cut off, and
    /// entries found after the last checkpoint are noted in a new entry.
    pub fn open_with(dir: impl AsRef<Path>, key: CheckpointKey, cfg: AuditConfig) -> Result<Self, AuditError> {
        let dir = dir.as_ref().to_path_buf();
        let seg_dir = dir.join(SEGMENTS_DIR);
        fs::create_dir_all(&seg_dir).map_err(io(&seg_dir))?;
        let cp_dir = cfg.checkpoint_dir.clone().unwrap_or_else(|| dir.clone());
        fs::create_dir_all(&cp_dir).map_err(io(&cp_dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(AuditError::Locked { path: dir }),
            Err(std::fs::TryLockError::Error(e)) => return Err(AuditError::Io { path: lock_path, source: e }),
        }
        let meta_path = dir.join(META_FILE);
        if !meta_path.exists() {
            let meta = AuditMeta {
                format: FORMAT.into(),
                created_at: cfg.clock.now(),
                retention: RetentionRule::OneYearAfterEndOfUse,
                end_of_use: None,
            };
            write_meta(&meta_path, &meta)?;
        }

        let mut notes = Vec::new();
        let mut segments = list_segments(&seg_dir)?;
        if segments.is_empty() {
            let name = format::segment_name(1);
            File::create(seg_dir.join(&name)).map_err(io(&seg_dir))?;
            sync_dir(&seg_dir);
            segments.push(name);
        }
        // Find the last entry: the last line of the last non-empty segment.
        let seg_name = segments.last().cloned().expect("at least one segment");
        let seg_path = seg_dir.join(&seg_name);
        let (mut last_seq, mut last_hash) = (0u64, GENESIS);
        let mut found = false;
        for name in segments.iter().rev() {
            let path = seg_dir.join(name);
            let (last, valid_len) = last_line(&path)?;
            let len = fs::metadata(&path).map_err(io(&path))?.len();
            if name == &seg_name && valid_len < len {
                let f = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
                f.set_len(valid_len).map_err(io(&path))?;
                f.sync_all().map_err(io(&path))?;
                notes
                    .push(format!("cut a torn last line of {} bytes at offset {valid_len} of {name}", len - valid_len));
            }
            if let Some((offset, line)) = last {
                let bad = |reason: &str| AuditError::Format { path: path.clone(), offset, reason: reason.into() };
                let raw = format::decode_entry(&line).map_err(bad)?;
                if format::chain_hash(&raw.prev, raw.entry) != raw.hash {
                    return Err(AuditError::Tampered(format!(
                        "the last entry of {name} (offset {offset}) does not match its hash"
                    )));
                }
                last_seq = format::entry_seq(raw.entry).ok_or_else(|| bad("entry has no sequence number"))?;
                last_hash = raw.hash;
                found = true;
                break;
            }
        }
        if !found {
            let first: u64 = seg_name[4..24].parse().expect("segment names are checked");
            if first != 1 {
                return Err(AuditError::Tampered(format!("all segments are empty but the last starts at seq {first}")));
            }
        }

        let cp_path = cp_dir.join(CHECKPOINTS_FILE);
        let last_cp = read_last_checkpoint(&cp_path, &key)?;
        let (cp_n, cp_seq) = match &last_cp {
            None => (0, 0),
            Some(cp) => {
                if cp.seq > last_seq {
                    return Err(AuditError::BehindCheckpoint {
                        checkpoint: cp.n,
                        checkpoint_seq: cp.seq,
                        log_seq: last_seq,
                    });
                }
                if cp.seq == last_seq && cp.hash != hex::encode(last_hash) {
                    return Err(AuditError::Tampered(format!(
                        "entry seq {} differs from signed checkpoint #{}",
                        cp.seq, cp.n
                    )));
                }
                (cp.n, cp.seq)
            }
        };
        if last_seq > cp_seq {
            notes.push(format!(
                "found {} entries (seq {}..={last_seq}) after the last checkpoint #{cp_n}; they are sealed from now on",
                last_seq - cp_seq,
                cp_seq + 1
            ));
        }
        let cp_file = OpenOptions::new().create(true).append(true).open(&cp_path).map_err(io(&cp_path))?;
        let seg_file = OpenOptions::new().append(true).open(&seg_path).map_err(io(&seg_path))?;
        let seg_len = seg_file.metadata().map_err(io(&seg_path))?.len();
        let alerts = AlertQueue::open(dir.join(ALERTS_FILE))?;
        let monitor = cfg.rules.clone().map(Monitor::new);
        let writer = Writer {
            seg_dir,
            cp_path,
            seg_file,
            seg_name,
            seg_len,
            buf: Vec::with_capacity(1 << 20),
            scratch: Vec::with_capacity(512),
            last_seq,
            last_hash,
            pending: 0,
            oldest_pending: None,
            cp_file,
            cp_n,
            cp_seq,
            monitor,
            alerts,
        };
        let log = AuditLog { dir, cp_dir, key, cfg, w: Mutex::new(writer), _lock: lock };
        for note in notes {
            log.append(
                Event::new(Actor::system(), "kiban-audit", Action::Write, Object::new(ObjectKind::Audit, "log"))
                    .note(note),
            )?;
        }
        Ok(log)
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.w.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends an event, stamped with the trusted clock, and returns its sequence number.
    ///
    /// The entry is durable once the batch it belongs to is flushed: after `batch_entries` entries,
    /// when `batch_interval` has passed, or on [`AuditLog::flush`].
    pub fn append(&self, event: Event) -> Result<Seq, AuditError> {
        let mut w = self.lock();
        let seq = w.last_seq + 1;
        let entry = Entry { seq: Seq(seq), at: self.cfg.clock.now(), event };
        let w = &mut *w;
        w.scratch.clear();
        serde_json::to_writer(&mut w.scratch, &entry).expect("an entry always serializes");
        let line_len = 160 + w.scratch.len() as u64;
        if w.seg_len > 0 && w.seg_len + w.buf.len() as u64 + line_len > self.cfg.segment_bytes {
            self.rotate(w, seq)?;
        }
        let hash = format::chain_hash(&w.last_hash, &w.scratch);
        format::encode_entry(&mut w.buf, &hash, &w.last_hash, &w.scratch);
        w.last_seq = seq;
        w.last_hash = hash;
        w.pending += 1;
        let oldest = *w.oldest_pending.get_or_insert_with(Instant::now);
        if let Some(monitor) = w.monitor.as_mut() {
            for alert in monitor.observe(&entry) {
                w.alerts.push(alert);
            }
        }
        if w.pending >= self.cfg.batch_entries || oldest.elapsed() >= self.cfg.batch_interval {
            self.flush_locked(w)?;
        }
        Ok(Seq(seq))
    }

    /// Makes every appended entry durable and signs a checkpoint over the chain so far.
    pub fn flush(&self) -> Result<(), AuditError> {
        let mut w = self.lock();
        self.flush_locked(&mut w)
    }

    fn flush_locked(&self, w: &mut Writer) -> Result<(), AuditError> {
        let seg_path = w.seg_dir.join(&w.seg_name);
        if !w.buf.is_empty() {
            w.seg_file.write_all(&w.buf).map_err(io(&seg_path))?;
            w.seg_len += w.buf.len() as u64;
            w.buf.clear();
            if self.cfg.fsync {
                w.seg_file.sync_data().map_err(io(&seg_path))?;
            }
        }
        if w.last_seq > w.cp_seq {
            let cp = Checkpoint {
                n: w.cp_n + 1,
                seq: w.last_seq,
                hash: hex::encode(w.last_hash),
                at: self.cfg.clock.now(),
                segment: w.seg_name.clone(),
                end_offset: w.seg_len,
            };
            let body = serde_json::to_vec(&cp).expect("a checkpoint always serializes");
            let mac = self.key.mac(&format::checkpoint_message(&body));
            let mut line = Vec::with_capacity(body.len() + 90);
            format::encode_checkpoint(&mut line, &mac, &body);
            w.cp_file.write_all(&line).map_err(io(&w.cp_path))?;
            if self.cfg.fsync {
                w.cp_file.sync_data().map_err(io(&w.cp_path))?;
            }
            w.cp_n = cp.n;
            w.cp_seq = cp.seq;
        }
        w.alerts.flush(self.cfg.fsync)?;
        w.pending = 0;
        w.oldest_pending = None;
        Ok(())
    }

    fn rotate(&self, w: &mut Writer, next_seq: u64) -> Result<(), AuditError> {
        self.flush_locked(w)?;
        let name = format::segment_name(next_seq);
        let path = w.seg_dir.join(&name);
        w.seg_file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io(&path))?;
        if self.cfg.fsync {
            sync_dir(&w.seg_dir);
        }
        w.seg_name = name;
        w.seg_len = 0;
        Ok(())
    }

    /// The sequence number of the last appended entry (0 when empty).
    pub fn last_seq(&self) -> Seq {
        Seq(self.lock().last_seq)
    }

    /// Alerts raised by monitoring so far, oldest first (a copy of the queue).
    pub fn alerts(&self) -> Vec<Alert> {
        self.lock().alerts.alerts().to_vec()
    }

    /// Verifies the whole log and its checkpoints, recording the verification as an entry first.
    ///
    /// Appends continue meanwhile; the report covers the log as flushed at the start.
    pub fn verify(&self, by: &Actor, source: &str) -> Result<VerifyReport, AuditError> {
        self.append(Event::new(by.clone(), source, Action::Verify, Object::new(ObjectKind::Audit, "log")))?;
        let limit = {
            let mut w = self.lock();
            self.flush_locked(&mut w)?;
            (w.seg_name.clone(), w.seg_len)
        };
        let report = verify::verify_files(&self.dir, Some(&self.cp_dir), &self.key, Some(limit))?;
        if !report.is_intact() {
            self.append(
                Event::new(by.clone(), source, Action::Verify, Object::new(ObjectKind::Audit, "log"))
                    .outcome(crate::event::Outcome::Failure)
                    .volume(report.problems.len() as u64)
                    .note(format!("verification found {} problems", report.problems.len())),
            )?;
            self.flush()?;
        }
        Ok(report)
    }

    /// Reads the entries with `from <= seq <= to`, recording the read as an entry first.
    pub fn read(&self, by: &Actor, source: &str, from: Seq, to: Seq) -> Result<Vec<Entry>, AuditError> {
        let span = to.0.saturating_sub(from.0).saturating_add(1);
        self.append(
            Event::new(
                by.clone(),
                source,
                Action::Read,
                Object::new(ObjectKind::Audit, format!("seq {}..={}", from.0, to.0)),
            )
            .volume(span),
        )?;
        self.flush()?;
        let mut out = Vec::new();
        for_each_entry(&self.dir, |e| {
            if e.seq > to {
                return std::ops::ControlFlow::Break(());
            }
            if e.seq >= from {
                out.push(e);
            }
            std::ops::ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// Copies the log's entry lines to `out` as JSON lines, recording the export as an entry first.
    pub fn export(&self, by: &Actor, source: &str, out: &mut dyn Write) -> Result<u64, AuditError> {
        let last = self.last_seq().0;
        self.append(
            Event::new(by.clone(), source, Action::Export, Object::new(ObjectKind::Audit, "log")).volume(last),
        )?;
        let limit = {
            let mut w = self.lock();
            self.flush_locked(&mut w)?;
            (w.seg_name.clone(), w.seg_len)
        };
        let seg_dir = self.dir.join(SEGMENTS_DIR);
        let mut lines = 0u64;
        for name in list_segments(&seg_dir)? {
            let path = seg_dir.join(&name);
            let mut data = fs::read(&path).map_err(io(&path))?;
            if name == limit.0 {
                data.truncate(limit.1 as usize);
            }
            out.write_all(&data).map_err(io(&path))?;
            lines += memchr::memchr_iter(b'\n', &data).count() as u64;
            if name == limit.0 {
                break;
            }
        }
        Ok(lines)
    }

    /// The log's metadata: format and retention.
    pub fn meta(&self) -> Result<AuditMeta, AuditError> {
        read_meta(&self.dir.join(META_FILE))
    }

    /// Records the end of use; entries are then kept until at least a year after it (X6).
    pub fn set_end_of_use(&self, by: &Actor, source: &str, end_of_use: NaiveDate) -> Result<AuditMeta, AuditError> {
        let path = self.dir.join(META_FILE);
        let mut meta = read_meta(&path)?;
        meta.end_of_use = Some(end_of_use);
        self.append(
            Event::new(by.clone(), source, Action::Configure, Object::new(ObjectKind::Audit, "retention"))
                .note(format!("end of use {end_of_use}")),
        )?;
        write_meta(&path, &meta)?;
        Ok(meta)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl AuditSink for AuditLog {
    fn record(&self, event: Event) -> Result<Seq, AuditError> {
        self.append(event)
    }
}

fn read_meta(path: &Path) -> Result<AuditMeta, AuditError> {
    let text = fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&text).map_err(|e| AuditError::Format {
        path: path.to_path_buf(),
        offset: 0,
        reason: format!("metadata: {e}"),
    })
}

fn write_meta(path: &Path, meta: &AuditMeta) -> Result<(), AuditError> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(meta).expect("metadata always serializes");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&body).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Calls `f` on every entry of the log in `dir` in file order, parsing each line; stops on `Break`.
///
/// This trusts the files: run [`verify::verify_files`] to know whether to.
pub fn for_each_entry(dir: &Path, mut f: impl FnMut(Entry) -> std::ops::ControlFlow<()>) -> Result<(), AuditError> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    for name in list_segments(&seg_dir)? {
        let path = seg_dir.join(&name);
        let data = fs::read(&path).map_err(io(&path))?;
        let mut offset = 0usize;
        for line in data.split_inclusive(|&b| b == b'\n') {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            let bad = |reason: String| AuditError::Format { path: path.clone(), offset: offset as u64, reason };
            let raw = format::decode_entry(body).map_err(|r| bad(r.into()))?;
            let entry: Entry = serde_json::from_slice(raw.entry).map_err(|e| bad(format!("entry JSON: {e}")))?;
            if f(entry).is_break() {
                return Ok(());
            }
            offset += line.len();
        }
    }
    Ok(())
}
