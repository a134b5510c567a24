//! Text de-identification benchmark: precision/recall/F1 per tag and MB/s per core on the tuning
//! and held-out synthetic sets, with Presidio's pattern recognizers on the same notes when its venv
//! exists (`scripts/presidio-venv.sh`). `cargo bench -p kiban-deid --bench text [-- notes]`.

fn main() {
    let n = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2_000);
    print!("{}", kiban_deid::textgen::bench_report(7, n, None));
}
