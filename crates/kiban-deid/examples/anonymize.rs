//! Demo of the entry point the `kiban anonymize` subcommand calls:
//! `cargo run -p kiban-deid --example anonymize -- POLICY INPUT OUTPUT [REPORT_PREFIX]`.

use std::path::PathBuf;

use kiban_deid::{Input, Output, Policy, RunOptions, anonymize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: anonymize POLICY INPUT OUTPUT [REPORT_PREFIX]");
        std::process::exit(2);
    }
    let policy = Policy::load(&PathBuf::from(&args[0]))?;
    let outcome =
        anonymize(&policy, &Input::from_path(&args[1]), &Output::from_path(&args[2]), &RunOptions::default())?;
    let r = &outcome.report;
    if let Some(prefix) = args.get(3) {
        std::fs::write(format!("{prefix}.json"), r.to_json())?;
        std::fs::write(format!("{prefix}.html"), r.to_html())?;
    }
    println!(
        "{} records in, {} out, {} suppressed; k achieved {}; levels {:?}; loss {:.4}; search {:.1} ms ({} of {} nodes); total {:.1} ms",
        r.records_in,
        r.records_out,
        r.records_suppressed,
        r.k_achieved,
        r.levels,
        r.information_loss,
        r.search.millis,
        r.search.evaluated,
        r.search.lattice_size,
        r.millis
    );
    println!(
        "prosecutor risk highest {:.4} -> {:.4}; sample uniques {:.4} -> {:.4}",
        r.risk_before.prosecutor_highest,
        r.risk_after.prosecutor_highest,
        r.risk_before.sample_uniques,
        r.risk_after.sample_uniques
    );
    Ok(())
}
