//! Linkage key vectors (`tests/data/linkage.tsv`): fixed outputs under a fixed public test key, and
//! the property that different spellings of one person give one key (L1, L2).
//! `UPDATE_EXPECT=1` rewrites the id1/id2 columns from the implementation.

use std::collections::HashMap;

use kiban_identity::linkage::{IndividualNumber, test_vector_keyer};
use kiban_identity::normalize::{KanaName, birth_date};
use kiban_model::person::Sex;

fn keys(cols: &[&str]) -> (String, String) {
    let k = test_vector_keyer();
    let r = || -> Result<(String, String), String> {
        let birth = birth_date(cols[2]).map_err(|e| format!("ERROR {} {}", e.field, e.rule_id))?;
        let sex = Sex::parse(cols[3]).map_err(|_| "ERROR sex".to_string())?;
        let id1 = KanaName::parse("name_kana", cols[1])
            .and_then(|kana| k.id1(&kana, birth, sex))
            .map_or_else(|e| format!("ERROR {} {}", e.field, e.rule_id), |v| v.to_string());
        let id2 = IndividualNumber::parse(cols[4], cols[5], cols[6], cols[7])
            .and_then(|n| k.id2(&n, birth, sex))
            .map_or_else(|e| format!("ERROR {} {}", e.field, e.rule_id), |v| v.to_string());
        Ok((id1, id2))
    };
    r().unwrap_or_else(|e| (e.clone(), e))
}

#[test]
fn l2_linkage_key_is_identical_across_sources() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/linkage.tsv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut failures = vec![];
    let mut by_person: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if line.starts_with('#') || cols[0] == "person" {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        assert_eq!(cols.len(), 10, "{line:?}");
        let (id1, id2) = keys(&cols);
        if (id1.as_str(), id2.as_str()) != (cols[8], cols[9]) {
            failures.push(format!("{line:?}: got {id1} {id2}"));
        }
        if cols[0] != "X" {
            by_person.entry(cols[0].to_owned()).or_default().push((id1.clone(), id2.clone()));
        } else {
            assert!(id1.starts_with("ERROR") || id2.starts_with("ERROR"), "bad input must not make a key: {line}");
        }
        out.push_str(&format!("{}\t{id1}\t{id2}\n", cols[..8].join("\t")));
    }
    // Same person → same keys; different persons → different keys (twins and near-misses included).
    for (p, ks) in &by_person {
        assert!(ks.windows(2).all(|w| w[0] == w[1]), "person {p} has differing keys: {ks:?}");
        assert!(!ks[0].0.starts_with("ERROR") && !ks[0].1.starts_with("ERROR"), "{p}: {ks:?}");
    }
    let mut firsts: Vec<_> = by_person.values().map(|v| v[0].0.clone()).collect();
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), by_person.len(), "distinct persons must have distinct ID1");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(path, out).unwrap();
        return;
    }
    assert!(failures.is_empty(), "{} vectors differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn l2_id1_input_layout_is_exactly_as_documented() {
    let kana = KanaName::parse("name_kana", "ﾔﾏﾀﾞ ﾀﾛｳ").unwrap();
    let birth = birth_date("1980-04-01").unwrap();
    let bytes = kiban_identity::linkage::id1_input(&kana, birth, Sex::Male).unwrap();
    let mut want = b"kiban/linkage/id1/v1\0".to_vec();
    want.extend_from_slice("ヤマダタロウ".as_bytes());
    want.extend_from_slice(b"\x1f19800401\x1f1");
    assert_eq!(bytes, want);
}
