//! MPI benchmark: bulk registration throughput, pseudonym tokens per second per core, and linkage
//! quality on the synthetic population. Each figure is printed beside a named peer measured in the
//! same run. Scale: `KIBAN_BENCH_PERSONS` (default 300000 persons ≈ 520000 provider records). The
//! population is generated and registered in chunks of `KIBAN_BENCH_CHUNK` persons (default 500000)
//! so only the index, not the input, has to fit in memory; only registration is timed. The last
//! chunk's rate is printed separately: it is the rate against an index of (nearly) full size.
//!
//! The persistent store (vault + snapshot) is measured after that, at `KIBAN_BENCH_STORE_PERSONS`
//! (default 100000): registration, reopen from the snapshot in wall and CPU time (the machine may
//! be shared) with the open's own memory peak, and the full replay without the snapshot.
//! `KIBAN_BENCH_STORE_ONLY=1` runs only that part (the large-scale run of the store).
//!
//! `KIBAN_BENCH_AGAINST=1` runs the benchmark as written instead: an index is built from
//! `KIBAN_BENCH_PERSONS` persons (6,250,000 persons ≈ 10 million records), then as many records
//! again — the persons from the middle of that population on, half already indexed and half new,
//! as a second wave of providers writes them — are registered against it, timed in wall and CPU
//! time, with pairwise precision and recall over all records and the peak memory.
//!
//! Run: `cargo bench -p kiban-identity --bench mpi`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use kiban_identity::eval::{Evaluation, synth_inputs, synth_inputs_second_wave};
use kiban_identity::identity::Identity;
use kiban_identity::keystore::KeyStore;
use kiban_identity::mpi::MatchConfig;
use kiban_identity::pseudonym::TokenScheme;
use kiban_identity::store::IdentityStore;
use kiban_identity::vault::MemoryAudit;
use kiban_model::id::PersonKey;
use kiban_model::synth::SynthConfig;
use sha2::{Digest, Sha256};

fn main() {
    // Only the persistent store (its registration, reopen from snapshot and memory): the large-scale run.
    if std::env::var("KIBAN_BENCH_STORE_ONLY").is_ok_and(|v| v == "1") {
        // KIBAN_BENCH_STORE_DIR keeps the store (for KIBAN_BENCH_OPEN_ONLY in a fresh process).
        match std::env::var_os("KIBAN_BENCH_STORE_DIR") {
            Some(d) if std::path::Path::new(&d).join("identity").exists() => open_bench(std::path::Path::new(&d)),
            Some(d) => store_bench(std::path::Path::new(&d)),
            None => store_bench(tempfile::tempdir().expect("temp dir").path()),
        }
        return;
    }
    let persons: u64 = std::env::var("KIBAN_BENCH_PERSONS").ok().and_then(|v| v.parse().ok()).unwrap_or(300_000);
    let chunk: u64 = std::env::var("KIBAN_BENCH_CHUNK").ok().and_then(|v| v.parse().ok()).unwrap_or(500_000);
    if std::env::var("KIBAN_BENCH_AGAINST").is_ok_and(|v| v == "1") {
        against_bench(persons, chunk);
        return;
    }
    let cfg = SynthConfig { patients: persons, ..Default::default() };
    // The peer runs on the first chunk only (its input is what fits beside the index).
    let t = Instant::now();
    let (inputs, _) = synth_inputs(&cfg, 0..persons.min(chunk));
    let mut gen_s = t.elapsed().as_secs_f64();

    // Peer: exact-match join on canonical (kana, birth, sex) — parsing included, no MPI logic.
    let t = Instant::now();
    let mut naive: HashMap<(String, chrono::NaiveDate, &'static str), u32> = HashMap::new();
    for i in &inputs {
        if let Ok(id) = Identity::parse(i) {
            let n = naive.len() as u32;
            naive.entry((id.kana.joined(), id.birth, id.sex.code())).or_insert(n);
        }
    }
    let naive_s = t.elapsed().as_secs_f64();

    let naive_n = inputs.len() as f64;
    drop(inputs);
    drop(naive);

    let mut ev = Evaluation::new(MatchConfig::default());
    let (mut reg_s, mut reg_cpu, mut records, mut last) = (0.0f64, 0.0f64, 0usize, (0usize, 0.0f64, 0usize));
    let mut start = 0;
    while start < persons {
        let end = (start + chunk).min(persons);
        let t = Instant::now();
        let (inputs, truth) = synth_inputs(&cfg, start..end);
        gen_s += t.elapsed().as_secs_f64();
        let (t, c) = (Instant::now(), cpu_seconds());
        ev.add(&inputs, &truth);
        let s = t.elapsed().as_secs_f64();
        reg_s += s;
        reg_cpu += cpu_seconds() - c;
        last = (inputs.len(), s, records);
        records += inputs.len();
        eprintln!(
            "registered {records} records ({end} persons), {:.0}/s in this chunk, peak RSS {} MiB",
            inputs.len() as f64 / s,
            peak_rss_mib()
        );
        start = end;
    }
    let q = ev.quality();

    // Tokens: one core, keyed BLAKE3 (v2); peers: HMAC-SHA-256 (v1, key state precomputed) and unkeyed SHA-256.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ks = KeyStore::create(&dir.path().join("keys")).expect("key store");
    let key = ks.domain_key("bench").expect("domain key");
    let n_tok = 5_000_000u64;
    // CPU time (one thread runs here): wall time on a shared machine measures the neighbours.
    let c = cpu_seconds();
    let mut acc = 0u8;
    for i in 0..n_tok {
        acc ^= key.token(PersonKey::from_u64(i)).0[0];
    }
    let tok_s = cpu_seconds() - c;
    black_box(acc);
    let c = cpu_seconds();
    for i in 0..n_tok {
        let mut h = Sha256::new();
        h.update(b"kiban/pseudonym/v1\0");
        h.update(i.to_be_bytes());
        acc ^= h.finalize()[0];
    }
    let sha_s = cpu_seconds() - c;
    black_box(acc);
    let c = cpu_seconds();
    for i in 0..n_tok {
        acc ^= key.token_with(TokenScheme::HmacSha256V1, PersonKey::from_u64(i)).0[0];
    }
    let hmac_s = cpu_seconds() - c;
    black_box(acc);

    let n = records as f64;
    println!(
        "kiban-identity MPI benchmark ({} persons, {} provider records, {} cores)",
        persons,
        records,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("{:<44} {:>16} {:>22} {:>8}", "measure", "kiban", "peer", "ratio");
    println!("{:<44} {:>16} {:>22} {:>8}", "synthetic input generation (s)", format!("{gen_s:.2}"), "-", "-");
    println!(
        "{:<44} {:>16.0} {:>22} {:>8.2}",
        "bulk registration (identities/s)",
        n / reg_s,
        format!("{:.0} exact-join", naive_n / naive_s),
        (n / reg_s) / (naive_n / naive_s)
    );
    println!("{:<44} {:>16.0} {:>22} {:>8}", "  per CPU-second (all threads; shared machine)", n / reg_cpu, "-", "-");
    println!(
        "{:<44} {:>16.0} {:>22} {:>8.0}",
        format!("  last chunk, index at {} records (/s)", last.2),
        last.0 as f64 / last.1,
        "1.4 E-PIX (published)",
        last.0 as f64 / last.1 / 1.4
    );
    println!("{:<44} {:>16} {:>22} {:>8}", "peak resident memory (MiB)", peak_rss_mib(), "-", "-");
    println!(
        "{:<44} {:>16.0} {:>22} {:>8.2}",
        "pseudonym tokens per CPU-second, one core",
        n_tok as f64 / tok_s,
        format!("{:.0} hmac-sha256", n_tok as f64 / hmac_s),
        hmac_s / tok_s
    );
    println!(
        "{:<44} {:>16} {:>22} {:>8.2}",
        "  (unkeyed sha256 of the same bytes)",
        "-",
        format!("{:.0} sha256", n_tok as f64 / sha_s),
        sha_s / tok_s
    );
    println!("{:<44} {:>16} {:>22} {:>8}", "precision (pairwise)", format!("{:.5}", q.precision()), "-", "-");
    println!("{:<44} {:>16} {:>22} {:>8}", "recall (pairwise)", format!("{:.5}", q.recall()), "-", "-");
    println!("{:<44} {:>16} {:>22} {:>8}", "review items open", q.review_items, "-", "-");
    println!(
        "{:<44} {:>16} {:>22} {:>8}",
        "persons true / formed",
        format!("{} / {}", q.true_persons, q.predicted_persons),
        "-",
        "-"
    );
    println!(
        "{:<44} {:>16} {:>22} {:>8}",
        "pairs true / formed / correct",
        format!("{}/{}/{}", q.true_pairs, q.predicted_pairs, q.true_positive_pairs),
        "-",
        "-"
    );
    println!("{:<44} {:>16} {:>22} {:>8}", "records rejected", q.rejected, "-", "-");
    store_bench(&dir.path().join("store"));
}

/// The benchmark as written: an index of `persons` persons' records, then as many records
/// again (persons `persons/2 .. persons*3/2` seen by a second wave of providers: half overlap the
/// index, half are new) registered against it. Only the second phase is the figure; the peer (an
/// exact join on canonical kana, birth date and sex, parsing included) runs on its first chunk.
fn against_bench(persons: u64, chunk: u64) {
    let cfg = SynthConfig { patients: persons + persons / 2, ..Default::default() };
    let mut ev = Evaluation::new(MatchConfig::default());
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let (mut gen_s, mut index_records) = (0.0f64, 0usize);
    let mut start = 0;
    while start < persons {
        let end = (start + chunk).min(persons);
        let t = Instant::now();
        let (inputs, truth) = synth_inputs(&cfg, start..end);
        gen_s += t.elapsed().as_secs_f64();
        ev.add(&inputs, &truth);
        index_records += inputs.len();
        eprintln!("index: {index_records} records ({end} persons), peak RSS {} MiB", peak_rss_mib());
        start = end;
    }
    let (index_s, index_cpu) = (t0.elapsed().as_secs_f64() - gen_s, cpu_seconds() - c0);
    let (mut reg_s, mut reg_cpu, mut records, mut peer) = (0.0f64, 0.0f64, 0usize, (0usize, 0.0f64));
    let mut last = (0usize, 0.0f64, 0.0f64);
    let mut start = persons / 2;
    while start < persons / 2 + persons {
        let end = (start + chunk).min(persons / 2 + persons);
        let (inputs, truth) = synth_inputs_second_wave(&cfg, start..end);
        if peer.0 == 0 {
            let t = Instant::now();
            let mut naive: HashMap<(String, chrono::NaiveDate, &'static str), u32> = HashMap::new();
            for i in &inputs {
                if let Ok(id) = Identity::parse(i) {
                    let n = naive.len() as u32;
                    naive.entry((id.kana.joined(), id.birth, id.sex.code())).or_insert(n);
                }
            }
            peer = (inputs.len(), t.elapsed().as_secs_f64());
        }
        let (t, c) = (Instant::now(), cpu_seconds());
        ev.add(&inputs, &truth);
        let (s, cs) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
        reg_s += s;
        reg_cpu += cs;
        last = (inputs.len(), s, cs);
        records += inputs.len();
        eprintln!(
            "against {index_records}: {records} registered, {:.0}/s wall in this chunk, peak RSS {} MiB",
            inputs.len() as f64 / s,
            peak_rss_mib()
        );
        start = end;
    }
    let q = ev.quality();
    let n = records as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "kiban-identity MPI benchmark as the issue states it: {records} records registered against an index of \
         {index_records} ({persons} + {} persons, {cores} cores)",
        persons / 2
    );
    println!("{:<52} {:>16} {:>22} {:>8}", "measure", "kiban", "peer", "ratio");
    println!(
        "{:<52} {:>16.0} {:>22} {:>8}",
        "index build (records/s wall; CPU s)",
        index_records as f64 / index_s,
        format!("{index_cpu:.1} CPU s"),
        "-"
    );
    println!(
        "{:<52} {:>16.0} {:>22} {:>8.2}",
        "bulk registration against the index (/s, wall)",
        n / reg_s,
        format!("{:.0} exact-join", peer.0 as f64 / peer.1),
        (n / reg_s) / (peer.0 as f64 / peer.1)
    );
    println!(
        "{:<52} {:>16} {:>22} {:>8}",
        "  wall / CPU seconds (all threads)",
        format!("{reg_s:.1} / {reg_cpu:.1}"),
        "target 20000/s",
        format!("{:.2}", n / reg_s / 20_000.0)
    );
    println!("{:<52} {:>16.0} {:>22} {:>8}", "  per CPU-second (shared machine)", n / reg_cpu, "-", "-");
    println!(
        "{:<52} {:>16.0} {:>22} {:>8.0}",
        format!("  last chunk, index at {} records (/s wall)", index_records + records - last.0),
        last.0 as f64 / last.1,
        "1.4 E-PIX (published)",
        last.0 as f64 / last.1 / 1.4
    );
    println!("{:<52} {:>16} {:>22} {:>8}", "peak resident memory (MiB)", peak_rss_mib(), "-", "-");
    println!(
        "{:<52} {:>16} {:>22} {:>8}",
        "precision (pairwise, all records)",
        format!("{:.5}", q.precision()),
        "target 0.999",
        "-"
    );
    println!(
        "{:<52} {:>16} {:>22} {:>8}",
        "recall (pairwise, all records)",
        format!("{:.5}", q.recall()),
        "target 0.99",
        "-"
    );
    println!(
        "{:<52} {:>16} {:>22} {:>8}",
        "persons true / formed; review items open",
        format!("{} / {}; {}", q.true_persons, q.predicted_persons, q.review_items),
        "-",
        "-"
    );
    println!(
        "{:<52} {:>16} {:>22} {:>8}",
        "pairs true / formed / correct",
        format!("{}/{}/{}", q.true_pairs, q.predicted_pairs, q.true_positive_pairs),
        "-",
        "-"
    );
    println!(
        "{:<52} {:>16} {:>22} {:>8}",
        "records rejected; input generation (s)",
        format!("{}; {gen_s:.1}", q.rejected),
        "-",
        "-"
    );
}

/// The persistent store: registration into the vault (sealed, synced) in chunks, then reopen from the
/// snapshot (index rebuilt) in wall and CPU time with its memory, then (unless too large) the same
/// open replaying every frame. Scale: `KIBAN_BENCH_STORE_PERSONS` (default 100000).
fn store_bench(dir: &std::path::Path) {
    let store_persons: u64 =
        std::env::var("KIBAN_BENCH_STORE_PERSONS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let chunk: u64 = std::env::var("KIBAN_BENCH_CHUNK").ok().and_then(|v| v.parse().ok()).unwrap_or(500_000);
    let cfg = SynthConfig { patients: store_persons, ..Default::default() };
    let audit = MemoryAudit::default();
    let ks = KeyStore::create(&dir.join("keys")).expect("key store");
    let (mut reg_s, mut reg_cpu, mut n_records) = (0.0f64, 0.0f64, 0usize);
    let mut store =
        IdentityStore::open(&dir.join("identity"), ks, MatchConfig::default(), &audit, "bench").expect("store opens");
    let mut start = 0;
    while start < store_persons {
        let end = (start + chunk).min(store_persons);
        let (inputs, _) = synth_inputs(&cfg, start..end);
        let (t, c) = (Instant::now(), cpu_seconds());
        store.register(&audit, "bench", &inputs).expect("registers");
        reg_s += t.elapsed().as_secs_f64();
        reg_cpu += cpu_seconds() - c;
        n_records += inputs.len();
        eprintln!("store: {n_records} records registered, RSS {} MiB", rss_mib("VmRSS:"));
        start = end;
    }
    store.snapshot().expect("snapshot");
    let live_rss = rss_mib("VmRSS:");
    drop(store);
    let vault_mib = std::fs::metadata(dir.join("identity/vault.kbv")).map_or(0, |m| m.len() >> 20);
    let snap = kiban_identity::vault::snapshot_path(&dir.join("identity/vault.kbv"));
    let snap_mib = std::fs::metadata(&snap).map_or(0, |m| m.len() >> 20);
    // The open's own peak: the kernel's high-water mark is reset first (Linux: clear_refs 5).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base_rss = rss_mib("VmRSS:");
    let ks = KeyStore::open(&dir.join("keys"), None).expect("key store");
    let (t, c) = (Instant::now(), cpu_seconds());
    let store =
        IdentityStore::open(&dir.join("identity"), ks, MatchConfig::default(), &audit, "bench").expect("store reopens");
    let (reopen_s, reopen_cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    let (open_peak, open_rss) = (rss_mib("VmHWM:"), rss_mib("VmRSS:"));
    let snap_phases = (store.open_stats().vault_seconds, store.open_stats().index_seconds);
    assert_eq!(store.open_stats().snapshot, kiban_identity::vault::SnapshotUse::Used, "register wrote a snapshot");
    assert_eq!(store.mpi().record_count(), n_records);
    drop(store);
    println!("kiban-identity store benchmark ({store_persons} persons, {n_records} provider records)");
    println!("{:<52} {:>16} {:>22} {:>8}", "measure", "kiban", "peer", "ratio");
    println!(
        "{:<52} {:>16.0} {:>22} {:>8}",
        "store: register into the vault (records/s, wall)",
        n_records as f64 / reg_s,
        format!("{:.0}/s CPU", n_records as f64 / reg_cpu),
        "-"
    );
    println!("{:<52} {:>16} {:>22} {:>8}", "store: resident memory, live after register (MiB)", live_rss, "-", "-");
    println!(
        "{:<52} {:>16} {:>22} {:>8}",
        format!("store: reopen from snapshot (s wall / CPU, {snap_mib} MiB)"),
        format!("{reopen_s:.2} / {reopen_cpu:.2}"),
        "-",
        "-"
    );
    println!(
        "{:<52} {:>16} {:>22} {:>8}",
        "  vault / index rebuild (s wall)",
        format!("{:.2} / {:.2}", snap_phases.0, snap_phases.1),
        "-",
        "-"
    );
    println!(
        "{:<52} {:>16} {:>22} {:>8}",
        "  memory: before / peak / after open (MiB)",
        format!("{base_rss} / {open_peak} / {open_rss}"),
        "-",
        "-"
    );
    let replay = std::env::var("KIBAN_BENCH_REPLAY").map_or(n_records <= 2_000_000, |v| v == "1");
    if replay {
        // The same open without the snapshot: every frame decrypted, parsed and replayed.
        std::fs::remove_file(&snap).expect("snapshot");
        let ks = KeyStore::open(&dir.join("keys"), None).expect("key store");
        let (t, c) = (Instant::now(), cpu_seconds());
        let store = IdentityStore::open(&dir.join("identity"), ks, MatchConfig::default(), &audit, "bench")
            .expect("store reopens");
        let (replay_s, replay_cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
        assert_eq!(store.open_stats().snapshot, kiban_identity::vault::SnapshotUse::Absent);
        assert_eq!(store.mpi().record_count(), n_records);
        println!(
            "{:<52} {:>16} {:>22} {:>8}",
            format!("store: reopen, full replay (s wall / CPU, {vault_mib} MiB vault)"),
            format!("{replay_s:.2} / {replay_cpu:.2}"),
            format!("{reopen_cpu:.2} CPU s snapshot"),
            format!("{:.1}x", replay_cpu / reopen_cpu)
        );
    }
}

/// Opens a store kept by an earlier run in this fresh process: the open's wall and CPU time and its
/// memory, with nothing else ever allocated in the process (so the peak is the open's own).
fn open_bench(dir: &std::path::Path) {
    let audit = MemoryAudit::default();
    let base = rss_mib("VmRSS:");
    let ks = KeyStore::open(&dir.join("keys"), None).expect("key store");
    let (t, c) = (Instant::now(), cpu_seconds());
    let store =
        IdentityStore::open(&dir.join("identity"), ks, MatchConfig::default(), &audit, "bench").expect("store reopens");
    let (s, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    let n = store.mpi().record_count();
    let indexed = store.open_stats().index_from_snapshot;
    println!(
        "store open in a fresh process: {n} records, snapshot {:?}, index {}, {s:.2} s wall / {cpu:.2} s CPU \
         ({:.0} records per CPU-second); memory before / peak / after {base} / {} / {} MiB ({:.0} bytes per record)",
        store.open_stats().snapshot,
        if indexed { "read from the snapshot" } else { "rebuilt from the identities" },
        n as f64 / cpu,
        rss_mib("VmHWM:"),
        rss_mib("VmRSS:"),
        (rss_mib("VmRSS:") - base) as f64 * 1048576.0 / n as f64
    );
    if !indexed {
        // An older snapshot without the index state: write one, so the next open can read it.
        let mut store = store;
        let (t, c) = (Instant::now(), cpu_seconds());
        store.snapshot().expect("snapshot");
        println!(
            "snapshot rewritten with the index state in {:.2} s wall / {:.2} s CPU; run again to open from it",
            t.elapsed().as_secs_f64(),
            cpu_seconds() - c
        );
    }
}

/// CPU seconds (user + system, all threads) this process has used (Linux `/proc/self/stat`).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the command name; 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

/// A memory line of `/proc/self/status` (`VmRSS:`, `VmHWM:`) in MiB; 0 elsewhere.
fn rss_mib(line: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(line)).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |kb| kb / 1024)
}

/// Peak resident set size of this process (Linux), in MiB; 0 elsewhere.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |kb| kb / 1024)
}
