//! Tuning aid: evaluation tables of both synthetic sets and the first errors of one of them.
//! `cargo run -p kiban-deid --example deid_errors -- [heldout|tuning] [notes] [errors]`

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let which = a.get(1).map_or("heldout", String::as_str);
    let n: usize = a.get(2).and_then(|x| x.parse().ok()).unwrap_or(500);
    let lim: usize = a.get(3).and_then(|x| x.parse().ok()).unwrap_or(60);
    let notes = if which == "tuning" {
        kiban_deid::textgen::generate(7, n)
    } else {
        kiban_deid::textgen_heldout::generate(11, n)
    };
    print!("{}", kiban_deid::textgen::evaluate(&notes).table());
    for e in kiban_deid::textgen::errors(&notes, lim) {
        println!("{e}");
    }
}
