//! kiban-cluster's integration tests: the passes in-process, and (feature `cluster`) on a real
//! scheduler and two executors started as separate processes on loopback.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use kiban_cluster::plans::{COUNT_COLUMN, VERDICT_COLUMN, gate_pass, qi_frequency, tokenize_pass};
use kiban_cluster::runner::{FilePlan, Output, Runner};
use kiban_cluster::{ClusterSecret, GateUdf, TokenUdf, bench, synth};
use kiban_registry::gate::{Facts, Gate};

fn read_dataset(dir: &Path) -> Vec<RecordBatch> {
    let m = kiban_formats::dataset::read_manifest(dir).unwrap();
    let mut out = Vec::new();
    for f in &m.files {
        let file = std::fs::File::open(dir.join(&f.path)).unwrap();
        let r = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        out.extend(r.map(|b| b.unwrap()));
    }
    out
}

fn column<'a>(b: &'a RecordBatch, name: &str) -> &'a StringArray {
    b.column_by_name(name).unwrap().as_string::<i32>()
}

#[tokio::test]
async fn s2_token_pass_gives_identity_v2_tokens_and_deid_release_tokens() {
    // Key 0x01×32 and person key 42: the published v2 vector of kiban-identity (LINKAGE.md).
    let d = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_key", DataType::Int64, true),
        Field::new("patient_id", DataType::Utf8, true),
    ]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![Some(42), None])), Arc::new(StringArray::from(vec![Some("PT-7"), None]))],
    )
    .unwrap();
    let input = d.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(input.join("a.parquet")).unwrap(),
        schema,
        None,
    )
    .unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();

    let runner = Runner::in_process(None).unwrap();
    let secret = ClusterSecret::generate();
    let token = TokenUdf::new(&secret, "job-t", &[1u8; 32]).unwrap().into_udf();
    let plan: Arc<FilePlan> = Arc::new(move |df| tokenize_pass(df, token.clone(), &["person_key", "patient_id"]));
    let out = d.path().join("out");
    runner.write_in_input_order(&input, plan, &Output::new(&out, "t")).await.unwrap();
    let rows = read_dataset(&out);
    let b = &rows[0];
    let pk = column(b, "person_key");
    let pid = column(b, "patient_id");
    // Rows keep their input order; nulls stay null.
    assert!(pk.is_null(1) && pid.is_null(1));
    assert_eq!(pk.value(0), "576234a47253adc42a5c91fdf596a6cfda0fbe9eb2e1016ebc71195ff7f53045");
    // kiban-deid's release token, recomputed from its documented construction.
    let k = blake3::derive_key("kiban 2026-11 release token key v2", &[1u8; 32]);
    let ck = blake3::keyed_hash(&k, b"patient_id");
    let want = hex::encode(&blake3::keyed_hash(ck.as_bytes(), b"PT-7").as_bytes()[..16]);
    assert_eq!(pid.value(0), want);
}

#[tokio::test]
async fn c3_gate_pass_matches_the_compiled_gate_row_by_row() {
    let d = tempfile::tempdir().unwrap();
    let rows = 20_000;
    let input = d.path().join("in");
    synth::write_claims(&input, rows, 3).unwrap();
    let facts = synth::gate_facts(rows);
    let runner = Runner::in_process(None).unwrap();
    let gate = GateUdf::in_process("job-g", &facts).into_udf();
    let plan: Arc<FilePlan> = Arc::new(move |df| gate_pass(df, gate.clone(), "provision_date"));
    let out = d.path().join("out");
    let r = runner.write_in_input_order(&input, plan.clone(), &Output::new(&out, "g")).await.unwrap();
    assert_eq!(r.rows, rows, "nothing dropped: refused records keep their reason");
    // Input order without a sort: claim ids (ascending in the synthetic files) come out ascending.
    let ids: Vec<String> =
        read_dataset(&out).iter().flat_map(|b| column(b, "claim_id").iter().map(|v| v.unwrap().to_owned())).collect();
    assert_eq!(ids.len() as u64, rows);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "rows out of input order");
    // One file at a time, small parts: the same rows in the same order.
    let one = Runner::in_process(None).unwrap().with_file_tasks(1);
    let small = d.path().join("small");
    let o = Output { rows_per_part: 5_000, ..Output::new(&small, "g") };
    one.write_in_input_order(&input, plan, &o).await.unwrap();
    let again: Vec<String> =
        read_dataset(&small).iter().flat_map(|b| column(b, "claim_id").iter().map(|v| v.unwrap().to_owned())).collect();
    assert_eq!(ids, again);

    // The registry's own facts and gate decide the same for every row.
    let mut reg = Facts::default();
    for (p, f) in &facts.persons {
        for n in &f.notices {
            reg.notice(p.clone(), *n);
        }
        for (id, on, _) in &f.optouts {
            reg.optout(p.clone(), id.clone(), *on);
        }
    }
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut gates = std::collections::HashMap::new();
    for b in read_dataset(&out) {
        let (pid, v) = (column(&b, "patient_id"), column(&b, VERDICT_COLUMN));
        let dates =
            b.column_by_name("provision_date").unwrap().as_primitive::<datafusion::arrow::datatypes::Date32Type>();
        for i in 0..b.num_rows() {
            let date = dates.value_as_date(i).unwrap();
            let g = gates.entry(date).or_insert_with(|| Gate::compile(synth::PROVIDER, &reg, date, 30));
            assert_eq!(v.value(i), g.decide(Some(synth::PROVIDER), Some(pid.value(i))).as_str(), "row {i}");
            *seen.entry(v.value(i).to_owned()).or_default() += 1;
        }
    }
    for want in ["admitted", "opted_out", "unknown_person", "notice_too_recent"] {
        assert!(seen.get(want).copied().unwrap_or(0) > 0, "{want} in {seen:?}");
    }
}

#[tokio::test]
async fn a1_qi_frequency_counts_every_row_once_per_tuple_and_output_is_deterministic() {
    let d = tempfile::tempdir().unwrap();
    let rows = 30_000;
    let input = d.path().join("in");
    synth::write_claims(&input, rows, 4).unwrap();
    let runner = Runner::in_process(None).unwrap();
    let plan = qi_frequency(runner.read_parquet(&input).await.unwrap(), &synth::QI).unwrap();
    let a = d.path().join("a");
    runner.write(plan, &synth::QI, &Output::new(&a, "q")).await.unwrap();
    let total: i64 = read_dataset(&a)
        .iter()
        .map(|b| {
            b.column_by_name(COUNT_COLUMN)
                .unwrap()
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .iter()
                .map(|v| v.unwrap())
                .sum::<i64>()
        })
        .sum();
    assert_eq!(total as u64, rows);

    // Another engine layout (one partition, small batches) writes the same bytes.
    let cfg = datafusion::prelude::SessionConfig::new().with_target_partitions(1).with_batch_size(1000);
    let one = datafusion::prelude::SessionContext::new_with_config(cfg);
    let df = one.read_parquet(format!("{}/", input.display()), Default::default()).await.unwrap();
    let runner1 = Runner::from_context(one);
    let b = d.path().join("b");
    runner1.write(qi_frequency(df, &synth::QI).unwrap(), &synth::QI, &Output::new(&b, "q")).await.unwrap();
    assert!(bench::same_bytes(&a, &b).unwrap());
}

/// The claims policy with `points` top-coded and rare values suppressed (A4), which pass 2 on a
/// runner does not do: that pass then streams in this process.
pub fn claims_policy_text(rare_points: bool) -> String {
    // The bench's eight quasi-identifiers, four of them kept as they are: a lattice a sixteenth the
    // size keeps the nine debug-build runs of a test short (the bench runs all eight).
    let mut policy = synth::CLAIMS_POLICY.to_owned();
    for c in ["department", "encounter_type", "insurer_kind", "outcome"] {
        let qi = format!("name = \"{c}\"\nrole = \"quasi_identifier\"\nhierarchy = \"flat\"");
        assert!(policy.contains(&qi), "{c} is a quasi-identifier of the synthetic claims policy");
        policy = policy.replace(&qi, &format!("name = \"{c}\"\nrole = \"keep\""));
    }
    if rare_points {
        policy = policy.replace(
            "name = \"points\"\nrole = \"keep\"",
            "name = \"points\"\nrole = \"rare\"\nmin_count = 3\ntop = 4900",
        )
    }
    policy
}

/// A claims policy, loaded from a file under `dir`.
pub fn claims_policy(dir: &Path, rare_points: bool) -> kiban_deid::Policy {
    let p = dir.join(format!("claims-policy-{rare_points}.toml"));
    std::fs::write(&p, claims_policy_text(rare_points)).unwrap();
    kiban_deid::Policy::load(&p).unwrap()
}

/// The seed of the run keys in comparisons (a release run has random keys).
pub const KEY_SEED: [u8; 32] = [0x42; 32];

/// Anonymizes `input` in-process (the engine alone, with its DataFusion pass 1 and with its
/// streaming pass 1) and with `runner`; asserts equal output bytes, a byte-identical report (timings
/// aside) against the engine's DataFusion pass 1, and the report to 10 significant digits against its
/// streaming pass 1; returns (report, whether pass 2 ran on the runner).
pub async fn compare_anonymize(
    runner: Arc<Runner>,
    secret: Arc<ClusterSecret>,
    policy: kiban_deid::Policy,
    input: &Path,
    dir: &Path,
    ext: &str,
    tuple_budget: Option<usize>,
) -> (kiban_deid::Report, bool) {
    let engine = |datafusion: bool| {
        let out = dir.join(format!("engine-{datafusion}.{ext}"));
        let opts = kiban_deid::RunOptions { key_seed: Some(KEY_SEED), datafusion, tuple_budget, ..Default::default() };
        let o = kiban_deid::anonymize(
            &policy,
            &kiban_deid::Input::from_path(input),
            &kiban_deid::Output::from_path(&out),
            &opts,
        )
        .unwrap();
        (o.report, std::fs::read(&out).unwrap())
    };
    let (counted, counted_bytes) = engine(true);
    let (streamed, streamed_bytes) = engine(false);
    let runner_out = dir.join(format!("runner.{ext}"));
    let job = kiban_cluster::anonymize::Job {
        policy: policy.clone(),
        input: input.to_owned(),
        output: runner_out.clone(),
        progress: None,
        key_seed: Some(KEY_SEED),
        tuple_budget,
    };
    let ran = kiban_cluster::anonymize::run(runner, secret, job).await.unwrap();
    let runner_bytes = std::fs::read(&runner_out).unwrap();
    assert!(runner_bytes == counted_bytes, "output bytes differ from the engine's (DataFusion pass 1)");
    if tuple_budget.is_some() {
        // Folded: the streaming pass folds at its own batch boundaries, the sorted counts at theirs.
        assert!(!ran.outcome.report.search.folded.is_empty(), "the budget folded the table");
        assert!(ran.pass2_on_runner, "a folded table's pass 2 runs on the runner too");
        let json = |r: &kiban_deid::Report| serde_json::to_vec_pretty(&bench::report_without_timings(r)).unwrap();
        assert_eq!(json(&counted), json(&ran.outcome.report), "the report is the engine's with the same pass 1");
        return (ran.outcome.report, ran.pass2_on_runner);
    }
    assert!(runner_bytes == streamed_bytes, "output bytes differ from the engine's (streaming pass 1)");
    let json = |r: &kiban_deid::Report| serde_json::to_vec_pretty(&bench::report_without_timings(r)).unwrap();
    assert_eq!(
        String::from_utf8(json(&counted)).unwrap(),
        String::from_utf8(json(&ran.outcome.report)).unwrap(),
        "the report is byte-identical to the engine's with the same pass 1"
    );
    assert_eq!(bench::report_to_10_digits(&streamed), bench::report_to_10_digits(&ran.outcome.report));
    (ran.outcome.report, ran.pass2_on_runner)
}

/// The synthetic claims as CSV, every field padded with spaces (the engine's reader trims them).
pub fn claims_csv(path: &Path, rows: u64) {
    let b = synth::batch(rows, 0, rows);
    let cols: Vec<_> =
        b.columns().iter().map(|c| datafusion::arrow::compute::cast(c, &DataType::Utf8).unwrap()).collect();
    let mut s: String = b.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(",");
    s.push('\n');
    for r in 0..b.num_rows() {
        let line: Vec<String> = cols.iter().map(|c| format!(" {} ", c.as_string::<i32>().value(r))).collect();
        s.push_str(&line.join(","));
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a5_anonymize_with_its_bulk_passes_on_a_runner_equals_the_engine_run() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("in");
    synth::write_claims(&dir, 30_000, 1).unwrap();
    let input = dir.join("claims-0000.parquet");
    let runner = Arc::new(Runner::in_process(None).unwrap());
    let secret = Arc::new(ClusterSecret::generate());
    for (rare, ext) in [(false, "parquet"), (true, "csv")] {
        let sub = d.path().join(format!("rare-{rare}"));
        std::fs::create_dir(&sub).unwrap();
        let policy = claims_policy(&sub, rare);
        let (report, pass2) = compare_anonymize(runner.clone(), secret.clone(), policy, &input, &sub, ext, None).await;
        assert_eq!(pass2, !rare, "pass 2 runs on the runner unless the policy has A4 treatments");
        assert!(report.records_out > 0 && report.k_achieved >= 10, "{report:?}");
    }
    // A tuple budget under the distinct tuples: the sorted counts stream into a folded table.
    let sub = d.path().join("budget");
    std::fs::create_dir(&sub).unwrap();
    let (report, _) = compare_anonymize(
        runner.clone(),
        secret.clone(),
        claims_policy(&sub, false),
        &input,
        &sub,
        "parquet",
        Some(2000),
    )
    .await;
    assert!(report.search.distinct_tuples <= 2000 && report.k_achieved >= 10, "{report:?}");
    // CSV input: fields trimmed alike in both passes on the runner.
    let csv = d.path().join("claims.csv");
    claims_csv(&csv, 20_000);
    let sub = d.path().join("csv");
    std::fs::create_dir(&sub).unwrap();
    let (report, pass2) = compare_anonymize(runner, secret, claims_policy(&sub, false), &csv, &sub, "csv", None).await;
    assert!(pass2);
    assert_eq!(report.records_in, 20_000);
}

/// A registry for the synthetic provider with notices and opt-outs for most synthetic patients of a
/// `rows`-row batch (as [`synth::gate_facts`]: unknown, too recent and opted-out ones among them).
pub async fn intake_registry(path: &Path, rows: u64) -> kiban_registry::Registry {
    use kiban_registry::records::*;
    let d = |s: &str| s.parse::<chrono::NaiveDate>().unwrap();
    let reg = kiban_registry::Registry::open(&kiban_registry::Registry::sqlite_url(path)).await.unwrap();
    reg.migrate().await.unwrap();
    reg.register_provider(synth::PROVIDER, "合成病院（架空）", 13).await.unwrap();
    let filing = FilingInput {
        provider_id: synth::PROVIDER.into(),
        kind: FilingKind::Filing,
        filed_on: d("2024-01-10"),
        items: [("提供する医療情報の項目".to_string(), "レセプト".to_string())].into_iter().collect(),
        update_method: "月次で差分を提供".into(),
        planned_start: d("2024-03-01"),
        waiting_days: 30,
        transmission_method: "専用線 SFTP".into(),
        security_checked_on: Some(d("2024-02-01")),
        security_note: "TLS1.3".into(),
        acquisition_record: "診療の過程で取得".into(),
    };
    let fl = reg.file_provider(&filing).await.unwrap();
    reg.publish_filing(&fl.filing_id, d("2024-01-20"), d("2024-01-25"), "https://example.invalid/p").await.unwrap();
    let facts = synth::gate_facts(rows);
    let mut notices = Vec::new();
    let mut optouts = Vec::new();
    for (patient, f) in &facts.persons {
        for n in &f.notices {
            notices.push(NoticeInput {
                provider_id: synth::PROVIDER.into(),
                patient_id: patient.clone(),
                notice_date: *n,
                method: NoticeMethod::WrittenAtVisit,
                recipient: Recipient::Patient,
                guardian_name: None,
                patient_birth_date: None,
                lacks_capacity: false,
                text_version: "v1".into(),
                corrects: None,
                source: "test".into(),
            });
        }
        for (_, on, _) in &f.optouts {
            optouts.push(OptOutInput {
                provider_id: synth::PROVIDER.into(),
                patient_id: patient.clone(),
                requester_kind: RequesterKind::Patient,
                requester_name: "合成 花子".into(),
                requester_detail: "（架空）".into(),
                channel: Channel::Written,
                person_deceased: false,
                received_at: Some(on.and_hms_opt(3, 0, 0).unwrap().and_utc()),
                source: "test".into(),
            });
        }
    }
    reg.add_notices(&notices).await.unwrap();
    reg.add_optouts(&optouts).await.unwrap();
    reg
}

/// An intake batch: one table `claims` of synthetic claims in two files, the second with rows of
/// another provider and malformed patient ids.
pub fn intake_input(dir: &Path, rows: u64) {
    let t = dir.join("claims");
    std::fs::create_dir_all(&t).unwrap();
    // Without `sex`: an identity column, which only the identity table may carry.
    let keep: Vec<usize> =
        (0..synth::schema().fields().len()).filter(|&i| synth::schema().field(i).name() != "sex").collect();
    let write = |name: &str, b: &RecordBatch| {
        let b = b.project(&keep).unwrap();
        let f = std::fs::File::create(t.join(name)).unwrap();
        let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(f, b.schema(), None).unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
    };
    write("claims-0000.parquet", &synth::batch(rows, 0, rows));
    let b = synth::batch(rows, rows, rows + 50);
    let mut cols = b.columns().to_vec();
    cols[1] = Arc::new(StringArray::from(
        (0..50).map(|i| if i % 3 == 0 { "9999999999" } else { synth::PROVIDER }).collect::<Vec<_>>(),
    ));
    cols[2] = Arc::new(StringArray::from(
        (0..50).map(|i| if i % 5 == 0 { "x y".to_owned() } else { synth::patient_id(i) }).collect::<Vec<_>>(),
    ));
    write("claims-0001.parquet", &RecordBatch::try_new(b.schema(), cols).unwrap());
}

/// Every file under `dir` with its bytes, by path relative to `dir`.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Takes the batch in with the in-process gate and with the gate on `runner` (each into its own
/// registry and data directory); asserts the same report and the same stored bytes.
pub async fn compare_intake(runner: &Runner, secret: &ClusterSecret, root: &Path, rows: u64) -> serde_json::Value {
    let input = root.join("intake-input");
    intake_input(&input, rows);
    let date: chrono::NaiveDate = "2026-05-20".parse().unwrap();
    let mut reports = Vec::new();
    let mut trees = Vec::new();
    for (i, remote) in [false, true].into_iter().enumerate() {
        let reg = intake_registry(&root.join(format!("registry-{i}.sqlite")), rows).await;
        let data = root.join(format!("data-{i}"));
        let s = kiban_registry::intake::Submission {
            provider_id: synth::PROVIDER.into(),
            provision_date: date,
            input: input.clone(),
            bulk: false,
            dry_run: false,
            creator_name: "合成認定作成事業者（架空）".into(),
            creator_address: "東京都（架空）".into(),
            sealer: None,
        };
        let out = if remote {
            let facts = kiban_cluster::GateFacts::from_registry(
                synth::PROVIDER,
                30,
                &reg.gate_facts(synth::PROVIDER).await.unwrap(),
            );
            let g =
                kiban_cluster::intake::GateVerdicts::new(runner, secret, "intake-test", &facts, date, &input).unwrap();
            kiban_registry::intake::submit_gated(&reg, &data, &s, None, Some(&g)).await.unwrap()
        } else {
            kiban_registry::intake::submit(&reg, &data, &s).await.unwrap()
        };
        reports.push(serde_json::to_value(&out.report).unwrap());
        trees.push((tree(&out.clinical.unwrap()), tree(&out.quarantine.unwrap())));
        reg.close().await;
    }
    assert_eq!(reports[0], reports[1], "gate reports");
    assert!(trees[0] == trees[1], "clinical and quarantine stores differ");
    reports.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_intake_with_its_gate_on_a_runner_stores_the_same_bytes_and_report() {
    let d = tempfile::tempdir().unwrap();
    let runner = Runner::in_process(None).unwrap();
    let report = compare_intake(&runner, &ClusterSecret::generate(), d.path(), 2_000).await;
    let reasons = &report["excluded_by_reason"];
    for want in ["opted_out", "unknown_person", "notice_too_recent", "provider_mismatch", "malformed_identity"] {
        assert!(reasons[want].as_u64().unwrap_or(0) > 0, "{want} in {report}");
    }
    assert_eq!(report["rows_in"], 2_050);
}

#[cfg(feature = "cluster")]
mod cluster;
