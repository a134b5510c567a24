//! A real Ballista cluster on loopback: one scheduler and two executors, each its own process
//! (`kiban-cluster-node`), against the same passes in-process.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use futures::StreamExt;
use kiban_cluster::runner::Runner;
use kiban_cluster::{ClusterSecret, bench, synth};

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(args: &[&str], log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kiban-cluster-node"))
        .args(args)
        // Debug logging on, so the check below also covers what Ballista logs about plans and tasks.
        .env("RUST_LOG", "info,ballista=debug,ballista_executor=debug,ballista_scheduler=debug,kiban_cluster=debug")
        .stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f))
        .spawn()
        .unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(files_under(&p)) } else { out.push(p) }
        }
    }
    out
}

fn holding(files: &[PathBuf], needle: &[u8]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|p| std::fs::read(p).map(|b| b.windows(needle.len()).any(|w| w == needle)).unwrap_or(false))
        .cloned()
        .collect()
}

/// The run key kiban-deid derives from the comparison seed (`which`: token or release).
fn run_key(which: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"kiban-deid run key seed\0");
    h.update(which.as_bytes());
    h.update(super::KEY_SEED);
    h.finalize().into()
}

/// The job file of a gate on `remote` holds no patient id, and a tampered one fails the job with an
/// error that says so (never admitted rows).
async fn job_file_is_sealed_and_a_tampered_one_is_refused(
    remote: &Runner,
    secret: &ClusterSecret,
    input: &Path,
    planted: &str,
) {
    use kiban_cluster::GateUdf;
    use kiban_cluster::plans::gate_pass;
    use kiban_cluster::runner::{FilePlan, Output};
    let rows = 40_000;
    let facts = synth::gate_facts(rows);
    assert!(facts.persons.contains_key(planted));
    let gate = GateUdf::for_runner(remote, secret, "leak-check", &facts, input).unwrap();
    let path = gate.job_file().expect("a cluster gate has a job file").path.clone();
    assert_eq!(path, kiban_cluster::job_file_beside(input, "leak-check"));
    let mut bytes = std::fs::read(&path).unwrap();
    let ids = (1..50).map(synth::patient_id).chain([planted.to_owned(), synth::PROVIDER.to_owned()]);
    for id in ids {
        assert!(!bytes.windows(id.len()).any(|w| w == id.as_bytes()), "{id} in the job file");
    }
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let gate = gate.into_udf();
    let plan: Arc<FilePlan> = Arc::new(move |df| gate_pass(df, gate.clone(), "provision_date"));
    let out = input.parent().unwrap().join("tampered");
    let err = remote.write_in_input_order(input, plan, &Output::new(&out, "gate")).await.unwrap_err().to_string();
    assert!(err.contains("altered or replaced"), "{err}");
    assert!(!err.contains(planted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_passes_on_a_two_executor_cluster_match_in_process_bytes_and_leak_no_secrets() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let key_file = root.join("cluster.key");
    let secret_bytes = [0x3cu8; 32];
    ClusterSecret::from_bytes(secret_bytes).write_new(&key_file).unwrap();
    let secret = ClusterSecret::read(&key_file).unwrap();
    let logs = root.join("logs");
    std::fs::create_dir(&logs).unwrap();

    let sched = free_port();
    let sched_addr = format!("127.0.0.1:{sched}");
    let mut nodes = Nodes(vec![spawn(
        // The default retention (600 s): the files must go because the client released each job once
        // it had read the results, not because the retention ran out.
        &["scheduler", "--bind", &sched_addr],
        &logs.join("scheduler.log"),
    )]);
    let mut work_dirs = Vec::new();
    for i in 0..2 {
        let (fp, gp) = (free_port().to_string(), free_port().to_string());
        let work = root.join(format!("work-{i}"));
        nodes.0.push(spawn(
            &[
                "executor",
                "--scheduler",
                &sched_addr,
                "--flight-port",
                &fp,
                "--grpc-port",
                &gp,
                "--work-dir",
                work.to_str().unwrap(),
                "--key-file",
                key_file.to_str().unwrap(),
                "--vcores",
                "2",
            ],
            &logs.join(format!("executor-{i}.log")),
        ));
        work_dirs.push(work);
    }

    let rows = 40_000;
    let input = root.join("input");
    synth::write_claims(&input, rows, 4).unwrap();
    let planted = synth::patient_id(7);

    let local = Runner::in_process(None).unwrap();
    let local_figs = bench::run_passes(&local, &secret, &input, rows, &root.join("local")).await.unwrap();

    // The scheduler may take a moment to listen, and executors to register.
    let url = format!("df://{sched_addr}");
    let start = Instant::now();
    let remote = Arc::new(loop {
        match Runner::cluster(&url).await {
            Ok(r) => break r,
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                eprintln!("waiting for the scheduler: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("scheduler never came up: {e}"),
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let remote_figs = bench::run_passes(&remote, &secret, &input, rows, &root.join("remote")).await.unwrap();

    // The gate's facts went as a sealed job file beside the input, removed once the job ended.
    let stray = |dir: &Path| files_under(dir).into_iter().filter(|p| p.to_string_lossy().contains(".kiban-job-"));
    assert_eq!(stray(root).count(), 0, "job files left behind");
    job_file_is_sealed_and_a_tampered_one_is_refused(&remote, &secret, &input, &planted).await;

    for (l, r) in local_figs.iter().zip(&remote_figs) {
        assert_eq!(l.output_rows, r.output_rows, "{}", l.pass);
        assert!(
            bench::same_bytes(&root.join("local").join(l.pass), &root.join("remote").join(r.pass)).unwrap(),
            "{}: cluster output differs from in-process output",
            l.pass
        );
    }
    // Anonymization with its frequency count and its pass 2 (generalization, suppression, tokens) on
    // the cluster: the same output bytes and report as the engine alone in this process.
    let one = root.join("one");
    synth::write_claims(&one, rows, 1).unwrap();
    let shared = Arc::new(ClusterSecret::read(&key_file).unwrap());
    let shared_for_intake = ClusterSecret::read(&key_file).unwrap();
    for (rare, ext) in [(false, "parquet"), (true, "csv")] {
        let sub = root.join(format!("anonymize-{rare}"));
        std::fs::create_dir(&sub).unwrap();
        let policy = super::claims_policy(&sub, rare);
        let input = one.join("claims-0000.parquet");
        let (report, pass2) =
            super::compare_anonymize(remote.clone(), shared.clone(), policy, &input, &sub, ext, None).await;
        assert_eq!(pass2, !rare);
        assert!(report.k_achieved >= 10 && report.records_out > 0, "{report:?}");
    }
    // Past the tuple budget the sorted counts from the cluster fold exactly as in-process; every
    // pass-2 payload goes as a job file (as a 100 M-row run's suppressed tuples do), which must stay
    // until the job has read it.
    kiban_cluster::deid_udf::set_inline_payload_limit(0);
    let sub = root.join("anonymize-budget");
    std::fs::create_dir(&sub).unwrap();
    let input = one.join("claims-0000.parquet");
    let policy = super::claims_policy(&sub, false);
    let (report, _) =
        super::compare_anonymize(remote.clone(), shared.clone(), policy, &input, &sub, "parquet", Some(1000)).await;
    assert!(report.search.distinct_tuples <= 1000, "{report:?}");
    kiban_cluster::deid_udf::set_inline_payload_limit(kiban_cluster::deid_udf::INLINE_PAYLOAD_LIMIT);
    let left: Vec<_> = std::fs::read_dir(&one).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 1, "the job files are removed after the run: {left:?}");
    let csv = root.join("claims.csv");
    super::claims_csv(&csv, 10_000);
    let sub = root.join("anonymize-csv");
    std::fs::create_dir(&sub).unwrap();
    let (_, pass2) =
        super::compare_anonymize(remote.clone(), shared, super::claims_policy(&sub, false), &csv, &sub, "csv", None)
            .await;
    assert!(pass2);

    // Intake: the gate's verdicts from the cluster, the same stores and report as in-process.
    let intake_root = root.join("intake");
    std::fs::create_dir(&intake_root).unwrap();
    super::compare_intake(&remote, &shared_for_intake, &intake_root, rows).await;

    // The executors really ran the tasks (each logged work, and the scheduler saw both).
    for i in 0..2 {
        let log = std::fs::read_to_string(logs.join(format!("executor-{i}.log"))).unwrap();
        assert!(log.to_lowercase().contains("task"), "executor {i} ran no task:\n{log}");
    }

    // Results are released once read, so by now the work dirs are nearly empty. Hold one token pass's
    // result stream open, with shuffle compression off (lz4 could hide a key's hex), so its result
    // files stay on the executors for the scan below.
    remote
        .context()
        .state_ref()
        .write()
        .config_mut()
        .options_mut()
        .set("ballista.shuffle.compression.codec", "none")
        .unwrap();
    let token = kiban_cluster::TokenUdf::new(&secret, "held", &bench::BENCH_TOKEN_KEY).unwrap().into_udf();
    let held_input = remote.read_parquet(&one.join("claims-0000.parquet")).await.unwrap();
    let held_plan = kiban_cluster::plans::tokenize_pass(held_input, token, &["patient_id", "person_key"]).unwrap();
    let mut held = remote.execute(held_plan, "held token pass").await.unwrap();
    assert!(held.next().await.unwrap().unwrap().num_rows() > 0);
    let mut held_files = Vec::new();
    for w in &work_dirs {
        held_files.extend(files_under(w));
    }
    assert!(
        !holding(&held_files, synth::PROVIDER.as_bytes()).is_empty(),
        "the held job's result rows are on the executors, uncompressed: {held_files:?}"
    );

    // Secrets: neither the pseudonym key nor the cluster secret, in hex or raw, in any log or work file;
    // no patient id in any log.
    let log_files = files_under(&logs);
    let mut all = log_files.clone();
    for w in &work_dirs {
        all.extend(files_under(w));
    }
    for needle in [
        hex::encode(bench::BENCH_TOKEN_KEY).into_bytes(),
        bench::BENCH_TOKEN_KEY.to_vec(),
        hex::encode(secret_bytes).into_bytes(),
        secret_bytes.to_vec(),
        hex::encode(run_key("token")).into_bytes(),
        run_key("token").to_vec(),
        run_key("release").to_vec(),
    ] {
        assert!(holding(&all, &needle).is_empty(), "key bytes found in {:?}", holding(&all, &needle));
    }
    assert!(holding(&log_files, planted.as_bytes()).is_empty(), "a patient id was logged");
    assert!(!log_files.is_empty());

    // Shuffle and result files hold medical data while a job runs; once the client has read a job's
    // results (or dropped the stream, as here) it releases them, and the scheduler has the executors
    // delete them at once.
    drop(held);
    let start = Instant::now();
    loop {
        let mut work_files = Vec::new();
        for w in &work_dirs {
            work_files.extend(files_under(w));
        }
        // Not only files where the planted id shows: compressed IPC may hide it.
        if work_files.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "shuffle or result files were not removed (holding the planted id: {:?}): {work_files:?}",
            holding(&work_files, planted.as_bytes())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(nodes);
}
