//! `kiban account`: accounts with Argon2id passwords and TOTP (X5); vetting is in the registry (X2).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Subcommand;
use kiban_registry::accounts::AccountRole;
use kiban_server::auth;

use crate::Ctx;
use crate::datadir::DataDir;

/// `kiban account …`
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create an account and print its one-time setup token (the person sets their own password).
    Add {
        /// Login name (a-z 0-9 . _ -).
        login: String,
        /// Role: provider_clerk, intake_operator, processing_engineer, committee_member, secretariat,
        /// security_officer, auditor, handler, administrator.
        #[arg(long)]
        role: String,
        /// The person's name.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List accounts (never a credential).
    List,
    /// Reset an account: clears password and TOTP and prints a new one-time setup token.
    Reset {
        /// Login name.
        login: String,
        /// How the person's identity was verified (recorded; required).
        #[arg(long)]
        verified_by: String,
    },
    /// Lock an account.
    Lock {
        /// Login name.
        login: String,
        /// Reason.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Unlock an account.
    Unlock {
        /// Login name.
        login: String,
        /// Reason.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Let a provider clerk act for a provider (notices, opt-outs, batches of that provider only),
    /// or stop it with --revoke. A clerk with no provider can do nothing provider-specific.
    Scope {
        /// Login name of a provider_clerk account.
        login: String,
        /// The provider id.
        #[arg(long)]
        provider: String,
        /// Take the provider away instead of granting it.
        #[arg(long)]
        revoke: bool,
    },
    /// Complete setup with the token: reads the new password from KIBAN_NEW_PASSWORD or stdin,
    /// prints the TOTP secret and recovery codes once.
    TotpSetup {
        /// Login name.
        login: String,
        /// The one-time setup token.
        #[arg(long)]
        token: String,
    },
}

/// The key store as the server's sealer.
pub struct KeyStoreSealer(pub kiban_identity::keystore::KeyStore);

impl kiban_server::Sealer for KeyStoreSealer {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.0.seal(aad, plaintext)
    }
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        self.0.open_sealed(aad, sealed).ok()
    }
}

/// The sealer of a data directory.
pub fn sealer(dd: &DataDir) -> Result<Arc<dyn kiban_server::Sealer>> {
    Ok(Arc::new(KeyStoreSealer(dd.key_store()?)))
}

/// Runs `kiban account`.
pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let by = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into()));
    crate::block_on(async {
        let reg = dd.registry().await?;
        let now = chrono::Utc::now();
        let find = |login: String| {
            let reg = reg.clone();
            async move { reg.account_by_login(&login).await?.with_context(|| format!("no account {login:?}")) }
        };
        match a.cmd {
            Cmd::Add { login, role, name } => {
                let role = AccountRole::parse(&role).with_context(|| format!("unknown role {role:?}"))?;
                let acct = reg.create_account(&login, &name, role, &by, now).await?;
                match auth::issue_setup(&reg, &acct.account_id, false, "", &by, now).await {
                    Ok(t) => println!(
                        "created {login} ({role}); one-time setup token (give it to the person only):\n{}",
                        t.as_str()
                    ),
                    Err(e) => println!("created {login} ({role}); no setup token yet: {e}"),
                }
            }
            Cmd::List => {
                let v = reg.accounts().await?;
                if ctx.json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    for x in v {
                        println!("{:<24} {:<20} {:?} totp={}", x.login, x.role.as_str(), x.status, x.totp_enrolled);
                    }
                }
            }
            Cmd::Reset { login, verified_by } => {
                let acct = find(login.clone()).await?;
                let t = auth::issue_setup(&reg, &acct.account_id, true, &verified_by, &by, now).await?;
                reg.end_sessions_of(&acct.account_id, "reset", now).await?;
                println!("reset {login}; one-time setup token:\n{}", t.as_str());
            }
            Cmd::Lock { login, reason } => {
                let acct = find(login.clone()).await?;
                reg.set_locked(&acct.account_id, true, &by, &reason, now).await?;
                reg.end_sessions_of(&acct.account_id, "locked", now).await?;
                println!("locked {login}");
            }
            Cmd::Unlock { login, reason } => {
                let acct = find(login.clone()).await?;
                reg.set_locked(&acct.account_id, false, &by, &reason, now).await?;
                println!("unlocked {login}");
            }
            Cmd::Scope { login, provider, revoke } => {
                let acct = find(login.clone()).await?;
                reg.set_provider_scope(&acct.account_id, &provider, !revoke, &by, now).await?;
                let now_for = reg.provider_scope(&acct.account_id).await?;
                println!(
                    "{login} acts for: {}",
                    if now_for.is_empty() { "no provider".into() } else { now_for.join(", ") }
                );
            }
            Cmd::TotpSetup { login, token } => {
                let pw = match std::env::var("KIBAN_NEW_PASSWORD") {
                    Ok(p) => zeroize::Zeroizing::new(p),
                    Err(_) => {
                        let mut s = String::new();
                        std::io::stdin().read_line(&mut s)?;
                        zeroize::Zeroizing::new(s.trim_end_matches(['\r', '\n']).to_owned())
                    }
                };
                let sealer = sealer(&dd)?;
                let r = auth::complete_setup(&reg, sealer.as_ref(), &login, &token, &pw, now).await?;
                println!("TOTP secret (add to your authenticator app): {}", r.totp_base32.as_str());
                println!("{}", r.otpauth_uri.as_str());
                println!("Recovery codes (each works once; keep them offline):");
                for c in &r.recovery_codes {
                    println!("  {}", c.as_str());
                }
            }
        }
        reg.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
