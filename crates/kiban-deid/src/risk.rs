//! Re-identification risk of a table given its equivalence-class sizes: prosecutor, journalist
//! and marketer risk, sample uniques, and population uniqueness estimated with Zayatz's (1991)
//! method under a binomial sampling approximation.

use serde::Serialize;

/// Risk figures of one table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Risk {
    /// Records counted.
    pub records: u64,
    /// Equivalence classes.
    pub classes: u64,
    /// Smallest class size (the achieved k).
    pub min_class_size: u64,
    /// Mean class size.
    pub avg_class_size: f64,
    /// Prosecutor: highest record risk, 1 / smallest class size.
    pub prosecutor_highest: f64,
    /// Prosecutor: average record risk, classes / records.
    pub prosecutor_average: f64,
    /// Share of records whose prosecutor risk exceeds the threshold.
    pub records_at_risk: f64,
    /// The threshold used for `records_at_risk`.
    pub risk_threshold: f64,
    /// Journalist: highest risk 1 / min F̂, with F̂ = f / sampling fraction the estimated population class size.
    pub journalist_highest: f64,
    /// Marketer: expected share of records re-identified, Σ f/F̂ / records.
    pub marketer: f64,
    /// Share of records alone in their class.
    pub sample_uniques: f64,
    /// Estimated share of population records that are population uniques (Zayatz).
    pub population_uniques: f64,
    /// Name of the population model.
    pub population_model: &'static str,
    /// Sampling fraction assumed.
    pub sampling_fraction: f64,
}

/// Computes the risk of a table from its class sizes (empty classes ignored).
pub fn risk(class_sizes: &[u64], sampling_fraction: f64, threshold: f64) -> Risk {
    let sizes: Vec<u64> = class_sizes.iter().copied().filter(|&s| s > 0).collect();
    let n: u64 = sizes.iter().sum();
    let j = sizes.len() as u64;
    let pi = sampling_fraction;
    let nf = n.max(1) as f64;
    let min = sizes.iter().copied().min().unwrap_or(0);
    let f_hat = |f: u64| (f as f64 / pi).max(f as f64);
    let at_risk: u64 = sizes.iter().filter(|&&s| 1.0 / s as f64 > threshold).sum();
    let uniques = sizes.iter().filter(|&&s| s == 1).count() as u64;
    // Zayatz: P(population unique | sample unique) with P(F = i) taken from the sample's class-size
    // distribution and P(f = 1 | F = i) ≈ i·π·(1−π)^(i−1).
    let p_pop_unique = if uniques == 0 {
        0.0
    } else {
        let mut by_size = std::collections::BTreeMap::<u64, u64>::new();
        for &s in &sizes {
            *by_size.entry(s).or_default() += 1;
        }
        let term = |i: u64| i as f64 * pi * (1.0 - pi).powi(i as i32 - 1);
        let denom: f64 = by_size.iter().map(|(&i, &u)| u as f64 / j as f64 * term(i)).sum();
        let num = uniques as f64 / j as f64 * term(1);
        if denom > 0.0 { num / denom } else { 0.0 }
    };
    let population = n as f64 / pi;
    Risk {
        records: n,
        classes: j,
        min_class_size: min,
        avg_class_size: if j > 0 { n as f64 / j as f64 } else { 0.0 },
        prosecutor_highest: if min > 0 { 1.0 / min as f64 } else { 0.0 },
        prosecutor_average: j as f64 / nf,
        records_at_risk: at_risk as f64 / nf,
        risk_threshold: threshold,
        journalist_highest: if min > 0 { 1.0 / f_hat(min) } else { 0.0 },
        marketer: sizes.iter().map(|&f| f as f64 / f_hat(f)).sum::<f64>() / nf,
        sample_uniques: uniques as f64 / nf,
        population_uniques: if population > 0.0 { uniques as f64 * p_pop_unique / population } else { 0.0 },
        population_model: "Zayatz (binomial approximation)",
        sampling_fraction: pi,
    }
}

/// Histogram of class sizes in buckets 1, 2, 3–4, 5–9, 10–19, 20–49, 50–99, 100+ (classes per bucket).
pub fn class_size_histogram(class_sizes: &[u64]) -> Vec<(String, u64)> {
    const B: [(u64, u64, &str); 8] = [
        (1, 1, "1"),
        (2, 2, "2"),
        (3, 4, "3-4"),
        (5, 9, "5-9"),
        (10, 19, "10-19"),
        (20, 49, "20-49"),
        (50, 99, "50-99"),
        (100, u64::MAX, "100+"),
    ];
    B.iter()
        .map(|&(lo, hi, l)| (l.to_owned(), class_sizes.iter().filter(|&&s| s >= lo && s <= hi).count() as u64))
        .collect()
}
