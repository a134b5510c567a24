//! The audit log and access monitoring of kiban (X4, X6, R6, I2): this crate owns the hash-chained,
//! append-only log of every operation on medical information, identities, keys, ledgers and releases
//! ([`AuditLog`], fed through the [`AuditSink`] trait other crates take), the signed checkpoints that
//! seal it, its verification ([`verify_files`], [`verify_summary`]), and the monitoring rules
//! ([`Rules`], a TOML file) that turn the entry stream into escalating [`Alert`]s in a queue.
//! Invariants: the log is append-only — nothing in this crate rewrites or removes an entry (a torn
//! last line that was never acknowledged is the only thing ever cut); every entry's time comes from
//! the log's [`Clock`], never from the caller; each entry commits to the previous entry's SHA-256 and
//! every flush signs a checkpoint (HMAC-SHA-256 under a caller-supplied key that is never stored
//! with the log), so verification needs no trust in the files, only the key, and says where each
//! altered, deleted, inserted, reordered or cut-off entry is; reading, exporting or verifying the log
//! is itself recorded; and no key, password or personal data is written into an entry, an alert or
//! an error. Retention is recorded as metadata (at least one year after the end of use); a purge is
//! not implemented.

pub mod clock;
mod error;
pub mod event;
mod format;
mod key;
pub mod log;
pub mod monitor;
mod sink;
pub mod verify;

use std::path::Path;
use std::time::{Duration, Instant};

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::AuditError;
pub use event::{Action, Actor, Entry, Event, Job, JobKind, Object, ObjectKind, Outcome, Role, Seq};
pub use key::CheckpointKey;
pub use log::{AuditConfig, AuditLog, AuditMeta, Checkpoint, for_each_entry};
pub use monitor::{Alert, AlertQueue, Check, EscalateTo, Monitor, Rule, Rules, Severity};
pub use sink::{AuditSink, MemorySink};
pub use verify::{Problem, ProblemKind, VerifyReport, verify_files};

/// Verifies the log in `dir` for `kiban audit verify` and returns the report and its summary text.
///
/// The verification is recorded in the log when it can be opened; when another process holds it
/// (the server) or it refuses to open because it was tampered with, the files are verified read-only
/// and the summary says the check was not recorded.
pub fn verify_summary(
    dir: &Path,
    key: &CheckpointKey,
    by: &Actor,
    source: &str,
) -> Result<(VerifyReport, String), AuditError> {
    match AuditLog::open(dir, key.clone()) {
        Ok(log) => {
            let report = log.verify(by, source)?;
            let text = report.summary();
            Ok((report, text))
        }
        Err(e @ (AuditError::Locked { .. } | AuditError::Tampered(_) | AuditError::BehindCheckpoint { .. })) => {
            let report = verify_files(dir, None, key, None)?;
            let mut text = report.summary();
            text.push_str(&format!("Note: this verification was not recorded in the log ({e}).\n"));
            Ok((report, text))
        }
        Err(e) => Err(e),
    }
}

/// What [`demo`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoCounts {
    /// Synthetic events appended.
    pub appended: u64,
    /// Entries verification read (the appended ones plus the log's own entries).
    pub verified: u64,
    /// Problems verification found (0 unless the directory was tampered with).
    pub problems: usize,
    /// Alerts the monitoring raised.
    pub alerts: usize,
    /// Time spent appending.
    pub append_time: Duration,
    /// Time spent verifying.
    pub verify_time: Duration,
}

/// Appends `n` synthetic events to the log in `dir`, verifies it, and returns the counts (the demo stage).
pub fn demo(dir: &Path, key: &CheckpointKey, n: u64) -> Result<DemoCounts, AuditError> {
    let log = AuditLog::open(dir, key.clone())?;
    let roles = [Role::IntakeOperator, Role::ProcessingEngineer, Role::UserType1, Role::Secretariat];
    let started = Instant::now();
    for i in 0..n {
        let role = roles[(i % roles.len() as u64) as usize];
        let actor = Actor::new(format!("demo-{:02}", i % 16), role);
        let (action, kind) = match i % 5 {
            0 => (Action::Write, ObjectKind::Clinical),
            1 | 2 => (Action::Read, ObjectKind::Clinical),
            3 => (Action::Write, ObjectKind::Ledger),
            _ => (Action::Read, ObjectKind::Release),
        };
        let ev = Event::new(actor, format!("term-{:02}", i % 7), action, Object::new(kind, format!("ds-{}", i % 97)))
            .volume(10 + i % 90);
        log.append(ev)?;
    }
    log.flush()?;
    let append_time = started.elapsed();
    let report = log.verify(&Actor::system(), "kiban demo")?;
    Ok(DemoCounts {
        appended: n,
        verified: report.entries,
        problems: report.problems.len(),
        alerts: log.alerts().len(),
        append_time,
        verify_time: report.elapsed,
    })
}
