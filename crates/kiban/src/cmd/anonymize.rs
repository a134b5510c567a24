//! `kiban anonymize`: apply a processing policy (匿名加工) to a dataset.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kiban_deid::engine::ProgressFn;
use kiban_deid::{Input, Output, Policy, Progress, RunOptions, anonymize};

use kiban_audit::{Action, AuditSink, Event, Object, ObjectKind};

use crate::Ctx;

/// Anonymize a table under a policy: identifiers deleted (A1), identification codes deleted or
/// replaced by tokens whose mapping is destroyed (A2), linking codes re-keyed per release (A3),
/// rare values treated (A4), and the quasi-identifiers generalized to the optimal k-anonymous
/// transformation within the suppression limit (A5). Writes the output and a processing report
/// (JSON and HTML) that never contains keys or mappings (A6). With a data directory the result is
/// a dataset sealed at rest under <data-dir>/datasets/NAME (report in its manifest); a plain
/// --output file then needs --export-plain and is audited.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file (TOML).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Input table (.csv with a header, or .parquet).
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Write the result as a dataset sealed at rest under <data-dir>/datasets/NAME.
    #[arg(long, value_name = "NAME", conflicts_with = "output", required_unless_present = "output")]
    dataset: Option<String>,
    /// Output table (.csv or .parquet); written next to it first, then renamed into place. With a
    /// data directory only with --export-plain.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Allow --output although a data directory exists: a plain export of medical data, recorded in
    /// the audit log before it is written.
    #[arg(long, requires = "output")]
    export_plain: bool,
    /// Where to write report.json and report.html (default: next to the output).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// A `${NAME}` path variable of the policy (e.g. `--path adult=/data/adult`); repeatable.
    #[arg(long = "path", value_name = "NAME=DIR", value_parser = parse_path_var)]
    paths: Vec<(String, String)>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    /// Distinct quasi-identifier tuples kept at most in memory (default 20,000,000, about 1 GB);
    /// past it the table is folded one level up on a quasi-identifier and the report says so.
    #[arg(long, value_name = "N")]
    tuple_budget: Option<usize>,
    /// Run the frequency count and the output pass on this Ballista scheduler (`df://host:port`);
    /// the search stays here. Same output and report as in-process.
    #[cfg(feature = "cluster")]
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// The cluster key file shared with the executors (needed with --cluster).
    #[cfg(feature = "cluster")]
    #[arg(long, value_name = "FILE")]
    cluster_key: Option<PathBuf>,
}

fn parse_path_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected NAME=DIR")),
    }
}

/// A progress display for the two passes: a spinner counting records while reading, then a bar.
fn progress_bar(hidden: bool) -> (ProgressBar, Box<ProgressFn>) {
    let pb = ProgressBar::new_spinner();
    if hidden {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template("{prefix:>12} {spinner} {pos} records {msg} ({elapsed})").expect("static"),
    );
    pb.set_prefix("anonymize");
    pb.set_message("counting");
    let bar = pb.clone();
    let f = move |p: Progress| match p {
        Progress::Counted(n) => bar.set_position(n),
        Progress::Searching(t) => bar.set_message(format!("searching the lattice over {t} distinct tuples")),
        Progress::Written { done, total } => {
            if bar.length() != Some(total) {
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} records {msg} ({elapsed})")
                        .expect("static")
                        .progress_chars("=> "),
                );
                bar.set_length(total);
                bar.set_message("writing");
            }
            bar.set_position(done);
        }
    };
    (pb, Box::new(f))
}

/// Runs `kiban anonymize`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let vars: BTreeMap<String, String> = args.paths.iter().cloned().collect();
    let policy =
        Policy::load_with_paths(&args.policy, &vars).with_context(|| format!("policy {}", args.policy.display()))?;
    let (pb, progress) = progress_bar(ctx.json || args.quiet);
    use super::pseudonymize::{dataset_dir, has_data_dir, open_log, operator, plain_export_allowed};
    let output = match &args.output {
        Some(o) if has_data_dir(&ctx.data_dir) => {
            let dd = crate::datadir::DataDir::open(&ctx.data_dir)?;
            plain_export_allowed(&open_log(&dd)?, "kiban anonymize", o, args.export_plain, &policy.name)?;
            o.clone()
        }
        Some(o) => o.clone(),
        None => {
            let name = args.dataset.as_deref().expect("clap: --dataset or --output");
            let dd = crate::datadir::DataDir::open(&ctx.data_dir).context("--dataset needs a data directory")?;
            let dir = dataset_dir(&ctx.data_dir, name)?;
            let log = open_log(&dd)?;
            let opts = RunOptions { progress: Some(progress), tuple_budget: args.tuple_budget, ..Default::default() };
            let p = kiban_registry::processing::anonymize_to_dataset(
                &policy,
                &Input::from_path(&args.input),
                &opts,
                &dir,
                name,
                dd.sealer()?,
                serde_json::json!({}),
            );
            pb.finish_and_clear();
            let p = p?;
            log.record(
                Event::new(
                    operator(),
                    "kiban anonymize",
                    Action::Write,
                    Object::new(ObjectKind::Clinical, format!("dataset/{name}")),
                )
                .volume(p.records_out)
                .note(format!("policy {}", &p.policy_sha256[..12])),
            )?;
            log.flush()?;
            if ctx.json {
                println!("{}", p.report);
            } else {
                let r = &p.report;
                println!(
                    "anonymized {} → {} records (k required {}, achieved {}; {} suppressed; policy {})",
                    r["records_in"],
                    r["records_out"],
                    r["k_required"],
                    r["k_achieved"],
                    r["records_suppressed"],
                    &p.policy_sha256[..12]
                );
                println!("dataset: {} (sealed at rest; report in its manifest)", dir.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let local = |progress| {
        let opts = RunOptions { progress: Some(progress), tuple_budget: args.tuple_budget, ..Default::default() };
        anonymize(&policy, &Input::from_path(&args.input), &Output::from_path(&output), &opts)
            .map_err(anyhow::Error::from)
    };
    #[cfg(feature = "cluster")]
    let out = match &args.cluster {
        Some(url) => {
            let files = (&args.input, &output);
            crate::cmd::cluster::anonymize(
                url,
                args.cluster_key.as_deref(),
                &policy,
                files,
                progress,
                args.tuple_budget,
            )
        }
        None => local(progress),
    };
    #[cfg(not(feature = "cluster"))]
    let out = local(progress);
    pb.finish_and_clear();
    let out = out?;
    let report_dir = args.report.unwrap_or_else(|| {
        let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        output.with_file_name(format!("{stem}.report"))
    });
    std::fs::create_dir_all(&report_dir).with_context(|| format!("cannot create {}", report_dir.display()))?;
    std::fs::write(report_dir.join("report.json"), out.report.to_json())?;
    std::fs::write(report_dir.join("report.html"), out.report.to_html())?;
    let r = &out.report;
    if ctx.json {
        println!("{}", r.to_json());
    } else {
        println!(
            "anonymized {} → {} records (k required {}, achieved {}; {} suppressed; loss {:.3}; policy {})",
            r.records_in,
            r.records_out,
            r.k_required,
            r.k_achieved,
            r.records_suppressed,
            r.information_loss,
            &r.policy_hash[..12]
        );
        println!("report: {}", report_dir.join("report.html").display());
    }
    Ok(ExitCode::SUCCESS)
}
