//! Tuning aid: spans that overlap a gold span of the same tag without matching it exactly.
fn main() {
    let notes = if std::env::args().nth(1).as_deref() == Some("heldout") {
        kiban_deid::textgen_heldout::generate(11, 300)
    } else {
        kiban_deid::textgen::generate(7, 300)
    };
    let mut n = 0;
    for note in &notes {
        let p = kiban_deid::text::detect(&note.text);
        for g in &note.gold {
            if let Some(x) = p.iter().find(|x| x.tag == g.tag && x.start < g.end && g.start < x.end && *x != g) {
                println!("{:?} gold {:?} got {:?}", g.tag, &note.text[g.start..g.end], &note.text[x.start..x.end]);
                n += 1;
            }
        }
        if n > 400 {
            break;
        }
    }
}
