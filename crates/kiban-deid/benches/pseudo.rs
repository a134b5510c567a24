//! Structured pseudonymization benchmark: rows per second per core on a 20-column claims table.
//! `cargo bench -p kiban-deid --bench pseudo [-- rows]`.

fn main() {
    let rows = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2_000_000);
    match kiban_deid::pseudo_bench::report(rows) {
        Ok(s) => print!("{s}"),
        Err(e) => eprintln!("pseudo bench failed: {e}"),
    }
}
