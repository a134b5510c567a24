//! Tuning aid: prints the spans found in each argument.
fn main() {
    for a in std::env::args().skip(1) {
        for s in kiban_deid::text::detect(&a) {
            println!("{:?} {:?}", s.tag, &a[s.start..s.end]);
        }
    }
}
