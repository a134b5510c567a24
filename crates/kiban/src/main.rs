//! `kiban`: the command line of a certified creator of anonymized and pseudonymized medical
//! information. This crate only parses arguments and wires the library crates together; every
//! rule lives in a library crate (see ARCHITECTURE.md).

mod auditkey;
mod cmd;
mod datadir;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kiban — runs the business of a certified creator (認定作成事業者) under Japan's Next Generation
/// Medical Infrastructure Act: intake with the opt-out gate, identity, anonymization and
/// pseudonymization, review, release, publication checks and statutory records.
#[derive(Debug, Parser)]
#[command(name = "kiban", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Start here:\n  kiban demo              run every stage on a synthetic population (no real data)\n  kiban init ./kiban-data create a data directory, then `kiban doctor` to check it\n\nEvery command reads the data directory from --data-dir, or KIBAN_DATA_DIR, or ./kiban-data."
)]
struct Cli {
    /// The data directory: registry, key store, clinical store, datasets.
    #[arg(long, global = true, env = "KIBAN_DATA_DIR", default_value = "./kiban-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data directory: SQLite registry (migrated), key store with a fresh master key, empty stores.
    Init(cmd::init::Args),
    /// Check a data directory and say plainly what is wrong and how to fix it.
    Doctor(cmd::doctor::Args),
    /// Generate a deterministic synthetic Japanese patient population (never real data).
    Synth(cmd::synth::Args),
    /// Convert files in a standard medical format (SS-MIX2, UKE, DPC, FHIR, CDA, CSV/Parquet) to canonical tables.
    Formats(cmd::formats::Args),
    /// Run every pipeline stage on a fresh synthetic population and print a summary.
    Demo(cmd::demo::Args),
    /// Providers, their filings (届出) and publication: who may submit (P5, C1, C4).
    Provider(cmd::provider::Args),
    /// Notices to patients before provision (P1, P2).
    Notice(cmd::notice::Args),
    /// Opt-outs, their withdrawal and confirmation documents (P3, P4).
    Optout(cmd::optout::Args),
    /// Take in a batch through the opt-out gate; delete a person's records (C1–C5, P7).
    Intake(cmd::intake::Args),
    /// Anonymize a table under a processing policy (A1–A6) and write a processing report.
    Anonymize(cmd::anonymize::Args),
    /// Check an aggregate table against the publication rules before anyone but handlers sees it.
    CheckOutput(cmd::check_output::Args),
    /// Measure throughput and print a table (targets live in benchmarks, not tests).
    Bench(cmd::bench::Args),
    /// DICOM: de-identify files and folders (PS3.15 profile, burned-in text, faces); metadata tables.
    Dicom(cmd::dicom::Args),
    /// Pseudonymize a table (仮名加工) under a pseudonymization policy checked against S1–S3.
    Pseudonymize(cmd::pseudonymize::Args),
    /// De-identify Japanese free text (S5) and print it.
    DeidText(cmd::pseudonymize::TextArgs),
    /// Evaluate the text de-identifier on synthetic notes: precision/recall/F1 per tag and MB/s.
    BenchText(cmd::pseudonymize::BenchTextArgs),
    /// Accounts: add, list, reset (with identity verification), lock, unlock, totp-setup (X5).
    Account(cmd::account::Args),
    /// The audit log: verify its hash chain and signed checkpoints.
    Audit(cmd::audit::Args),
    /// Run the HTTP API and login page (TLS with --tls-cert/--tls-key).
    Serve(cmd::serve::Args),
    /// Build the public site's data catalogue and protected statistics (K1, K2) from the clinical store.
    Publish(cmd::publish::Args),
    /// Run a gateway (R12): `intake` (receive-only) or `release` (send-only).
    Gateway(cmd::serve::GatewayArgs),
    /// Compliance evidence: requirements traceability, certification self-assessment (B2), documents.
    Compliance(cmd::compliance::Args),
    /// Business plans, budgets, reports and statements with the figures kiban knows (B1, B3).
    Business(cmd::compliance::BusinessArgs),
    /// Retention rules of statutory records and the purge of records past retention (C5, P4, P6, C2, I3).
    Retention(cmd::retention::Args),
    /// The key store: status, master-key rotation, new data-encryption keys (R12).
    Keys(cmd::keys::Args),
    /// Make an encrypted, consistent snapshot of the data directory (X7).
    Backup(cmd::backup::Args),
    /// Restore a backup into an empty directory and check it (X7).
    Restore(cmd::backup::RestoreArgs),
    /// The review committee roster and its composition check (R1).
    Committee(cmd::committee::Args),
    /// Applications for provision: template, pre-check, submit, show (D1, D2).
    Application(cmd::application::Args),
    /// The committee's review: open, conflicts, votes, decision, notice (R2, D3).
    Review(cmd::application::ReviewArgs),
    /// Provision to users: agreement, fee, release with its ledger entry, receipt (R3, D5, D6, R9).
    Release(cmd::release::Args),
    /// The statutory ledger (帳簿): list and export (R9).
    Ledger(cmd::ledger::Args),
    /// Supervision and use: due reports, expiry, changes, publications, reports, deletion
    /// certificates and users' requests (R5, R7, D4, D7).
    Supervise(cmd::release::SuperviseArgs),
    /// Joint-use agreements (R8) and transfer contracts between creators (R10), checked and kept.
    Contract(cmd::release::ContractArgs),
    /// Violations and sanctions (D8 table, R14): record, decide, print the table.
    Sanction(cmd::release::SanctionArgs),
    /// Incidents other than leaks: record, escalate, list (I2).
    Incident(cmd::incident::IncidentArgs),
    /// Leak reports (漏えい等報告) with the nine items and their deadline (I1).
    Leak(cmd::incident::LeakArgs),
    /// Complaints with cause and improvement, kept 3 years (I3).
    Complaint(cmd::incident::ComplaintArgs),
    /// Contractors: the contract's items and audits (I4).
    Contractor(cmd::incident::ContractorArgs),
    /// Identity vault and MPI: register, lookup, review, merge, split, undo, keys, linkage export (L1, P7).
    Identity(cmd::identity::Args),
    /// The Visiting environment for Type II users: workspaces, end of use, requests, take-outs (R4–R7, R13, D9).
    Workspace(cmd::workspace::Args),
    /// The bulk passes on a DataFusion Ballista cluster: scheduler, executor, gate, tokenize, QI counts.
    #[cfg(feature = "cluster")]
    Cluster(cmd::cluster::Args),
}

/// Global options every command sees.
pub struct Ctx {
    /// The data directory path (may not exist yet).
    pub data_dir: PathBuf,
    /// JSON output requested.
    pub json: bool,
}

fn main() -> ExitCode {
    // A panic is a bug: say so on one line instead of a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error{at}: {msg} (this is a bug in kiban; please report it)");
    }));
    let cli = Cli::parse();
    let ctx = Ctx { data_dir: cli.data_dir, json: cli.json };
    let result = match cli.command {
        Command::Init(a) => cmd::init::run(&ctx, a),
        Command::Doctor(a) => cmd::doctor::run(&ctx, a),
        Command::Synth(a) => cmd::synth::run(&ctx, a),
        Command::Formats(a) => cmd::formats::run(&ctx, a),
        Command::Demo(a) => cmd::demo::run(&ctx, a),
        Command::Provider(a) => cmd::provider::run(&ctx, a),
        Command::Notice(a) => cmd::notice::run(&ctx, a),
        Command::Optout(a) => cmd::optout::run(&ctx, a),
        Command::Intake(a) => cmd::intake::run(&ctx, a),
        Command::Anonymize(a) => cmd::anonymize::run(&ctx, a),
        Command::Bench(a) => cmd::bench::run(&ctx, a),
        Command::Dicom(a) => cmd::dicom::run(&ctx, a),
        Command::Pseudonymize(a) => cmd::pseudonymize::run(&ctx, a),
        Command::DeidText(a) => cmd::pseudonymize::run_text(&ctx, a),
        Command::BenchText(a) => cmd::pseudonymize::run_bench_text(&ctx, a),
        Command::Account(a) => cmd::account::run(&ctx, a),
        Command::Audit(a) => cmd::audit::run(&ctx, a),
        Command::Serve(a) => cmd::serve::run(&ctx, a),
        Command::Publish(a) => cmd::publish::run(&ctx, a),
        Command::Gateway(a) => cmd::serve::run_gateway(&ctx, a),
        Command::CheckOutput(a) => cmd::check_output::run(&ctx, a),
        Command::Compliance(a) => cmd::compliance::run(&ctx, a),
        Command::Business(a) => cmd::compliance::run_business(&ctx, a),
        Command::Retention(a) => cmd::retention::run(&ctx, a),
        Command::Keys(a) => cmd::keys::run(&ctx, a),
        Command::Backup(a) => cmd::backup::run(&ctx, a),
        Command::Restore(a) => cmd::backup::restore(&ctx, a),
        Command::Committee(a) => cmd::committee::run(&ctx, a),
        Command::Application(a) => cmd::application::run(&ctx, a),
        Command::Review(a) => cmd::application::run_review(&ctx, a),
        Command::Release(a) => cmd::release::run(&ctx, a),
        Command::Ledger(a) => cmd::ledger::run(&ctx, a),
        Command::Supervise(a) => cmd::release::run_supervise(&ctx, a),
        Command::Contract(a) => cmd::release::run_contract(&ctx, a),
        Command::Sanction(a) => cmd::release::run_sanction(&ctx, a),
        Command::Incident(a) => cmd::incident::run_incident(&ctx, a),
        Command::Leak(a) => cmd::incident::run_leak(&ctx, a),
        Command::Complaint(a) => cmd::incident::run_complaint(&ctx, a),
        Command::Contractor(a) => cmd::incident::run_contractor(&ctx, a),
        Command::Identity(a) => cmd::identity::run(&ctx, a),
        Command::Workspace(a) => cmd::workspace::run(&ctx, a),
        #[cfg(feature = "cluster")]
        Command::Cluster(a) => cmd::cluster::run(&ctx, a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Runs a future on a small runtime (2 workers: the machine size kiban is planned for).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts")
        .block_on(f)
}
