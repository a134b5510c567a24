//! MPI benchmark: bulk registration throughput, pseudonym tokens per second per core, and linkage
//! quality on the synthetic population. Each figure is printed beside a named peer measured in the
//! same run. Scale: `KIBAN_BENCH_PERSONS` (default 300000 persons ≈ 520000 provider records).
//!
//! Run: `cargo bench -p kiban-identity --bench mpi`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use kiban_identity::eval::{Evaluation, synth_inputs};
use kiban_identity::identity::Identity;
use kiban_identity::keystore::KeyStore;
use kiban_identity::mpi::MatchConfig;
use kiban_model::id::PersonKey;
use kiban_model::synth::SynthConfig;
use sha2::{Digest, Sha256};

fn main() {
    let persons: u64 = std::env::var("KIBAN_BENCH_PERSONS").ok().and_then(|v| v.parse().ok()).unwrap_or(300_000);
    let cfg = SynthConfig { patients: persons, ..Default::default() };
    let t = Instant::now();
    let (inputs, truth) = synth_inputs(&cfg, 0..persons);
    let gen_s = t.elapsed().as_secs_f64();

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

    let mut ev = Evaluation::new(MatchConfig::default());
    let t = Instant::now();
    ev.add(&inputs, &truth);
    let reg_s = t.elapsed().as_secs_f64();
    let q = ev.quality();

    // Tokens: one core, HMAC-SHA-256 with the key state precomputed; peer: unkeyed SHA-256 of the same bytes.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ks = KeyStore::create(&dir.path().join("keys")).expect("key store");
    let key = ks.domain_key("bench").expect("domain key");
    let n_tok = 5_000_000u64;
    let t = Instant::now();
    let mut acc = 0u8;
    for i in 0..n_tok {
        acc ^= key.token(PersonKey::from_u64(i)).0[0];
    }
    let tok_s = t.elapsed().as_secs_f64();
    black_box(acc);
    let t = Instant::now();
    for i in 0..n_tok {
        let mut h = Sha256::new();
        h.update(b"kiban/pseudonym/v1\0");
        h.update(i.to_be_bytes());
        acc ^= h.finalize()[0];
    }
    let sha_s = t.elapsed().as_secs_f64();
    black_box(acc);

    let n = inputs.len() as f64;
    println!(
        "kiban-identity MPI benchmark ({} persons, {} provider records, {} cores)",
        persons,
        inputs.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("{:<44} {:>16} {:>22} {:>8}", "measure", "kiban", "peer", "ratio");
    println!("{:<44} {:>16} {:>22} {:>8}", "synthetic input generation (s)", format!("{gen_s:.2}"), "-", "-");
    println!(
        "{:<44} {:>16.0} {:>22} {:>8.2}",
        "bulk registration (identities/s)",
        n / reg_s,
        format!("{:.0} exact-join", n / naive_s),
        (n / reg_s) / (n / naive_s)
    );
    println!(
        "{:<44} {:>16.0} {:>22} {:>8.2}",
        "pseudonym tokens per second, one core",
        n_tok as f64 / tok_s,
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
}
