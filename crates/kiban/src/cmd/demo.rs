//! `kiban demo`: the product's front door — every stage that exists, on synthetic data.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kiban_model::synth::{SynthConfig, providers};

use crate::Ctx;
use crate::cmd::synth::{Format, write_population};
use crate::datadir::DataDir;

/// Run the whole pipeline on a synthetic population of 3 providers and print a summary.
/// Nothing here is real data. Run it twice: by default it starts fresh in its own directory.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the demo's data (kept afterwards so you can look around).
    #[arg(long, default_value = "./kiban-demo")]
    pub dir: PathBuf,
    /// Number of synthetic persons: the default finishes in a few minutes on 2 cores.
    #[arg(long, default_value_t = 20_000)]
    pub patients: u64,
    /// Seed of the synthetic population.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Reuse an existing demo directory instead of starting fresh.
    #[arg(long)]
    pub reuse: bool,
}

const MARKER: &str = ".kiban-demo";

fn prepare(dir: &Path, reuse: bool) -> Result<()> {
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            bail!("{} exists and was not made by `kiban demo`; choose another --dir", dir.display());
        }
        if !reuse {
            fs::remove_dir_all(dir).with_context(|| format!("cannot clear the previous demo in {}", dir.display()))?;
        }
    }
    fs::create_dir_all(dir)?;
    fs::write(dir.join(MARKER), "made by kiban demo; safe to delete\n")?;
    Ok(())
}

/// One line of the summary.
struct Stage {
    name: &'static str,
    seconds: f64,
    result: String,
}

/// Runs `kiban demo`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let total = Instant::now();
    prepare(&args.dir, args.reuse)?;
    let data = args.dir.join("data");
    let mut stages: Vec<Stage> = Vec::new();
    let mut stage = |name: &'static str, f: &mut dyn FnMut() -> Result<String>| -> Result<()> {
        let t = Instant::now();
        if !ctx.json {
            eprintln!("▶ {name}");
        }
        let result = f().with_context(|| format!("demo stage {name}"))?;
        stages.push(Stage { name, seconds: t.elapsed().as_secs_f64(), result });
        Ok(())
    };

    let cfg = SynthConfig { seed: args.seed, patients: args.patients, providers: 3, ..Default::default() };
    let mut dd = None;
    stage("init", &mut || {
        let d = DataDir::init(&data, None)?;
        let id = d.config().data_dir_id.clone();
        dd = Some(d);
        Ok(format!("データディレクトリ data directory {} (id {id})", data.display()))
    })?;
    let dd = dd.expect("init ran");
    stage("providers", &mut || {
        let provs = providers(&cfg);
        crate::block_on(async {
            let reg = dd.registry().await?;
            for p in &provs {
                reg.register_provider(&p.id, &p.name, p.pref_code as i64).await?;
            }
            reg.close().await;
            anyhow::Ok(())
        })?;
        Ok(format!("提供事業者 providers: {}", provs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join("、")))
    })?;
    let synth_dir = args.dir.join("synth");
    stage("synth", &mut || {
        if args.reuse && synth_dir.exists() {
            return Ok("合成母集団 synthetic population reused".into());
        }
        let s = write_population(&cfg, &synth_dir, &[Format::Parquet], !ctx.json)?;
        let rows: u64 = s.rows.iter().filter(|(t, _)| t != "truth").map(|(_, n)| n).sum();
        Ok(format!("合成患者 synthetic persons {} → {} provider rows ({:.1} s)", s.patients, rows, s.seconds))
    })?;
    stage("verify", &mut || {
        let problems = crate::block_on(dd.check());
        let mut n = 0;
        for e in fs::read_dir(synth_dir.join("parquet"))? {
            kiban_formats::verify_dataset(&e?.path())?;
            n += 1;
        }
        if !problems.is_empty() {
            bail!("doctor found: {}", problems.join("; "));
        }
        Ok(format!("検証 verified: data directory healthy, {n} datasets match their SHA-256 manifests"))
    })?;
    stage("formats", &mut || crate::cmd::formats::demo_submissions(&cfg, &args.dir))?;
    stage("gate", &mut || crate::cmd::intake::demo_gate(&dd, &data, &cfg, &synth_dir, &args.dir))?;

    stage("identity", &mut || {
        let q = kiban_identity::eval::evaluate_synth(&cfg, kiban_identity::mpi::MatchConfig::default());
        Ok(format!(
            "名寄せ linkage: {} records → {} persons (truth {}), precision {:.4}, recall {:.4}, {} in review, {} rejected",
            q.records,
            q.predicted_persons,
            q.true_persons,
            q.precision(),
            q.recall(),
            q.review_items,
            q.rejected
        ))
    })?;
    stage("vault", &mut || crate::cmd::identity::demo(&dd, &data, &cfg))?;
    stage("anonymize", &mut || {
        // The research extract: one row per encounter with age, sex, residence, date and main diagnosis.
        let mut batches = Vec::new();
        let step = 10_000;
        let mut start = 0;
        while start < cfg.patients {
            let end = (start + step).min(cfg.patients);
            batches.push(kiban_model::synth::research_extract(&kiban_model::synth::generate_chunk(&cfg, start..end)));
            start = end;
        }
        let policy_text = include_str!("../../../kiban-deid/policies/synth_research.toml");
        fs::write(args.dir.join("policy-synth-research.toml"), policy_text)?;
        let policy = kiban_deid::Policy::from_toml(policy_text, &args.dir, &Default::default())?;
        let out_path = args.dir.join("anonymized-extract.csv");
        let out = kiban_deid::anonymize(
            &policy,
            &kiban_deid::Input::Batches(batches),
            &kiban_deid::Output::from_path(&out_path),
            &kiban_deid::RunOptions::default(),
        )?;
        let r = &out.report;
        fs::write(args.dir.join("anonymize-report.json"), r.to_json())?;
        fs::write(args.dir.join("anonymize-report.html"), r.to_html())?;
        Ok(format!(
            "匿名加工 anonymized: {} → {} rows, k={} (required {}), {} suppressed, loss {:.3}, prosecutor risk {:.3} → {:.3}",
            r.records_in,
            r.records_out,
            r.k_achieved,
            r.k_required,
            r.records_suppressed,
            r.information_loss,
            r.risk_before.prosecutor_highest,
            r.risk_after.prosecutor_highest
        ))
    })?;
    stage("pseudonymize", &mut || {
        // A pseudonymized extract (仮名加工) of the patient master with a clinical note per patient.
        let chunk = kiban_model::synth::generate_chunk(&cfg, 0..cfg.patients.min(2_000));
        let patients =
            &chunk.batches.iter().find(|(t, _)| *t == kiban_model::synth::SynthTable::Patients).expect("table").1;
        let out_path = args.dir.join("pseudonymized-extract.csv");
        let out = kiban_deid::pseudo::demo_stage(
            patients,
            &kiban_deid::Output::from_path(&out_path),
            kiban_deid::pseudo::ReleaseKey::random(),
        )?;
        let r = &out.report;
        fs::write(args.dir.join("pseudonymize-report.json"), serde_json::to_string_pretty(r)?)?;
        Ok(format!(
            "仮名加工 pseudonymized: {} → {} rows with notes; checks {}",
            r.records_in,
            r.records_out,
            r.checks.join(", ")
        ))
    })?;
    stage("review", &mut || {
        // The anonymized extract is what the approved application receives.
        let digest = kiban_registry::ledger::sha256_hex(&fs::read(args.dir.join("anonymized-extract.csv"))?);
        let out = args.dir.clone();
        crate::block_on(async {
            let reg = dd.registry().await?;
            let r = crate::cmd::application::demo_review(&reg, &digest, &out).await;
            reg.close().await;
            r
        })
    })?;
    stage("visiting", &mut || crate::cmd::workspace::demo_stage(&dd, &data, &cfg))?;
    stage("publication", &mut || {
        let rows = kiban_disclosure::api::demo_rows(args.patients.min(5_000) as usize, args.seed);
        let d = kiban_disclosure::api::demo(&rows)?;
        fs::write(args.dir.join("publication-report.json"), &d.report_json)?;
        fs::write(args.dir.join("publication-protected.csv"), &d.protected_csv)?;
        if !d.passed {
            bail!("the protected table did not pass its own audit: {}", d.summary);
        }
        Ok(format!(
            "公表物確認 publication check: {} primary + {} secondary suppressions, interval audit passed",
            d.primary, d.secondary
        ))
    })?;
    stage("public", &mut || crate::cmd::publish::demo(&dd, &data))?;
    stage("dicom", &mut || crate::cmd::dicom::demo_step(&dd, &cfg, &args.dir))?;
    stage("security", &mut || {
        let r = crate::block_on(async {
            let reg = dd.registry().await?;
            let st = crate::cmd::serve::app_state(&dd, &data, reg, false, 15)?;
            kiban_server::drill::run(&st).await.map_err(anyhow::Error::msg)
        })?;
        fs::write(args.dir.join("security-drill.json"), serde_json::to_vec_pretty(&r)?)?;
        if !r.passed() {
            bail!("the security drill did not go as expected: {}", r.summary());
        }
        Ok(r.summary())
    })?;
    stage("audit", &mut || {
        let key = crate::auditkey::audit_checkpoint_key(&dd)?;
        let log = kiban_audit::AuditLog::open(dd.audit_dir(), key.clone())?;
        let actor = kiban_audit::Actor::system();
        use kiban_audit::{Action, Event, Object, ObjectKind};
        let events = [
            (Action::Configure, ObjectKind::Config, "data-dir"),
            (Action::Write, ObjectKind::Config, "providers"),
            (Action::KeyUse, ObjectKind::Key, "audit-checkpoint"),
        ];
        for (action, kind, id) in events {
            log.append(Event::new(actor.clone(), "kiban demo", action, Object::new(kind, id)))?;
        }
        log.flush()?;
        // X6: the registry's append-only tables are anchored in the log, so an edit behind kiban is caught.
        let registry = crate::block_on(async {
            let reg = dd.registry().await?;
            let r = crate::cmd::audit::check_registry(&dd, &reg, Some(&log), &actor, "kiban demo").await;
            reg.close().await;
            r
        })?;
        if !registry.check.is_intact() {
            bail!("registry check failed: {}", registry.summary());
        }
        drop(log);
        let (report, _) = kiban_audit::verify_summary(&dd.audit_dir(), &key, &actor, "kiban demo")?;
        if !report.is_intact() {
            bail!("audit chain verification failed: {}", report.summary());
        }
        Ok(format!(
            "監査ログ audit log: {} entries, hash chain and signed checkpoints verified; registry anchored ({} rows of the append-only tables)",
            report.entries,
            registry.anchored_now.unwrap_or_default()
        ))
    })?;

    let summary = serde_json::json!({
        "dir": args.dir, "patients": args.patients, "seed": args.seed,
        "stages": stages.iter().map(|s| serde_json::json!({"stage": s.name, "seconds": s.seconds, "result": s.result})).collect::<Vec<_>>(),
        "seconds": total.elapsed().as_secs_f64(),
    });
    crate::block_on(async {
        let reg = dd.registry().await?;
        let run_id = format!("demo-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f"));
        reg.start_run(&run_id, "demo").await?;
        reg.finish_run(&run_id, &summary).await?;
        reg.close().await;
        anyhow::Ok(())
    })?;
    if ctx.json {
        println!("{summary}");
    } else {
        println!("\nkiban demo — 合成データによる全工程 (synthetic data only)");
        for s in &stages {
            println!("  {:<12} {:>6.1} s  {}", s.name, s.seconds, s.result);
        }
        println!("  {:<12} {:>6.1} s", "total", total.elapsed().as_secs_f64());
        println!("\nlook around: kiban doctor --data-dir {}", data.display());
    }
    Ok(ExitCode::SUCCESS)
}
