//! `cargo bench -p kiban-formats`: the readers' throughput next to Python's csv and hl7 (the same
//! figures as `kiban bench formats`). `KIBAN_BENCH_PATIENTS` sets the population (default 5,000).
//! `KIBAN_BENCH_STREAM_GB=10` instead streams 10 GB of UKE and of CSV, made on the fly, into
//! Parquet and prints throughput and the resident set (bounded memory, issue 5 item 7);
//! `KIBAN_BENCH_STREAM_SAME_PEOPLE=1` repeats the same persons instead of new ones.

fn main() {
    let patients = std::env::var("KIBAN_BENCH_PATIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    if let Some(gb) = std::env::var("KIBAN_BENCH_STREAM_GB").ok().and_then(|v| v.parse::<f64>().ok()) {
        let same = std::env::var("KIBAN_BENCH_STREAM_SAME_PEOPLE").is_ok_and(|v| v == "1");
        match kiban_formats::bench_stream::run(gb, patients, same) {
            Ok(r) => print!("{}", kiban_formats::bench_stream::table(&r)),
            Err(e) => {
                eprintln!("bench failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| "target".into());
    match kiban_formats::bench::run(patients, None, &target.join("peers-venv-formats")) {
        Ok(r) => print!("{}", r.table()),
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}
