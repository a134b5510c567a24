//! Policy validation and hashing (issue 6, item 1).

use std::collections::BTreeMap;
use std::path::Path;

use kiban_deid::Policy;

const BASE: &str = r#"
version = 1
name = "p"
[privacy]
k = 5
[hierarchies]
age = { builder = "age" }
[[columns]]
name = "age"
role = "quasi_identifier"
hierarchy = "age"
[[columns]]
name = "name"
role = "identifier"
"#;

fn parse(text: &str) -> Result<Policy, String> {
    Policy::from_toml(text, Path::new(env!("CARGO_MANIFEST_DIR")), &BTreeMap::new()).map_err(|e| e.to_string())
}

#[test]
fn a1_column_without_role_is_an_error() {
    let err = parse(&format!("{BASE}[[columns]]\nname = \"memo\"\n")).unwrap_err();
    assert!(err.contains("column memo") && err.contains("has no role"), "{err}");
}

#[test]
fn a1_identifier_cannot_be_kept() {
    let err = parse(&BASE.replace("role = \"identifier\"", "role = \"identifier\"\ntreatment = \"keep\"")).unwrap_err();
    assert!(err.contains("column name") && err.contains("rule: one of delete"), "{err}");
}

#[test]
fn a5_mistakes_name_the_column_and_rule() {
    let cases = [
        (BASE.replace("hierarchy = \"age\"", "hierarchy = \"nope\""), "column age"),
        (BASE.replace("role = \"quasi_identifier\"", "role = \"qi\""), "unknown role"),
        (BASE.replace("k = 5", "k = 1"), "privacy.k"),
        (BASE.replace("k = 5", "k = 5\nsuppression_limit = 1.5"), "privacy.suppression_limit"),
        (BASE.replace("version = 1", "version = 9"), "version 9"),
        (BASE.replace("builder = \"age\"", "builder = \"mask\", keep = [1, 2]"), "hierarchy age"),
        (format!("{BASE}[[columns]]\nname = \"age\"\nrole = \"keep\"\n"), "declared twice"),
        (
            BASE.replace("k = 5", "k = 5\nl_diversity = { column = \"age\", l = 2 }"),
            "must be declared with role sensitive",
        ),
    ];
    for (text, want) in cases {
        let err = parse(&text).expect_err(want);
        assert!(err.contains(want), "expected {want:?} in {err}");
    }
}

#[test]
fn a6_policy_hash_is_canonical() {
    let a = parse(BASE).expect("valid");
    let reformatted = BASE
        .replace("age = { builder = \"age\" }", "\n[hierarchies.age]\nbuilder = \"age\"\n")
        .replace("[hierarchies]\n", "");
    let b = parse(&format!("# a comment\n{reformatted}")).expect("valid");
    assert_eq!(a.hash, b.hash, "comments and layout do not change the hash");
    let c = parse(&BASE.replace("k = 5", "k = 6")).expect("valid");
    assert_ne!(a.hash, c.hash);
    assert_eq!(a.hash.len(), 64);
}

#[test]
fn a5_example_policies_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for f in ["adult.toml", "synth_research.toml"] {
        let p = Policy::load(&dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!p.quasi_identifiers().is_empty(), "{f}");
    }
}
