//! The lattice search is optimal: on random small tables its choice equals the best anonymous node
//! found by brute force over every node (A5), and it handles 16 quasi-identifiers.

use kiban_deid::policy::{LDiversity, LVariant, Metric, Privacy, SuppressedRecords, TCloseness};
use kiban_deid::search::{FreqBuilder, Lattice, QiDomain};
use proptest::prelude::*;

fn privacy(k: u64, limit: f64, metric: Metric) -> Privacy {
    Privacy {
        k,
        suppression_limit: limit,
        metric,
        l_diversity: None,
        t_closeness: None,
        suppressed_records: SuppressedRecords::Remove,
        local_recoding: false,
        max_lattice_nodes: 2_000_000,
        sampling_fraction: 1.0,
        risk_threshold: 0.2,
    }
}

/// A domain of `n` values with a binary-tree-like hierarchy of `levels` levels.
fn domain(name: &str, n: u32, levels: usize) -> QiDomain {
    let chains: Vec<Vec<String>> = (0..n)
        .map(|v| (0..levels).map(|l| if l + 1 == levels { "*".to_owned() } else { format!("{}", v >> l) }).collect())
        .collect();
    QiDomain::new(name, &chains)
}

fn table_with_sensitive(rows: &[(Vec<u32>, u32)]) -> kiban_deid::search::FreqTable {
    let mut b = FreqBuilder::new(rows[0].0.len(), true);
    for (r, s) in rows {
        b.add(r, Some(*s));
    }
    b.finish()
}

fn table(rows: &[Vec<u32>]) -> kiban_deid::search::FreqTable {
    let mut b = FreqBuilder::new(rows[0].len(), false);
    for r in rows {
        b.add(r, None);
    }
    b.finish()
}

fn all_nodes(heights: &[usize]) -> Vec<Vec<u8>> {
    let mut out = vec![vec![]];
    for &h in heights {
        out = out.into_iter().flat_map(|p: Vec<u8>| (0..h as u8).map(move |l| [p.clone(), vec![l]].concat())).collect();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn a5_search_finds_the_brute_force_optimum(
        rows in prop::collection::vec(prop::collection::vec(0u32..6, 3), 8..60),
        k in 2u64..5,
        limit in prop::sample::select(vec![0.0, 0.05, 0.2]),
        metric in prop::sample::select(vec![Metric::Loss, Metric::Precision, Metric::Discernibility, Metric::Entropy]),
    ) {
        let doms = vec![domain("a", 6, 4), domain("b", 6, 3), domain("c", 6, 2)];
        let t = table(&rows);
        let p = privacy(k, limit, metric);
        let mut lat = Lattice::new(&t, &doms, &p);
        let found = lat.search();
        // Chain probing (on by default for large tables) must reach the same optimum.
        let mut probing = Lattice::new(&t, &doms, &p);
        probing.set_probing(true);
        let probed = probing.search();
        match (&probed, &found) {
            (Some(a), Some(b)) => prop_assert!(a.best.anonymous && (a.best.loss - b.best.loss).abs() < 1e-6),
            (None, None) => {}
            _ => prop_assert!(false, "probing changed whether a solution exists"),
        }
        let mut best: Option<f64> = None;
        for node in all_nodes(&[4, 3, 2]) {
            let e = lat.evaluate(&node);
            if e.anonymous {
                best = Some(best.map_or(e.loss, |b: f64| b.min(e.loss)));
            }
        }
        match (found, best) {
            (Some(f), Some(b)) => {
                prop_assert!(f.best.anonymous);
                prop_assert!((f.best.loss - b).abs() < 1e-6, "search {} vs brute force {}", f.best.loss, b);
                prop_assert!(f.optimal);
            }
            (None, None) => {}
            (f, b) => prop_assert!(false, "search {:?} vs brute force {:?}", f.map(|x| x.best.loss), b),
        }
    }
}

#[test]
fn a5_sixteen_quasi_identifiers_exhaustive_and_heuristic() {
    let q = 16;
    let doms: Vec<QiDomain> = (0..q).map(|i| domain(&format!("q{i}"), 4, 3)).collect();
    let mut rows = Vec::new();
    let mut x: u64 = 7;
    for _ in 0..200 {
        let r: Vec<u32> = (0..q)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) % 4) as u32
            })
            .collect();
        rows.push(r);
    }
    let t = table(&rows);
    // 3^16 = 43M nodes: above the limit, so the greedy heuristic runs and must still be k-anonymous.
    let p = privacy(5, 0.02, Metric::Loss);
    let mut lat = Lattice::new(&t, &doms, &p);
    let out = lat.search().expect("top node is anonymous");
    assert!(!out.optimal);
    assert!(out.best.anonymous);
    let kept_min = out.best.class_sizes.iter().zip(&out.best.failing).filter(|(_, f)| !**f).map(|(s, _)| *s).min();
    assert!(kept_min.is_none_or(|m| m >= 5));
    assert!(out.best.suppressed <= 4);
    // With a 2-level hierarchy per column the lattice is 2^16 = 65,536 nodes: searched exhaustively.
    let doms2: Vec<QiDomain> = (0..q).map(|i| domain(&format!("q{i}"), 2, 2)).collect();
    let rows2: Vec<Vec<u32>> = rows.iter().map(|r| r.iter().map(|v| v % 2).collect()).collect();
    let t2 = table(&rows2);
    let mut lat2 = Lattice::new(&t2, &doms2, &p);
    let out2 = lat2.search().expect("solution");
    assert!(out2.optimal && out2.best.anonymous);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// The search rolls classes up from evaluated specializations (with their sensitive
    /// histograms); with ℓ-diversity or t-closeness it still equals brute force from the table.
    #[test]
    fn a5_rollup_with_l_diversity_and_t_closeness_equals_brute_force(
        rows in prop::collection::vec((prop::collection::vec(0u32..6, 3), 0u32..4), 8..60),
        k in 2u64..4,
        limit in prop::sample::select(vec![0.0, 0.1, 0.3]),
        criterion in 0usize..3,
    ) {
        let doms = vec![domain("a", 6, 4), domain("b", 6, 3), domain("c", 6, 2)];
        let t = table_with_sensitive(&rows);
        let mut p = privacy(k, limit, Metric::Loss);
        match criterion {
            0 => p.l_diversity = Some(LDiversity { column: "s".into(), l: 2.0, variant: LVariant::Distinct }),
            1 => p.l_diversity = Some(LDiversity { column: "s".into(), l: 1.5, variant: LVariant::Entropy }),
            _ => p.t_closeness = Some(TCloseness { column: "s".into(), t: 0.4 }),
        }
        let mut lat = Lattice::new(&t, &doms, &p);
        lat.set_probing(criterion < 2);
        let found = lat.search();
        let mut best: Option<f64> = None;
        for node in all_nodes(&[4, 3, 2]) {
            let e = lat.evaluate(&node);
            if e.anonymous {
                best = Some(best.map_or(e.loss, |b: f64| b.min(e.loss)));
            }
        }
        match (found, best) {
            (Some(f), Some(b)) => prop_assert!((f.best.loss - b).abs() < 1e-6, "search {} vs brute force {}", f.best.loss, b),
            (None, None) => {}
            (f, b) => prop_assert!(false, "search {:?} vs brute force {:?}", f.map(|x| x.best.loss), b),
        }
    }

    /// Local recoding releases some of what the global solution suppresses, never more than it
    /// suppressed, and every released class (compared by released values) still has k records.
    #[test]
    fn a5_local_recoding_keeps_k_and_suppresses_no_more(
        rows in prop::collection::vec(prop::collection::vec(0u32..6, 3), 8..80),
        k in 2u64..5,
    ) {
        let doms = vec![domain("a", 6, 4), domain("b", 6, 3), domain("c", 6, 2)];
        let t = table(&rows);
        let p = privacy(k, 0.3, Metric::Loss);
        let mut lat = Lattice::new(&t, &doms, &p);
        let Some(out) = lat.search() else { return Ok(()) };
        let global = lat.global(&out.best);
        let local = lat.local_recode(&out.best, 8);
        prop_assert!(local.suppressed <= global.suppressed);
        // A recoded cell costs at most what a suppressed one does under Loss.
        prop_assert!(local.loss <= global.loss + 1e-9, "{} > {}", local.loss, global.loss);
        prop_assert_eq!(local.suppressed + local.class_sizes.iter().sum::<u64>(), t.records());
        // Independent count over released labels.
        let mut m = std::collections::HashMap::<Vec<String>, u64>::new();
        for ti in 0..t.tuples() {
            if let Some(node) = local.node_of[ti] {
                let lv = &local.nodes[node as usize];
                let key: Vec<String> = (0..3).map(|c| {
                    let l = lv[c] as usize;
                    doms[c].labels[l][doms[c].map[l][t.code(ti, c) as usize] as usize].clone()
                }).collect();
                *m.entry(key).or_default() += t.counts[ti];
            }
        }
        prop_assert!(m.values().all(|&s| s >= k), "{:?}", m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// With a floor (the levels a table folded by the tuple budget still tells apart), the search
    /// finds the best node at or above it, and it claims the global optimum only when that is true.
    #[test]
    fn a5_search_above_a_floor_is_the_brute_force_best_there_and_claims_optimality_soundly(
        rows in prop::collection::vec(prop::collection::vec(0u32..6, 3), 8..60),
        k in 2u64..5,
        limit in prop::sample::select(vec![0.0, 0.05, 0.2]),
        metric in prop::sample::select(vec![Metric::Loss, Metric::Precision, Metric::Discernibility, Metric::Entropy]),
        floor in (0u8..3, 0u8..2),
        probing in any::<bool>(),
    ) {
        let floor = vec![floor.0, floor.1, 0];
        let doms = vec![domain("a", 6, 4), domain("b", 6, 3), domain("c", 6, 2)];
        let t = table(&rows);
        let p = privacy(k, limit, metric);
        let mut lat = Lattice::new(&t, &doms, &p);
        lat.set_floor(&floor);
        if probing {
            lat.set_probing(true);
        }
        let found = lat.search();
        let (mut above, mut global): (Option<f64>, Option<f64>) = (None, None);
        for node in all_nodes(&[4, 3, 2]) {
            let e = lat.evaluate(&node);
            if e.anonymous {
                global = Some(global.map_or(e.loss, |b: f64| b.min(e.loss)));
                if node.iter().zip(&floor).all(|(l, f)| l >= f) {
                    above = Some(above.map_or(e.loss, |b: f64| b.min(e.loss)));
                }
            }
        }
        match (found, above) {
            (Some(f), Some(b)) => {
                prop_assert!(f.best.levels.iter().zip(&floor).all(|(l, x)| l >= x), "below the floor");
                prop_assert!((f.best.loss - b).abs() < 1e-6, "search {} vs best above the floor {}", f.best.loss, b);
                let g = global.expect("an anonymous node exists");
                if f.optimal {
                    prop_assert!((f.best.loss - g).abs() < 1e-6, "claimed optimal: {} vs global {}", f.best.loss, g);
                } else {
                    let u = f.unexplored_bound.expect("a bound when not optimal");
                    prop_assert!(u < f.best.loss && u <= g + 1e-6, "bound {} loss {} global {}", u, f.best.loss, g);
                }
            }
            (None, None) => {}
            (f, b) => prop_assert!(false, "search {:?} vs brute force {:?}", f.map(|x| x.best.loss), b),
        }
    }
}
