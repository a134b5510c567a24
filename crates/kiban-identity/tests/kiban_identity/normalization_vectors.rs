//! The published normalization test vectors (`tests/data/normalization.tsv`), checked row by row.
//! `UPDATE_EXPECT=1` rewrites the expected column from the implementation (review the diff).

use kiban_identity::normalize::canonical;

fn render(kind: &str, input: &str) -> String {
    match canonical(kind, input) {
        Ok(s) => s,
        Err(e) => format!("ERROR {} {}", e.field, e.rule_id),
    }
}

#[test]
fn normalization_vectors_match_the_published_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/normalization.tsv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut failures = vec![];
    let mut rows = 0;
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if line.starts_with('#') || cols[0] == "kind" {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let [kind, input, expected, rule] = cols[..] else { panic!("row needs 4 columns: {line:?}") };
        rows += 1;
        let actual = render(kind, input);
        if actual != expected {
            failures.push(format!("{kind} {input:?}: expected {expected:?}, got {actual:?} ({rule})"));
        }
        out.push_str(&format!("{kind}\t{input}\t{actual}\t{rule}\n"));
    }
    assert!(rows > 50, "vector file has {rows} rows");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(path, out).unwrap();
        return;
    }
    assert!(failures.is_empty(), "{} vectors differ:\n{}", failures.len(), failures.join("\n"));
}
