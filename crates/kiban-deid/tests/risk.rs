//! Risk figures against hand-computed values (issue 6, item 6).

use kiban_deid::risk::{class_size_histogram, risk};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a5_prosecutor_risk_is_one_over_class_size() {
    // Classes of 1, 2 and 3 records: n = 6, J = 3.
    let r = risk(&[1, 2, 3], 1.0, 0.4);
    assert_eq!((r.records, r.classes, r.min_class_size), (6, 3, 1));
    assert!(close(r.prosecutor_highest, 1.0));
    // Average of 1/f over records: (1·1 + 2·½ + 3·⅓)/6 = 3/6.
    assert!(close(r.prosecutor_average, 0.5));
    // Records with risk > 0.4: the class of 1 (risk 1) and of 2 (risk 0.5) → 3 of 6.
    assert!(close(r.records_at_risk, 0.5));
    assert!(close(r.sample_uniques, 1.0 / 6.0));
    // π = 1: the sample is the population, journalist = prosecutor, marketer = J/n.
    assert!(close(r.journalist_highest, 1.0));
    assert!(close(r.marketer, 0.5));
    assert!(close(r.population_uniques, 1.0 / 6.0));
}

#[test]
fn a5_journalist_marketer_and_zayatz_with_a_sampling_fraction() {
    let r = risk(&[1, 2, 3], 0.5, 0.2);
    // F̂ = f/π = 2, 4, 6.
    assert!(close(r.journalist_highest, 0.5));
    // Marketer: (1/2 + 2/4 + 3/6) / 6 = 0.25.
    assert!(close(r.marketer, 0.25));
    // Zayatz: P(f=1|F=i) ≈ i·π·(1-π)^(i-1) = 0.5, 0.5, 0.375; P(F=i) = 1/3 each.
    // P(F=1|f=1) = (0.5/3) / ((0.5+0.5+0.375)/3) = 0.5/1.375; one sample unique; N = 12.
    assert!(close(r.population_uniques, (0.5 / 1.375) / 12.0), "{}", r.population_uniques);
}

#[test]
fn a5_k_anonymous_table_has_no_uniques_and_bounded_risk() {
    let r = risk(&[5, 5, 10], 1.0, 0.2);
    assert!(close(r.prosecutor_highest, 0.2));
    assert!(close(r.records_at_risk, 0.0), "risk 0.2 is not above the threshold 0.2");
    assert!(close(r.sample_uniques, 0.0) && close(r.population_uniques, 0.0));
    assert!(close(r.avg_class_size, 20.0 / 3.0));
}

#[test]
fn a5_class_size_histogram_buckets() {
    let h = class_size_histogram(&[1, 1, 2, 4, 5, 150]);
    let get = |k: &str| h.iter().find(|(l, _)| l == k).map(|(_, c)| *c);
    assert_eq!(
        (get("1"), get("2"), get("3-4"), get("5-9"), get("100+")),
        (Some(2), Some(1), Some(1), Some(1), Some(1))
    );
}
