//! `kiban keys`: the key store's state, master-key rotation and new data-encryption keys (R12).

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use kiban_audit::{Action, Actor, AuditLog, Event, Object, ObjectKind, Role};

use crate::Ctx;
use crate::datadir::DataDir;

/// `kiban keys …`
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Show the key-encryption keys and pseudonym domains (ids and versions only, never keys).
    Status,
    /// Replace the master key. No data file is rewritten: the key check, the keyring and the
    /// pseudonym keys are sealed anew under the new key, crash-safely. Stop `kiban serve` and
    /// other kiban processes first. With a key file the new key replaces it; with
    /// KIBAN_MASTER_KEY the new key is written to --new-key-out and must be set before the next run.
    RotateMaster {
        /// Write the new key here (mode 0600); required when the key comes from KIBAN_MASTER_KEY.
        #[arg(long, value_name = "FILE")]
        new_key_out: Option<PathBuf>,
    },
    /// Start a new key-encryption key: data sealed from now on uses it; earlier data keeps
    /// opening with the key that sealed it.
    RotateDataKey,
}

/// Runs `kiban keys`.
pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    match a.cmd {
        Cmd::Status => {
            let ks = dd.key_store()?;
            let keks = ks.keks();
            let domains = ks.domains();
            if ctx.json {
                let keks: Vec<_> = keks
                    .iter()
                    .map(|(id, active, retired)| serde_json::json!({"id": id, "active": active, "retired_master": retired}))
                    .collect();
                let domains: Vec<_> = domains
                    .iter()
                    .map(|(d, v, active)| serde_json::json!({"domain": d, "version": v, "active": active}))
                    .collect();
                println!("{}", serde_json::json!({"keks": keks, "domains": domains}));
            } else {
                println!("鍵暗号化鍵 key-encryption keys:");
                for (id, active, retired) in keks {
                    let what = match (active, retired) {
                        (true, _) => "active (new data)",
                        (false, true) => "retired master key (opens data sealed before the keyring)",
                        (false, false) => "kept for reading",
                    };
                    println!("  KEK {id:>3}  {what}");
                }
                println!("仮名化鍵 pseudonym domains:");
                for (d, v, active) in domains {
                    println!("  {d:<32} v{v}{}", if active { "  active" } else { "" });
                }
            }
        }
        Cmd::RotateMaster { new_key_out } => {
            let from_env = std::env::var("KIBAN_MASTER_KEY").is_ok();
            if from_env && new_key_out.is_none() {
                bail!("the master key comes from KIBAN_MASTER_KEY: give --new-key-out FILE so the new key is not lost");
            }
            let busy = ctx.data_dir.join("identity").join("vault.lock");
            if let Ok(f) = fs::OpenOptions::new().write(true).open(&busy)
                && f.try_lock().is_err()
            {
                bail!("another kiban process (e.g. `kiban serve`) holds the identity vault; stop it before rotating");
            }
            let mut ks = dd.key_store()?;
            // Write the new key out before the store switches to it, so it can never be lost.
            let new_hex = kiban_identity::keystore::random_master_key_hex();
            if let Some(path) = &new_key_out {
                write_secret(path, new_hex.as_bytes())?;
            }
            let (_new, report) = ks.rotate_master(Some(&new_hex)).context("master-key rotation")?;
            audit(&dd, "kiban keys rotate-master", format!("keks:{}:domains:{}", report.keks, report.domain_keys))?;
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({"rotated": true, "keks": report.keks, "domain_keys": report.domain_keys,
                        "kept_retired_master": report.kept_retired_master,
                        "new_key_out": new_key_out.as_ref().map(|p| p.display().to_string())})
                );
            } else {
                println!(
                    "マスター鍵を更新しました master key rotated: {} KEK(s) and {} pseudonym key(s) sealed anew; no data file rewritten",
                    report.keks, report.domain_keys
                );
                if report.kept_retired_master {
                    println!("  the old key is kept sealed under the new one to open data written before the keyring");
                }
                match (&new_key_out, from_env) {
                    (Some(p), true) => {
                        println!("  set KIBAN_MASTER_KEY to the key in {} before the next run", p.display())
                    }
                    (Some(p), false) => println!("  the key file is replaced; a copy is in {}", p.display()),
                    (None, _) => println!("  the key file {} is replaced", dd.keys().join("master.key").display()),
                }
            }
        }
        Cmd::RotateDataKey => {
            let mut ks = dd.key_store()?;
            let id = ks.rotate_data_key().context("new key-encryption key")?;
            audit(&dd, "kiban keys rotate-data-key", format!("kek:{id}"))?;
            if ctx.json {
                println!("{}", serde_json::json!({"active_kek": id}));
            } else {
                println!("データ鍵暗号化鍵を追加しました new key-encryption key {id} is active for new data");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_secret(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(bytes).and_then(|_| f.write_all(b"\n")).and_then(|_| f.sync_all())?;
    Ok(())
}

/// Key operations are audited (X4): what happened and counts, never key material.
fn audit(dd: &DataDir, purpose: &str, what: String) -> Result<()> {
    let key = crate::auditkey::audit_checkpoint_key(dd)?;
    let log = AuditLog::open(dd.audit_dir(), key).context("audit log")?;
    let by = Actor::new(
        format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into())),
        Role::SecurityOfficer,
    );
    log.append(Event::new(by, purpose, Action::Write, Object::new(ObjectKind::Key, what)))?;
    log.flush()?;
    Ok(())
}
