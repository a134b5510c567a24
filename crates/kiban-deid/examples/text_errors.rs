//! Prints the text de-identifier's misses and false positives on generated notes (for tuning).

fn main() {
    let seed = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(11);
    let notes = kiban_deid::textgen::generate(seed, 300);
    for e in kiban_deid::textgen::errors(&notes, 80) {
        println!("{e}");
    }
    print!("{}", kiban_deid::textgen::evaluate(&notes).table());
}
