//! `kiban audit verify`: checks the audit log's chain and signed checkpoints, then the registry's
//! append-only tables against the last anchor the log recorded (X6).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use kiban_audit::{Action, Actor, AuditLog, Event, Object, ObjectKind, Outcome};
use kiban_registry::Registry;
use kiban_registry::anchor::{Anchor, AnchorCheck, AnchorFinding};

use crate::Ctx;
use crate::datadir::DataDir;

/// `kiban audit …`
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Verify the log and the registry: exits non-zero unless both are intact.
    ///
    /// The log: every entry's hash link and the signed checkpoints. The registry: every row of the
    /// append-only statutory tables against the last anchor whose digest the log keeps, so a row
    /// edited or deleted in the database file behind kiban's back is named. When both are intact a
    /// new anchor covering the rows written since is recorded; run this regularly (e.g. hourly).
    Verify,
}

/// The audit object of registry anchors.
const ANCHOR_OBJECT: &str = "registry-anchor";

/// What checking the registry against its last anchor found.
#[derive(Debug, serde::Serialize)]
pub(crate) struct RegistryCheck {
    /// The comparison (empty when there was no anchor yet).
    pub check: AnchorCheck,
    /// Whether an earlier anchor existed.
    pub had_anchor: bool,
    /// Rows the new anchor covers, when one was recorded.
    pub anchored_now: Option<usize>,
}

impl RegistryCheck {
    /// A line (Japanese first) for the console.
    pub fn summary(&self) -> String {
        let c = &self.check;
        let mut s = if !self.had_anchor {
            "登録簿 registry: no earlier anchor (first anchor)".to_owned()
        } else if c.is_intact() {
            format!(
                "登録簿 registry: {} anchored rows intact, {} purged by retention, {} new since the last anchor",
                c.anchored, c.purged, c.new_rows
            )
        } else {
            let list: Vec<String> =
                c.findings.iter().take(10).map(|f| format!("{} {} {}", f.table, f.key, f.what)).collect();
            format!(
                "登録簿 registry: TAMPERED (X6): {} anchored rows changed or deleted outside kiban: {}{}",
                c.findings.len(),
                list.join(", "),
                if c.findings.len() > 10 { ", …" } else { "" }
            )
        };
        if let Some(n) = self.anchored_now {
            s.push_str(&format!("; new anchor of {n} rows recorded in the audit log"));
        }
        s
    }
}

/// The last anchor the log recorded: `(file name, SHA-256)`.
fn last_anchor_entry(audit_dir: &Path) -> Result<Option<(String, String)>> {
    let mut last = None;
    kiban_audit::for_each_entry(audit_dir, |e| {
        let ev = &e.event;
        if ev.object.kind == ObjectKind::Audit && ev.object.id == ANCHOR_OBJECT && ev.outcome == Outcome::Success {
            let note = ev.note.as_deref().unwrap_or_default();
            let field = |k: &str| note.split(' ').find_map(|w| w.strip_prefix(k)).map(str::to_owned);
            if let (Some(file), Some(sha)) = (field("file="), field("sha256=")) {
                last = Some((file, sha));
            }
        }
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(last)
}

/// Checks the registry against the last anchor in the audit log; when intact and `log` is given,
/// records a new anchor (file under `anchors/`, digest in the log). A tampered registry is recorded
/// as a failed verification, which the `audit-integrity` monitoring rule escalates.
pub(crate) async fn check_registry(
    dd: &DataDir,
    reg: &Registry,
    log: Option<&AuditLog>,
    by: &Actor,
    source: &str,
) -> Result<RegistryCheck> {
    if let Some(log) = log {
        log.flush()?;
    }
    let dir = dd.anchors_dir();
    let current = reg.anchor().await?;
    let (check, had_anchor) = match last_anchor_entry(&dd.audit_dir())? {
        None => (AnchorCheck::default(), false),
        Some((file, sha)) => {
            let bytes = std::fs::read(dir.join(&file)).ok();
            let digest = bytes.as_deref().map(kiban_registry::ledger::sha256_hex);
            match bytes.filter(|_| digest.as_deref() == Some(sha.as_str())) {
                Some(b) => {
                    let last: Anchor = serde_json::from_slice(&b).context("the anchor file does not parse")?;
                    (reg.check_anchor(&last, &current).await?, true)
                }
                None => {
                    let what = if digest.is_none() { "missing" } else { "changed" };
                    let f = AnchorFinding { table: "anchors".into(), key: file, what };
                    (AnchorCheck { findings: vec![f], ..Default::default() }, true)
                }
            }
        }
    };
    let mut out = RegistryCheck { check, had_anchor, anchored_now: None };
    let Some(log) = log else { return Ok(out) };
    if !out.check.is_intact() {
        let ev = Event::new(by.clone(), source, Action::Verify, Object::new(ObjectKind::Audit, "registry"))
            .outcome(Outcome::Failure)
            .volume(out.check.findings.len() as u64)
            .note(out.summary());
        log.append(ev)?;
        log.flush()?;
        return Ok(out);
    }
    std::fs::create_dir_all(&dir)?;
    let sha = current.sha256();
    let name = format!("anchor-{}.json", &sha[..16]);
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, current.to_bytes())?;
    std::fs::rename(&tmp, dir.join(&name))?;
    let note = format!("file={name} sha256={sha} rows={}", current.rows());
    log.append(
        Event::new(by.clone(), source, Action::Write, Object::new(ObjectKind::Audit, ANCHOR_OBJECT)).note(note),
    )?;
    log.flush()?;
    // Keep the new anchor only: the log keeps every earlier digest, and the rows it covered are in it.
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        if p.file_name().and_then(|n| n.to_str()) != Some(name.as_str()) {
            let _ = std::fs::remove_file(p);
        }
    }
    out.anchored_now = Some(current.rows());
    Ok(out)
}

/// Runs `kiban audit`.
pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let Cmd::Verify = a.cmd;
    let dd = DataDir::open(&ctx.data_dir)?;
    let key = crate::auditkey::audit_checkpoint_key(&dd)?;
    let by = Actor::new(
        format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into())),
        kiban_audit::Role::Auditor,
    );
    let (report, text) = kiban_audit::verify_summary(&dd.audit_dir(), &key, &by, "kiban audit verify")?;
    // The registry is anchored only on an intact log it can write to (a running server holds it).
    let log = if report.is_intact() { AuditLog::open(dd.audit_dir(), key).ok() } else { None };
    let registry = crate::block_on(async {
        let reg = dd.registry().await?;
        let r = check_registry(&dd, &reg, log.as_ref(), &by, "kiban audit verify").await;
        reg.close().await;
        r
    })?;
    let intact = report.is_intact() && registry.check.is_intact();
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"intact": intact, "entries": report.entries, "problems": report.problems.len(), "registry": registry})
        );
    } else {
        print!("{text}");
        println!("{}", registry.summary());
    }
    Ok(if intact { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
