//! Text de-identification benchmark: precision/recall/F1 per tag on generated notes, and MB/s.

fn main() {
    let notes = kiban_deid::textgen::generate(7, 2_000);
    let r = kiban_deid::textgen::evaluate(&notes);
    print!("{}", r.table());
}
