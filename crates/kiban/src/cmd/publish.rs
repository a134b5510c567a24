//! `kiban publish`: builds what the public site shows (K1 data catalogue with dummy data, K2 the
//! protected statistics table) from the clinical store, with the key store's sealer.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::Ctx;
use crate::datadir::DataDir;

/// Build the public data catalogue (sizes, items, dummy data) and the statistics search's table,
/// protected once as a whole by the publication rules (O1, O9), into <data-dir>/public/.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Mark the pages as showing synthetic data (the demo's store).
    #[arg(long)]
    synthetic: bool,
}

/// Runs `kiban publish`.
pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let sealer = dd.sealer()?;
    let note = a.synthetic.then(|| {
        "このデータは合成データです（実在の患者ではありません） / synthetic data, not real patients".to_owned()
    });
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let built = kiban_server::publish::build(&ctx.data_dir, Some(sealer.as_ref()), note, &at)
        .context("cannot build the public files")?;
    if let Some(e) = &built.stats_error {
        eprintln!("統計検索は公表しません statistics not published: {e}");
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&built)?);
    } else {
        println!(
            "公開情報を作成しました built: データベース {} 件, 統計表 {} セル (一次秘匿 {}, 二次秘匿 {}) → {}",
            built.databases,
            built.stats_cells,
            built.primary,
            built.secondary,
            ctx.data_dir.join("public").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The demo's step: builds the public files from the demo's (synthetic) clinical store.
pub fn demo(dd: &DataDir, data: &std::path::Path) -> Result<String> {
    let sealer = dd.sealer()?;
    let note =
        Some("このデータは合成データです（実在の患者ではありません） / synthetic data, not real patients".to_owned());
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let b = kiban_server::publish::build(data, Some(sealer.as_ref()), note, &at)?;
    if let Some(e) = &b.stats_error {
        return Ok(format!(
            "公開情報 public site: {} databases in the catalogue with dummy data; statistics NOT published (the cube did not pass: {e})",
            b.databases
        ));
    }
    Ok(format!(
        "公開情報 public site: {} databases in the catalogue with dummy data; statistics table of {} cells, {} primary + {} secondary suppressions, audited",
        b.databases, b.stats_cells, b.primary, b.secondary
    ))
}
