//! `kiban serve --demo`: the demo data directory (made by `kiban demo` when missing) and one
//! account per role with a known password and TOTP secret, printed at start.

use std::path::Path;

use anyhow::{Context, Result};

use crate::Ctx;

/// Persons in the demo made for `serve --demo` when none exists (small: ready in under a minute).
const SERVE_DEMO_PATIENTS: u64 = 2_000;

/// The context whose data directory is the demo's, running `kiban demo` first when it is missing.
pub fn prepare(ctx: &Ctx, dir: &Path) -> Result<Ctx> {
    let data = dir.join("data");
    if !data.join("kiban.toml").exists() {
        eprintln!("kiban serve --demo: no demo in {} yet, running `kiban demo` first", dir.display());
        let args =
            crate::cmd::demo::Args { dir: dir.to_owned(), patients: SERVE_DEMO_PATIENTS, seed: 42, reuse: false };
        crate::cmd::demo::run(&Ctx { data_dir: data.clone(), json: ctx.json }, args).context("kiban demo")?;
    }
    Ok(Ctx { data_dir: data, json: ctx.json })
}

/// Creates the demo accounts and records and prints how to log in.
pub async fn seed(st: &kiban_server::AppState, url: &str) -> Result<()> {
    use kiban_server::console::demo;
    let accounts = demo::demo_accounts(&st.reg, st.sealer.as_ref()).await.map_err(anyhow::Error::msg)?;
    let app = demo::demo_records(&st.reg, "demo").await.map_err(anyhow::Error::msg)?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    println!("\nkiban デモ — open {url}/login  (then {url}/console)");
    println!("パスワード password (all accounts): {}", demo::DEMO_PASSWORD);
    println!("確認コードは認証アプリに TOTP シークレットを登録して表示 (or run `oathtool --totp -b SECRET`)\n");
    println!("  {:<22} {:<26} {:<34} code now", "role", "login", "TOTP secret (base32)");
    for a in &accounts {
        let code = kiban_server::auth::totp_code(&a.totp_secret, now);
        println!("  {:<22} {:<26} {:<34} {code}", a.role.to_string(), a.login, a.totp_base32);
    }
    println!("\n審査中の利用申出 application under review: {url}/console/applications/{app}\n");
    Ok(())
}
