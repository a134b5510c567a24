//! Property tests on random tables and policies (A1, A5): the output is k-anonymous as claimed
//! (checked by an independent counter), no identifier column survives, the suppression limit holds.

mod common;

use common::{batch, class_sizes, names, policy};
use kiban_deid::{Input, Output, RunOptions, anonymize};
use proptest::prelude::*;

fn policy_text(k: u64, limit: f64, mask: &[usize], metric: &str) -> String {
    let mut s = format!(
        "version = 1\nname = \"prop\"\n[privacy]\nk = {k}\nsuppression_limit = {limit}\nmetric = \"{metric}\"\n\
[hierarchies]\nage = {{ builder = \"age\", widths = [5, 10, 20], top = 90 }}\npc = {{ builder = \"mask\", keep = [{}] }}\n\
d = {{ builder = \"date\" }}\ns = {{ builder = \"flat\" }}\n",
        mask.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
    );
    for (n, r, h) in [
        ("name", "identifier", ""),
        ("phone", "identifier", ""),
        ("age", "quasi_identifier", "age"),
        ("postal", "quasi_identifier", "pc"),
        ("day", "quasi_identifier", "d"),
        ("sex", "quasi_identifier", "s"),
        ("dx", "sensitive", ""),
    ] {
        s.push_str(&format!("[[columns]]\nname = \"{n}\"\nrole = \"{r}\"\n"));
        if !h.is_empty() {
            s.push_str(&format!("hierarchy = \"{h}\"\n"));
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn a5_random_tables_are_k_anonymous_within_the_suppression_limit(
        rows in prop::collection::vec((0u32..110, 0u32..1000, 1u32..29, 0u32..2, 0u32..5), 1..200),
        k in 2u64..8,
        limit in prop::sample::select(vec![0.0, 0.02, 0.1, 0.5]),
        metric in prop::sample::select(vec!["loss", "precision", "discernibility", "entropy"]),
        mask in prop::sample::select(vec![vec![5, 3, 1], vec![4], vec![6, 2]]),
    ) {
        let owned: Vec<Vec<String>> = rows
            .iter()
            .map(|&(a, p, d, s, x)| vec![
                format!("N{a}{p}"), format!("090-{p:04}"), a.to_string(), format!("{:03}-{:04}", p % 7, p),
                format!("2024-0{}-{d:02}", 1 + d % 3), ["M", "F"][s as usize].to_owned(), format!("D{x}"),
            ])
            .collect();
        let refs: Vec<Vec<&str>> = owned.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
        let input = Input::Batches(vec![batch(&["name", "phone", "age", "postal", "day", "sex", "dx"], &refs)]);
        let p = policy(&policy_text(k, limit, &mask, metric));
        let n = rows.len() as u64;
        match anonymize(&p, &input, &Output::Memory, &RunOptions::default()) {
            Ok(out) => {
                let r = &out.report;
                let cols = names(&out.batches);
                prop_assert!(!cols.contains(&"name".to_owned()) && !cols.contains(&"phone".to_owned()));
                prop_assert!(r.records_suppressed as f64 <= limit * n as f64 + 1e-9);
                prop_assert_eq!(r.records_out + r.records_suppressed, n);
                let sizes = class_sizes(&out.batches, &["age", "postal", "day", "sex"]);
                prop_assert!(sizes.iter().all(|&s| s >= k), "k={} sizes={:?}", k, sizes);
                if !sizes.is_empty() {
                    prop_assert_eq!(r.k_achieved, *sizes.iter().min().unwrap_or(&0));
                }
            }
            Err(kiban_deid::DeidError::NoSolution(_)) => {
                // Only when even the top node (one class of n) fails and suppressing all is not allowed.
                prop_assert!(n < k && (limit * n as f64) < n as f64);
            }
            Err(e) => prop_assert!(false, "unexpected error: {}", e),
        }
    }
}
