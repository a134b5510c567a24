//! Verification of a log directory: needs no trust in the files, only the checkpoint key (X6).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::AuditError;
use crate::format::{self, GENESIS, Hash};
use crate::key::CheckpointKey;
use crate::log::{CHECKPOINTS_FILE, Checkpoint, SEGMENTS_DIR, list_segments};

/// What kind of damage verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// An entry's content was changed (it no longer matches its hash, or the next entry no longer chains to it).
    Altered,
    /// Entries are missing (deleted from the middle or the head).
    Deleted,
    /// An entry that does not belong to the chain was inserted.
    Inserted,
    /// An entry appears twice.
    Duplicated,
    /// An entry is out of its place.
    Reordered,
    /// Entries after the last signed checkpoint's position were cut off.
    Truncated,
    /// A line is not an entry (or an incomplete last line).
    Malformed,
    /// A checkpoint's signature is wrong: forged, edited, or signed by another key.
    CheckpointInvalid,
    /// Checkpoints are missing from the checkpoint file.
    CheckpointGap,
    /// The log differs from what a valid checkpoint signed: the chain was recomputed after a change.
    CheckpointMismatch,
}

impl ProblemKind {
    fn ja(self) -> &'static str {
        match self {
            ProblemKind::Altered => "改変",
            ProblemKind::Deleted => "削除",
            ProblemKind::Inserted => "挿入",
            ProblemKind::Duplicated => "重複",
            ProblemKind::Reordered => "順序入替",
            ProblemKind::Truncated => "末尾切詰め",
            ProblemKind::Malformed => "形式不正",
            ProblemKind::CheckpointInvalid => "チェックポイント署名不正",
            ProblemKind::CheckpointGap => "チェックポイント欠落",
            ProblemKind::CheckpointMismatch => "チェックポイント不一致",
        }
    }
}

/// One finding, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What was found.
    pub kind: ProblemKind,
    /// The sequence number concerned, when known.
    pub seq: Option<u64>,
    /// The file (segment or checkpoint file name).
    pub file: String,
    /// The byte offset in that file.
    pub offset: u64,
    /// A sentence in English.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if let Some(seq) = self.seq {
            write!(f, " seq {seq}")?;
        }
        write!(f, " at {}:{}: {}", self.file, self.offset, self.detail)
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Entry lines read.
    pub entries: u64,
    /// Segment files read.
    pub segments: usize,
    /// Bytes of segment files read.
    pub bytes: u64,
    /// The highest sequence number seen.
    pub last_seq: u64,
    /// Checkpoints whose signature is valid.
    pub checkpoints: u64,
    /// The last valid checkpoint: compare it with a copy kept elsewhere to detect a rollback of both files.
    pub last_checkpoint: Option<Checkpoint>,
    /// Entries after the last checkpoint (a crash between write and checkpoint leaves some; not a problem alone).
    pub unsealed: u64,
    /// What is wrong, in file order; empty when the log is intact.
    pub problems: Vec<Problem>,
    /// How long verification took.
    #[serde(skip)]
    pub elapsed: Duration,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// A human-readable summary: a Japanese first line, then English.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let cp = match &self.last_checkpoint {
            Some(c) => format!("#{} (seq {}, {})", c.n, c.seq, c.at.format("%Y-%m-%dT%H:%M:%SZ")),
            None => "none".into(),
        };
        if self.is_intact() {
            s.push_str(&format!(
                "監査ログ検証: 異常なし — {} 件の記録、{} 件の署名付きチェックポイントを確認しました。\n",
                self.entries, self.checkpoints
            ));
            s.push_str(&format!(
                "Audit log verified: intact. {} entries in {} segments ({} bytes), {} signed checkpoints, last {cp}.\n",
                self.entries, self.segments, self.bytes, self.checkpoints
            ));
        } else {
            s.push_str(&format!(
                "監査ログ検証: 改ざんの疑い — {} 件の問題を検出しました(最初: {} {})。\n",
                self.problems.len(),
                self.problems[0].kind.ja(),
                self.problems[0].seq.map(|q| format!("seq {q}")).unwrap_or_default()
            ));
            s.push_str(&format!(
                "Audit log verification FAILED: {} problems in {} entries, {} segments; {} valid checkpoints, last {cp}.\n",
                self.problems.len(),
                self.entries,
                self.segments,
                self.checkpoints
            ));
            for p in self.problems.iter().take(20) {
                s.push_str(&format!("  - {p}\n"));
            }
            if self.problems.len() > 20 {
                s.push_str(&format!("  … and {} more\n", self.problems.len() - 20));
            }
        }
        if self.unsealed > 0 {
            s.push_str(&format!(
                "Warning: {} entries after the last checkpoint are protected by the hash chain only.\n",
                self.unsealed
            ));
        }
        s.push_str(&format!("Verified in {:.2} s.\n", self.elapsed.as_secs_f64()));
        s
    }
}

struct LineInfo {
    seq: u64,
    offset: u64,
    prev: Hash,
    hash: Hash,
    ok: bool,
    malformed: Option<&'static str>,
}

fn scan(data: &[u8]) -> (Vec<LineInfo>, Option<u64>) {
    let mut out = Vec::with_capacity(data.len() / 300 + 1);
    let mut start = 0usize;
    for nl in memchr::memchr_iter(b'\n', data) {
        let line = &data[start..nl];
        let offset = start as u64;
        start = nl + 1;
        let info = match format::decode_entry(line) {
            Err(r) => LineInfo { seq: 0, offset, prev: GENESIS, hash: GENESIS, ok: false, malformed: Some(r) },
            Ok(raw) => match format::entry_seq(raw.entry) {
                None => LineInfo {
                    seq: 0,
                    offset,
                    prev: raw.prev,
                    hash: raw.hash,
                    ok: false,
                    malformed: Some("entry has no sequence number"),
                },
                Some(seq) => LineInfo {
                    seq,
                    offset,
                    prev: raw.prev,
                    hash: raw.hash,
                    ok: format::chain_hash(&raw.prev, raw.entry) == raw.hash,
                    malformed: None,
                },
            },
        };
        out.push(info);
    }
    let torn = (start < data.len()).then_some(start as u64);
    (out, torn)
}

/// A scanned segment: its lines, the offset of an incomplete last line, its length.
type Scanned = (Vec<LineInfo>, Option<u64>, u64);

const RING: usize = 8192;

#[derive(Clone, Copy)]
struct Slot {
    seq: u64,
    hash: Hash,
    file: u32,
    offset: u64,
}

struct Gap {
    from: u64,
    to: u64,
    file: u32,
    offset: u64,
}

struct Chain<'a> {
    files: &'a [String],
    next: u64,
    ring: Vec<Slot>,
    gaps: Vec<Gap>,
    problems: Vec<(u32, Problem)>,
    altered_reported: u64,
    want: &'a [u64],
    hits: HashMap<u64, Slot>,
}

impl<'a> Chain<'a> {
    fn problem(&mut self, kind: ProblemKind, seq: Option<u64>, file: u32, offset: u64, detail: String) {
        let p = Problem { kind, seq, file: self.files[file as usize].clone(), offset, detail };
        self.problems.push((file, p));
    }

    fn slot(&self, seq: u64) -> Option<Slot> {
        let s = self.ring[(seq as usize) % RING];
        (s.seq == seq && seq != 0).then_some(s)
    }

    fn feed(&mut self, li: &LineInfo, file: u32) {
        if let Some(reason) = li.malformed {
            self.problem(ProblemKind::Malformed, None, file, li.offset, reason.into());
            return;
        }
        let seq = li.seq;
        if !li.ok {
            self.problem(ProblemKind::Altered, Some(seq), file, li.offset, "content does not match its hash".into());
            self.altered_reported = seq;
            if seq != self.next {
                return;
            }
        }
        let mut keep_first = false;
        if seq == self.next {
            if seq == 1 {
                if li.prev != GENESIS && li.ok {
                    self.problem(
                        ProblemKind::Inserted,
                        Some(1),
                        file,
                        li.offset,
                        "the first entry does not start the chain".into(),
                    );
                }
            } else if let Some(p) = self.slot(seq - 1)
                && p.hash != li.prev
                && li.ok
                && self.altered_reported != seq - 1
            {
                self.problem(
                    ProblemKind::Altered,
                    Some(seq - 1),
                    p.file,
                    p.offset,
                    format!("rewritten with a recomputed hash: seq {seq} does not chain to it"),
                );
            }
        } else if seq > self.next {
            let (from, to) = (self.next, seq - 1);
            self.gaps.push(Gap { from, to, file, offset: li.offset });
        } else if let Some(i) = self.gaps.iter().position(|g| g.from <= seq && seq <= g.to) {
            let g = self.gaps.remove(i);
            if g.from < seq {
                self.gaps.push(Gap { from: g.from, to: seq - 1, ..g });
            }
            if seq < g.to {
                self.gaps.push(Gap { from: seq + 1, to: g.to, ..g });
            }
            self.problem(
                ProblemKind::Reordered,
                Some(seq),
                file,
                li.offset,
                format!("out of place: found after seq {}", self.next - 1),
            );
        } else {
            keep_first = true;
            match self.slot(seq) {
                Some(s) if s.hash == li.hash => {
                    let at = format!("{}:{}", self.files[s.file as usize], s.offset);
                    self.problem(
                        ProblemKind::Duplicated,
                        Some(seq),
                        file,
                        li.offset,
                        format!("a copy of the entry at {at}"),
                    )
                }
                Some(s) => {
                    let at = format!("{}:{}", self.files[s.file as usize], s.offset);
                    self.problem(
                        ProblemKind::Inserted,
                        Some(seq),
                        file,
                        li.offset,
                        format!("a second, different entry claims this seq (the other is at {at})"),
                    )
                }
                None => self.problem(
                    ProblemKind::Inserted,
                    Some(seq),
                    file,
                    li.offset,
                    format!("seq {seq} appears again after seq {}", self.next - 1),
                ),
            }
        }
        let slot = Slot { seq, hash: li.hash, file, offset: li.offset };
        if !keep_first {
            self.ring[(seq as usize) % RING] = slot;
        }
        if self.want.binary_search(&seq).is_ok() {
            self.hits.entry(seq).or_insert(slot);
        }
        self.next = self.next.max(seq + 1);
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8)
}

/// Verifies the log in `dir` against the checkpoints in `checkpoint_dir` (default: `dir`).
///
/// Every entry's hash is recomputed from the stored bytes, every link and sequence number is
/// checked, and every checkpoint's HMAC is checked and compared with the entry it signed. `limit`
/// (a segment name and length) stops reading there, for a log that is being appended to.
pub fn verify_files(
    dir: &Path,
    checkpoint_dir: Option<&Path>,
    key: &CheckpointKey,
    limit: Option<(String, u64)>,
) -> Result<VerifyReport, AuditError> {
    let started = Instant::now();
    let seg_dir = dir.join(SEGMENTS_DIR);
    let cp_path = checkpoint_dir.unwrap_or(dir).join(CHECKPOINTS_FILE);
    let mut problems: Vec<(u32, Problem)> = Vec::new();

    let mut files = list_segments(&seg_dir)?;
    if let Some((name, _)) = &limit
        && let Some(i) = files.iter().position(|f| f == name)
    {
        files.truncate(i + 1);
    }
    let cp_file_idx = files.len() as u32;
    files.push(CHECKPOINTS_FILE.to_string());

    // Checkpoints: signature, numbering.
    let mut cps: Vec<(Checkpoint, u64)> = Vec::new();
    if cp_path.exists() {
        let data = fs::read(&cp_path).map_err(AuditError::io(&cp_path))?;
        let mut start = 0usize;
        let mut expect_n = 1u64;
        for nl in memchr::memchr_iter(b'\n', &data) {
            let line = &data[start..nl];
            let offset = start as u64;
            start = nl + 1;
            let parsed = format::decode_checkpoint(line).and_then(|(mac, body)| {
                key.check(&format::checkpoint_message(body), &mac)
                    .then(|| serde_json::from_slice::<Checkpoint>(body).ok())
                    .flatten()
            });
            let Some(cp) = parsed else {
                let p = Problem {
                    kind: ProblemKind::CheckpointInvalid,
                    seq: None,
                    file: CHECKPOINTS_FILE.into(),
                    offset,
                    detail: "signature does not verify with this key".into(),
                };
                problems.push((cp_file_idx, p));
                continue;
            };
            if cp.n != expect_n {
                let p = Problem {
                    kind: ProblemKind::CheckpointGap,
                    seq: Some(cp.seq),
                    file: CHECKPOINTS_FILE.into(),
                    offset,
                    detail: format!("checkpoint #{} follows #{}", cp.n, expect_n - 1),
                };
                problems.push((cp_file_idx, p));
            }
            expect_n = cp.n + 1;
            cps.push((cp, offset));
        }
        if start < data.len() {
            let p = Problem {
                kind: ProblemKind::Malformed,
                seq: None,
                file: CHECKPOINTS_FILE.into(),
                offset: start as u64,
                detail: "incomplete last checkpoint line".into(),
            };
            problems.push((cp_file_idx, p));
        }
    }
    let mut want: Vec<u64> = cps.iter().map(|(c, _)| c.seq).collect();
    want.sort_unstable();

    // Segments: hash every line in parallel, then walk the chain in order.
    let mut chain = Chain {
        files: &files,
        next: 1,
        ring: vec![Slot { seq: 0, hash: GENESIS, file: 0, offset: 0 }; RING],
        gaps: Vec::new(),
        problems: Vec::new(),
        altered_reported: 0,
        want: &want,
        hits: HashMap::new(),
    };
    let seg_count = files.len() - 1;
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut end = (0u32, 0u64);
    let batch = threads();
    for first in (0..seg_count).step_by(batch) {
        let idx: Vec<usize> = (first..(first + batch).min(seg_count)).collect();
        let scanned: Vec<Result<Scanned, AuditError>> = std::thread::scope(|s| {
            let handles: Vec<_> = idx
                .iter()
                .map(|&i| {
                    let path = seg_dir.join(&files[i]);
                    let cut = limit.as_ref().filter(|(n, _)| *n == files[i]).map(|(_, l)| *l);
                    s.spawn(move || {
                        let mut data = fs::read(&path).map_err(AuditError::io(&path))?;
                        if let Some(l) = cut {
                            data.truncate(l as usize);
                        }
                        let (lines, torn) = scan(&data);
                        Ok((lines, torn, data.len() as u64))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("scan thread does not panic")).collect()
        });
        for (&i, r) in idx.iter().zip(scanned) {
            let (lines, torn, len) = r?;
            bytes += len;
            entries += lines.len() as u64;
            for li in &lines {
                chain.feed(li, i as u32);
            }
            if let Some(off) = torn {
                chain.problem(ProblemKind::Malformed, None, i as u32, off, "incomplete last line".into());
            }
            end = (i as u32, len);
        }
    }
    for g in std::mem::take(&mut chain.gaps) {
        let what = if g.from == g.to { format!("seq {} is", g.from) } else { format!("seq {}..={} are", g.from, g.to) };
        chain.problem(
            ProblemKind::Deleted,
            Some(g.from),
            g.file,
            g.offset,
            format!("{what} missing before this entry"),
        );
    }
    let last_seq = chain.next - 1;

    // Checkpoints against the chain.
    let mut truncated_reported = false;
    let mut prev_cp_seq = 0u64;
    for (cp, cp_offset) in &cps {
        match chain.hits.get(&cp.seq).copied() {
            None if cp.seq > last_seq && !truncated_reported => {
                truncated_reported = true;
                let p = Problem {
                    kind: ProblemKind::Truncated,
                    seq: Some(last_seq + 1),
                    file: files[end.0 as usize].clone(),
                    offset: end.1,
                    detail: format!(
                        "the log ends at seq {last_seq}, but checkpoint #{} signed seq {} (in {} up to offset {}): \
                             the tail was cut off",
                        cp.n, cp.seq, cp.segment, cp.end_offset
                    ),
                };
                chain.problems.push((end.0, p));
            }
            Some(slot) if hex::encode(slot.hash) != cp.hash => {
                let p = Problem {
                    kind: ProblemKind::CheckpointMismatch,
                    seq: Some(cp.seq),
                    file: files[slot.file as usize].clone(),
                    offset: slot.offset,
                    detail: format!(
                        "differs from signed checkpoint #{} (checkpoint file offset {cp_offset}): entries after seq \
                             {prev_cp_seq} up to {} were rewritten",
                        cp.n, cp.seq
                    ),
                };
                chain.problems.push((slot.file, p));
            }
            _ => {}
        }
        prev_cp_seq = cp.seq;
    }
    if cps.is_empty() && entries > 0 {
        let p = Problem {
            kind: ProblemKind::CheckpointGap,
            seq: None,
            file: CHECKPOINTS_FILE.into(),
            offset: 0,
            detail: format!("the log has {entries} entries but no valid checkpoint"),
        };
        problems.push((cp_file_idx, p));
    }
    let last_checkpoint = cps.last().map(|(c, _)| c.clone());
    let unsealed = last_seq.saturating_sub(last_checkpoint.as_ref().map_or(0, |c| c.seq));
    problems.append(&mut chain.problems);
    problems.sort_by_key(|(file, p)| (*file, p.offset));
    Ok(VerifyReport {
        entries,
        segments: seg_count,
        bytes,
        last_seq,
        checkpoints: cps.len() as u64,
        last_checkpoint,
        unsealed,
        problems: problems.into_iter().map(|(_, p)| p).collect(),
        elapsed: started.elapsed(),
    })
}
