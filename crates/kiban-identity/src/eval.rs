//! Linkage quality on the synthetic population: registers every provider identity into a fresh MPI
//! and measures pairwise precision and recall against the generator's ground truth.

use std::collections::HashMap;

use arrow::array::{Array, StringArray, UInt64Array};
use arrow::record_batch::RecordBatch;
use kiban_model::synth::{
    Person, ProviderIdentity, SynthChunk, SynthConfig, SynthTable, person, provider_identity, providers,
};

use crate::identity::IdentityInput;
use crate::mpi::{MatchConfig, Mpi, Outcome};

/// Pairwise linkage quality.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MatchQuality {
    /// Provider records offered.
    pub records: u64,
    /// Records rejected at parsing.
    pub rejected: u64,
    /// Distinct true persons.
    pub true_persons: u64,
    /// Persons the MPI formed.
    pub predicted_persons: u64,
    /// Same-person pairs the MPI formed that are true.
    pub true_positive_pairs: u64,
    /// Same-person pairs the MPI formed.
    pub predicted_pairs: u64,
    /// True same-person pairs.
    pub true_pairs: u64,
    /// Review items left open.
    pub review_items: u64,
}

impl MatchQuality {
    /// TP / predicted pairs (1 when nothing was linked).
    pub fn precision(&self) -> f64 {
        if self.predicted_pairs == 0 { 1.0 } else { self.true_positive_pairs as f64 / self.predicted_pairs as f64 }
    }
    /// TP / true pairs (1 when there is nothing to link).
    pub fn recall(&self) -> f64 {
        if self.true_pairs == 0 { 1.0 } else { self.true_positive_pairs as f64 / self.true_pairs as f64 }
    }
}

/// Accumulates registrations with their truth ids, then scores them.
pub struct Evaluation {
    mpi: Mpi,
    /// (person key as u64, truth id) per registered record.
    assigned: Vec<(u64, u64)>,
    quality: MatchQuality,
}

impl Evaluation {
    /// A fresh MPI with reproducible person keys.
    pub fn new(cfg: MatchConfig) -> Self {
        Evaluation { mpi: Mpi::with_seed(cfg, 7), assigned: vec![], quality: MatchQuality::default() }
    }

    /// Registers records whose truth ids are known.
    pub fn add(&mut self, inputs: &[IdentityInput], truth: &[u64]) {
        assert_eq!(inputs.len(), truth.len(), "one truth id per record");
        let regs = self.mpi.register_bulk(inputs);
        for (r, &t) in regs.iter().zip(truth) {
            self.quality.records += 1;
            match r {
                Ok(reg) => self.assigned.push((reg.record.0 as u64, t)),
                Err(_) => self.quality.rejected += 1,
            }
            if let Ok(reg) = r
                && matches!(reg.outcome, Outcome::Review { .. })
            {
                self.quality.review_items += 1;
            }
        }
    }

    /// Registers the `Patients` batches of a generated chunk, taking truth from its `Truth` batch.
    pub fn add_chunk(&mut self, chunk: &SynthChunk) {
        let get = |t: SynthTable| chunk.batches.iter().find(|(tab, _)| *tab == t).map(|(_, b)| b);
        let (Some(truth), Some(patients)) = (get(SynthTable::Truth), get(SynthTable::Patients)) else { return };
        let (inputs, truth_ids) = chunk_inputs(truth, patients);
        self.add(&inputs, &truth_ids);
    }

    /// The MPI built so far.
    pub fn mpi(&self) -> &Mpi {
        &self.mpi
    }

    /// Scores the current assignment (records' current persons, after any review decisions).
    pub fn quality(&self) -> MatchQuality {
        let mut q = self.quality;
        let c2 = |n: u64| n * n.saturating_sub(1) / 2;
        let mut by_pred: HashMap<u64, u64> = HashMap::new();
        let mut by_truth: HashMap<u64, u64> = HashMap::new();
        let mut by_both: HashMap<(u64, u64), u64> = HashMap::new();
        for &(rec, t) in &self.assigned {
            let p = self.mpi.person_of(crate::mpi::RecordId(rec as u32)).map_or(0, |k| k.as_u64());
            *by_pred.entry(p).or_default() += 1;
            *by_truth.entry(t).or_default() += 1;
            *by_both.entry((p, t)).or_default() += 1;
        }
        q.true_persons = by_truth.len() as u64;
        q.predicted_persons = by_pred.len() as u64;
        q.predicted_pairs = by_pred.values().map(|&n| c2(n)).sum();
        q.true_pairs = by_truth.values().map(|&n| c2(n)).sum();
        q.true_positive_pairs = by_both.values().map(|&n| c2(n)).sum();
        q.review_items = self.mpi.review_queue().count() as u64;
        q
    }
}

fn strings<'a>(b: &'a RecordBatch, name: &str) -> &'a StringArray {
    b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StringArray>()).expect("synth schema column")
}

/// Reads `Patients` rows into inputs and gives each its truth id. The truth table lists each person's
/// providers in the order the generator writes that person's patient rows, which makes the mapping
/// exact even when two persons draw the same provider patient id.
pub fn chunk_inputs(truth: &RecordBatch, patients: &RecordBatch) -> (Vec<IdentityInput>, Vec<u64>) {
    let tid =
        truth.column_by_name("truth_id").and_then(|c| c.as_any().downcast_ref::<UInt64Array>()).expect("truth_id");
    let provs = strings(truth, "provider_ids");
    let mut truth_ids = Vec::with_capacity(patients.num_rows());
    for i in 0..truth.num_rows() {
        let n = if provs.is_null(i) || provs.value(i).is_empty() { 0 } else { provs.value(i).split(';').count() };
        truth_ids.extend(std::iter::repeat_n(tid.value(i), n));
    }
    assert_eq!(truth_ids.len(), patients.num_rows(), "truth and patients rows line up");
    let col = |n: &str| strings(patients, n);
    let cols = [
        col("provider_id"),
        col("patient_id"),
        col("name_kanji"),
        col("name_kana"),
        col("sex"),
        col("birth_date"),
        col("postal_code"),
        col("address"),
        col("phone"),
        col("insurer_number"),
        col("card_symbol"),
        col("card_number"),
        col("card_branch"),
    ];
    let inputs = (0..patients.num_rows())
        .map(|r| {
            let v = |k: usize| cols[k].value(r).to_owned();
            IdentityInput {
                provider_id: v(0),
                patient_id: v(1),
                name_kanji: v(2),
                name_kana: v(3),
                sex: v(4),
                birth_date: v(5),
                postal_code: v(6),
                address: v(7),
                phone: v(8),
                insurer_number: v(9),
                card_symbol: v(10),
                card_number: v(11),
                card_branch: v(12),
            }
        })
        .collect();
    (inputs, truth_ids)
}

/// The provider identities of persons `range`, built straight from the generator (no clinical rows),
/// with their truth ids: the same records as the `Patients` table, faster to make at scale.
pub fn synth_inputs(cfg: &SynthConfig, range: std::ops::Range<u64>) -> (Vec<IdentityInput>, Vec<u64>) {
    let provs = providers(cfg);
    let (mut inputs, mut truth) = (vec![], vec![]);
    for i in range {
        let p = person(cfg, i);
        for &pi in &p.providers {
            let id = provider_identity(cfg, &p, pi, provs[pi].style);
            inputs.push(input_of(&p, id, &provs[pi].id));
            truth.push(i);
        }
    }
    (inputs, truth)
}

/// The intake input of one person as one provider's system recorded it.
fn input_of(p: &Person, id: ProviderIdentity, provider_id: &str) -> IdentityInput {
    IdentityInput {
        provider_id: provider_id.to_owned(),
        patient_id: id.patient_id,
        name_kanji: id.name_kanji,
        name_kana: id.name_kana,
        sex: p.sex.code().to_owned(),
        birth_date: id.birth_date,
        postal_code: p.postal.clone(),
        address: p.address(),
        phone: p.phone.clone(),
        insurer_number: id.insurer_number,
        card_symbol: id.card_symbol,
        card_number: p.card_number.clone(),
        card_branch: p.branch.clone(),
    }
}

/// The same persons `range` as seen by a second wave of providers (`prov-d` … `prov-f` for the
/// default three): each person's record at provider `i` is written again by provider `3 + (i + 1) % 3`,
/// whose system has another style (kana width, 和暦, old kanji, zero padding) and its own patient ids,
/// and which sees the person's current name and insurer. With their truth ids: the benchmark's
/// "register 10 million more messy records of overlapping persons against an index of 10 million".
pub fn synth_inputs_second_wave(cfg: &SynthConfig, range: std::ops::Range<u64>) -> (Vec<IdentityInput>, Vec<u64>) {
    let n = cfg.providers.clamp(1, 13);
    let provs = providers(&SynthConfig { providers: 2 * n, ..cfg.clone() });
    let (mut inputs, mut truth) = (vec![], vec![]);
    for i in range {
        let p = person(cfg, i);
        for &pi in &p.providers {
            let other = n + (pi + 1) % n;
            let id = provider_identity(cfg, &p, other, provs[other].style);
            inputs.push(input_of(&p, id, &provs[other].id));
            truth.push(i);
        }
    }
    (inputs, truth)
}

/// For the demo: registers the whole synthetic population (in chunks of generated batches) and
/// returns pairwise precision and recall against the ground truth.
pub fn evaluate_synth(cfg: &SynthConfig, match_cfg: MatchConfig) -> MatchQuality {
    let mut ev = Evaluation::new(match_cfg);
    let step = 20_000;
    let mut start = 0;
    while start < cfg.patients {
        let end = (start + step).min(cfg.patients);
        ev.add_chunk(&kiban_model::synth::generate_chunk(cfg, start..end));
        start = end;
    }
    ev.quality()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synth_batches_and_direct_inputs_agree() {
        let cfg = SynthConfig { patients: 300, ..Default::default() };
        let chunk = kiban_model::synth::generate_chunk(&cfg, 0..300);
        let get = |t| chunk.batches.iter().find(|(tab, _)| *tab == t).map(|(_, b)| b).unwrap();
        let a = chunk_inputs(get(SynthTable::Truth), get(SynthTable::Patients));
        let b = synth_inputs(&cfg, 0..300);
        assert_eq!(a, b);
    }

    #[test]
    fn a_second_wave_of_providers_links_to_the_first_and_finds_new_persons() {
        let cfg = SynthConfig { patients: 4_000, ..Default::default() };
        let mut ev = Evaluation::new(MatchConfig::default());
        let (a, ta) = synth_inputs(&cfg, 0..2_000);
        ev.add(&a, &ta);
        let (b, tb) = synth_inputs_second_wave(&cfg, 1_000..3_000);
        assert!(b.iter().all(|i| ["prov-d", "prov-e", "prov-f"].contains(&i.provider_id.as_str())));
        let styles_differ = a.iter().zip(&ta).filter(|(_, t)| **t == 1_500).map(|(i, _)| &i.name_kana);
        let again = b.iter().zip(&tb).filter(|(_, t)| **t == 1_500).map(|(i, _)| &i.name_kana);
        assert!(styles_differ.zip(again).all(|(x, y)| x != y), "another provider writes the name another way");
        ev.add(&b, &tb);
        let q = ev.quality();
        assert_eq!((q.rejected, q.true_persons), (0, 3_000), "{q:?}");
        assert!(q.precision() >= 0.999 && q.recall() >= 0.99, "{q:?}");
    }

    #[test]
    fn mpi_links_the_messy_synthetic_population() {
        let cfg = SynthConfig { patients: 20_000, ..Default::default() };
        let q = evaluate_synth(&cfg, MatchConfig::default());
        assert_eq!(q.rejected, 0, "{q:?}");
        assert!(q.true_pairs > 1000, "{q:?}");
        assert!(q.precision() >= 0.999, "precision {} {q:?}", q.precision());
        assert!(q.recall() >= 0.99, "recall {} {q:?}", q.recall());
    }
}
