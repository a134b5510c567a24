//! `kiban serve` and `kiban gateway intake|release`: the HTTP server and the two R12 gateways.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::Ctx;
use crate::datadir::DataDir;

/// `kiban serve`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    bind: SocketAddr,
    /// TLS certificate (PEM); with --tls-key serves HTTPS and marks the cookie Secure.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Minutes of inactivity after which a session ends.
    #[arg(long, default_value_t = 15)]
    idle_minutes: i64,
    /// Serve the demo: uses (or first makes, with `kiban demo`) the demo directory's data and
    /// creates one account per role with a known password and TOTP secret, printed at start.
    #[arg(long)]
    demo: bool,
    /// The demo directory for --demo.
    #[arg(long, default_value = "./kiban-demo", requires = "demo")]
    demo_dir: PathBuf,
}

/// `kiban gateway`
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    #[command(subcommand)]
    which: Gateway,
}

#[derive(Debug, clap::Subcommand)]
enum Gateway {
    /// Receive-only: accepts provider submissions into <data-dir>/staging/inbox, returns no data.
    Intake(Args),
    /// Send-only: serves prepared packages from <data-dir>/releases/outbox, accepts no uploads.
    Release(Args),
}

/// The server's state on `dd`: the registry, the audit log, the sealer and the route table.
pub(crate) fn app_state(
    dd: &DataDir,
    root: &std::path::Path,
    reg: kiban_registry::Registry,
    secure_cookie: bool,
    idle_minutes: i64,
) -> Result<kiban_server::AppState> {
    let key = crate::auditkey::audit_checkpoint_key(dd)?;
    let audit = kiban_audit::AuditLog::open(dd.audit_dir(), key.clone()).context("cannot open the audit log")?;
    Ok(Arc::new(kiban_server::Inner {
        reg,
        audit: Arc::new(audit),
        sealer: crate::cmd::account::sealer(dd)?,
        authz: kiban_server::Authz::builtin(),
        cfg: kiban_server::ServerConfig { secure_cookie, idle_timeout: chrono::Duration::minutes(idle_minutes.max(1)) },
        audit_key: key,
        data_dir: root.to_owned(),
    }))
}

fn serve(ctx: &Ctx, a: Args, which: &str) -> Result<ExitCode> {
    let demo_ctx;
    let ctx = if a.demo {
        demo_ctx = crate::cmd::serve_demo::prepare(ctx, &a.demo_dir)?;
        &demo_ctx
    } else {
        ctx
    };
    let dd = DataDir::open(&ctx.data_dir)?;
    crate::block_on(async {
        let reg = dd.registry().await?;
        let st = app_state(&dd, &ctx.data_dir, reg, a.tls_cert.is_some(), a.idle_minutes)?;
        if a.demo {
            crate::cmd::serve_demo::seed(&st, &format!("http://{}", a.bind)).await?;
        }
        let st2 = st.clone();
        spawn_anchoring(DataDir::open(&ctx.data_dir)?, st.clone());
        let descs = match which {
            "intake" => kiban_server::gateway::intake_routes(),
            "release" => kiban_server::gateway::release_routes(),
            _ => kiban_server::routes(),
        };
        let audit = st.audit.clone();
        let router = kiban_server::build_router(st, descs);
        let router = crate::cmd::identity::serve_layer(&dd, &ctx.data_dir, which, audit.as_ref(), router)?;
        let router = crate::cmd::workspace::serve_layer(&dd, &ctx.data_dir, which, &st2, router)?;
        match (&a.tls_cert, &a.tls_key) {
            (Some(c), Some(k)) => {
                eprintln!("kiban {which} listening on https://{}", a.bind);
                kiban_server::serve_tls(a.bind, c, k, router).await?;
            }
            (None, None) => {
                if !a.bind.ip().is_loopback() {
                    bail!("refusing plain HTTP on {}: give --tls-cert and --tls-key", a.bind);
                }
                let l =
                    tokio::net::TcpListener::bind(a.bind).await.with_context(|| format!("cannot bind {}", a.bind))?;
                eprintln!("kiban {which} listening on http://{}", l.local_addr()?);
                kiban_server::serve_plain(l, router).await?;
            }
            _ => bail!("--tls-cert and --tls-key go together"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// How often the server checks the registry against its last anchor and records a new one (X6).
const ANCHOR_EVERY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Checks and anchors the registry at start and every [`ANCHOR_EVERY`]; a tampered registry is
/// recorded as a failed verification (the `audit-integrity` alert) and printed.
fn spawn_anchoring(dd: DataDir, st: kiban_server::AppState) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(ANCHOR_EVERY);
        loop {
            every.tick().await;
            let by = kiban_audit::Actor::system();
            match crate::cmd::audit::check_registry(&dd, &st.reg, Some(st.audit.as_ref()), &by, "kiban serve").await {
                Ok(r) if !r.check.is_intact() => eprintln!("kiban serve: {}", r.summary()),
                Ok(_) => {}
                Err(e) => eprintln!("kiban serve: registry anchor failed: {e:#}"),
            }
        }
    });
}

/// Runs `kiban serve`.
pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    serve(ctx, a, "server")
}

/// Runs `kiban gateway`.
pub fn run_gateway(ctx: &Ctx, a: GatewayArgs) -> Result<ExitCode> {
    match a.which {
        Gateway::Intake(a) => serve(ctx, a, "intake"),
        Gateway::Release(a) => serve(ctx, a, "release"),
    }
}
