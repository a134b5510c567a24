//! The opt-out gate (C3): a pure, fail-closed decision per record.
//!
//! A record is admitted only if its person is positively known to have been notified at least the
//! waiting period before the provision date (P1, P2) and has no opt-out in force on that date (P3).
//! Everything else is excluded with its reason. The decision depends only on the [`Facts`] and the
//! provision date, so a replay of an old batch gives the same answer.
//!
//! The registry's facts are compiled once per batch into a [`Gate`]: the verdict of every known
//! patient as of the provision date, in an open-addressing hash table over one byte arena. Deciding
//! a record is then one hash and one comparison; [`Gate::decide_batch`] does it for an Arrow batch.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray, UInt8Array};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use serde::Serialize;

/// Why a record was excluded (or that it was admitted), in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Verdict {
    /// Admitted.
    Admitted = 0,
    /// The record's provider_id is not the submitting provider.
    ProviderMismatch = 1,
    /// No usable patient id (missing, empty, too long, or characters outside the id alphabet).
    MalformedIdentity = 2,
    /// An opt-out was in force on the provision date.
    OptedOut = 3,
    /// As of the provision date the registry knows nothing of this person (no notice, no opt-out).
    UnknownPerson = 4,
    /// Known to the registry as of the provision date (an earlier, withdrawn opt-out), but never notified.
    NotNotified = 5,
    /// Notified, but the waiting period had not passed by the provision date.
    NoticeTooRecent = 6,
}

impl Verdict {
    /// Every verdict, by code.
    pub const ALL: [Verdict; 7] = [
        Verdict::Admitted,
        Verdict::ProviderMismatch,
        Verdict::MalformedIdentity,
        Verdict::OptedOut,
        Verdict::UnknownPerson,
        Verdict::NotNotified,
        Verdict::NoticeTooRecent,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Admitted => "admitted",
            Verdict::ProviderMismatch => "provider_mismatch",
            Verdict::MalformedIdentity => "malformed_identity",
            Verdict::OptedOut => "opted_out",
            Verdict::UnknownPerson => "unknown_person",
            Verdict::NotNotified => "not_notified",
            Verdict::NoticeTooRecent => "notice_too_recent",
        }
    }

    /// The requirement the exclusion enforces.
    pub fn rule(self) -> &'static str {
        match self {
            Verdict::Admitted => "",
            Verdict::ProviderMismatch => "C1",
            Verdict::MalformedIdentity => "C3",
            Verdict::OptedOut => "P3",
            Verdict::UnknownPerson | Verdict::NotNotified => "P1",
            Verdict::NoticeTooRecent => "P2",
        }
    }

    fn from_code(c: u8) -> Verdict {
        Verdict::ALL[c as usize]
    }
}

/// What the registry knows about one patient of one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonFacts {
    /// Dates of notices in force.
    pub notices: Vec<NaiveDate>,
    /// Opt-outs: (event id, effective date, withdrawal date if withdrawn).
    pub optouts: Vec<(String, NaiveDate, Option<NaiveDate>)>,
}

/// The registry's facts about one provider's patients (loaded by [`crate::Registry::gate_facts`]).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// By provider patient id.
    pub persons: HashMap<String, PersonFacts>,
}

impl Facts {
    /// Adds a notice.
    pub fn notice(&mut self, patient: String, on: NaiveDate) {
        self.persons.entry(patient).or_default().notices.push(on);
    }
    /// Adds an opt-out.
    pub fn optout(&mut self, patient: String, event_id: String, on: NaiveDate) {
        self.persons.entry(patient).or_default().optouts.push((event_id, on, None));
    }
    /// Adds the withdrawal of opt-out `of`; an unknown `of` changes nothing (fail-closed).
    pub fn withdrawal(&mut self, patient: String, of: &str, on: NaiveDate) {
        if let Some(p) = self.persons.get_mut(&patient)
            && let Some(o) = p.optouts.iter_mut().find(|o| o.0 == of)
        {
            o.2 = Some(o.2.map_or(on, |w| w.min(on)));
        }
    }
}

/// The rule itself, for one person, using only facts dated on or before `date` (so a replay of an
/// old batch, after later notices and opt-outs were recorded, gives the same verdict and reason):
/// excluded if an opt-out is in force on `date`; admitted only if a notice is dated at least
/// `waiting_days` before `date`.
pub fn decide_person(p: &PersonFacts, date: NaiveDate, waiting_days: u32) -> Verdict {
    let opted_out = p.optouts.iter().any(|(_, from, until)| *from <= date && until.is_none_or(|w| w > date));
    if opted_out {
        return Verdict::OptedOut;
    }
    let Some(first) = p.notices.iter().filter(|n| **n <= date).min() else {
        let known = p.optouts.iter().any(|(_, from, _)| *from <= date);
        return if known { Verdict::NotNotified } else { Verdict::UnknownPerson };
    };
    if (date - *first).num_days() < waiting_days as i64 {
        return Verdict::NoticeTooRecent;
    }
    Verdict::Admitted
}

/// The id alphabet of provider patient ids (`kiban_model::id::ProviderPatientId`): 1–32 ASCII
/// letters, digits, `-` and `_`.
#[inline]
pub fn well_formed_patient_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[inline]
fn fx(bytes: &[u8]) -> u64 {
    // FxHash-style multiply-rotate over 8-byte words: fast, and collisions only cost a comparison.
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// Ids of up to this many bytes live in the packed table.
const SHORT: usize = 15;
/// The low 120 bits of a packed slot hold the id; the top byte holds the verdict.
const KEY_BITS: u128 = (1u128 << 120) - 1;

/// Packs a short id into the low bytes of a u128. Id bytes are never 0, so the packing is
/// injective and a packed id is never 0 (the empty slot).
#[inline]
fn pack(id: &[u8]) -> u128 {
    let mut w = [0u8; 16];
    w[..id.len()].copy_from_slice(id);
    u128::from_le_bytes(w)
}

#[inline]
fn hash_packed(k: u128, shift: u32) -> usize {
    let (lo, hi) = (k as u64, (k >> 64) as u64);
    ((lo.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ hi).wrapping_mul(0xbf58_476d_1ce4_e5b9) >> shift) as usize
}

/// Asks the CPU to start loading a table slot (a hint only; no effect on the result).
#[inline(always)]
fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint; it never faults, even on an invalid address (this one is valid).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((p as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks Linux to back a large table with huge pages: lookups are random over hundreds of MB, and
/// with 4 KiB pages nearly every one also misses the TLB. A hint only; failure changes nothing.
fn advise_huge_pages<T>(v: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let (start, len) = (v.as_ptr() as usize, std::mem::size_of_val(v));
        let aligned = start.next_multiple_of(PAGE);
        let end = (start + len) / PAGE * PAGE;
        if len >= 4 << 20 && end > aligned {
            // SAFETY: the range lies inside memory this slice owns; madvise does not change its contents.
            unsafe { libc::madvise(aligned as *mut libc::c_void, end - aligned, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// The more protective of two verdicts for the same id (any exclusion beats admission).
fn merge(a: u8, b: u8) -> u8 {
    if a == 0 {
        b
    } else if b == 0 {
        a
    } else {
        a.min(b)
    }
}

/// The compiled gate for one provider and one provision date.
///
/// Ids of up to 15 bytes (nearly all hospital patient ids) are packed with their verdict into one
/// 16-byte slot of an open-addressing table, so deciding a record costs one hash and usually one
/// cache line, with the whole id compared (never a fingerprint: a collision must not admit anyone).
/// Longer ids (up to 32 bytes) live in a second table over a byte arena.
pub struct Gate {
    provider_id: String,
    date: NaiveDate,
    waiting_days: u32,
    short: Vec<u128>,
    short_shift: u32,
    short_len: usize,
    arena: Vec<u8>,
    offsets: Vec<u32>,
    verdicts: Vec<u8>,
    slots: Vec<u32>,
    mask: usize,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("provider_id", &self.provider_id)
            .field("date", &self.date)
            .field("waiting_days", &self.waiting_days)
            .field("persons", &self.persons())
            .finish()
    }
}

const EMPTY: u32 = u32::MAX;

impl Gate {
    /// Compiles the facts as of `date`.
    pub fn compile(provider_id: &str, facts: &Facts, date: NaiveDate, waiting_days: u32) -> Gate {
        Self::from_verdicts(
            provider_id,
            date,
            waiting_days,
            facts.persons.iter().map(|(k, p)| (k.as_str(), decide_person(p, date, waiting_days))),
        )
    }

    /// Builds a gate from precomputed verdicts per patient id (benchmarks build 10 million this way).
    pub fn from_verdicts<'a>(
        provider_id: &str,
        date: NaiveDate,
        waiting_days: u32,
        verdicts: impl Iterator<Item = (&'a str, Verdict)>,
    ) -> Gate {
        let mut g = Gate {
            provider_id: provider_id.to_owned(),
            date,
            waiting_days,
            short: Vec::new(),
            short_shift: 64,
            short_len: 0,
            arena: Vec::new(),
            offsets: vec![0],
            verdicts: Vec::new(),
            slots: Vec::new(),
            mask: 0,
        };
        let mut short: Vec<u128> = Vec::new();
        for (k, v) in verdicts {
            if !well_formed_patient_id(k) {
                continue; // such a record is excluded as malformed anyway
            }
            if k.len() <= SHORT {
                short.push(pack(k.as_bytes()) | (u128::from(v as u8) << 120));
            } else {
                g.arena.extend_from_slice(k.as_bytes());
                g.offsets.push(g.arena.len() as u32);
                g.verdicts.push(v as u8);
            }
        }
        // Load factor at most 3/4: linear probing stays within one or two cache lines.
        let cap = (short.len() * 4 / 3 + 1).next_power_of_two().max(16);
        g.short = vec![0u128; cap];
        advise_huge_pages(&g.short);
        g.short_shift = 64 - cap.trailing_zeros();
        for e in short {
            let key = e & KEY_BITS;
            let mut s = hash_packed(key, g.short_shift);
            loop {
                let cur = g.short[s];
                if cur == 0 {
                    g.short[s] = e;
                    g.short_len += 1;
                    break;
                }
                if cur & KEY_BITS == key {
                    // The same id twice: keep the more protective verdict.
                    let v = merge((cur >> 120) as u8, (e >> 120) as u8);
                    g.short[s] = key | (u128::from(v) << 120);
                    break;
                }
                s = (s + 1) & (cap - 1);
            }
        }
        let cap = (g.verdicts.len() * 2).next_power_of_two().max(16);
        g.slots = vec![EMPTY; cap];
        g.mask = cap - 1;
        for i in 0..g.verdicts.len() {
            let key = g.key(i);
            let mut s = fx(key) as usize & g.mask;
            loop {
                match g.slots[s] {
                    EMPTY => {
                        g.slots[s] = i as u32;
                        break;
                    }
                    j if g.key(j as usize) == key => {
                        g.verdicts[j as usize] = merge(g.verdicts[j as usize], g.verdicts[i]);
                        break;
                    }
                    _ => s = (s + 1) & g.mask,
                }
            }
        }
        g
    }

    #[inline]
    fn key(&self, i: usize) -> &[u8] {
        &self.arena[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// The verdict of a packed id, probing from slot `s`.
    #[inline]
    fn probe_short(&self, k: u128, mut s: usize) -> u8 {
        let mask = self.short.len() - 1;
        loop {
            let cur = self.short[s];
            if cur == 0 {
                return Verdict::UnknownPerson as u8;
            }
            if cur & KEY_BITS == k {
                return (cur >> 120) as u8;
            }
            s = (s + 1) & mask;
        }
    }

    /// The verdict of a well-formed id.
    #[inline]
    fn lookup(&self, key: &[u8]) -> u8 {
        if key.len() <= SHORT {
            let k = pack(key);
            return self.probe_short(k, hash_packed(k, self.short_shift));
        }
        let mut s = fx(key) as usize & self.mask;
        loop {
            match self.slots[s] {
                EMPTY => return Verdict::UnknownPerson as u8,
                j if self.key(j as usize) == key => return self.verdicts[j as usize],
                _ => s = (s + 1) & self.mask,
            }
        }
    }

    /// The provider this gate decides for.
    pub fn provider_id(&self) -> &str {
        &self.provider_id
    }
    /// The provision date.
    pub fn date(&self) -> NaiveDate {
        self.date
    }
    /// The waiting period.
    pub fn waiting_days(&self) -> u32 {
        self.waiting_days
    }
    /// Known persons.
    pub fn persons(&self) -> usize {
        self.short_len + self.verdicts.len()
    }

    /// Decides one record.
    #[inline]
    pub fn decide(&self, provider_id: Option<&str>, patient_id: Option<&str>) -> Verdict {
        match provider_id {
            Some(p) if p == self.provider_id => {}
            _ => return Verdict::ProviderMismatch,
        }
        let Some(id) = patient_id.filter(|s| well_formed_patient_id(s)) else {
            return Verdict::MalformedIdentity;
        };
        Verdict::from_code(self.lookup(id.as_bytes()))
    }

    /// Decides every row of a batch by its `provider_id` and `patient_id` columns; a batch without
    /// them (or with other types) is wholly malformed.
    pub fn decide_batch(&self, batch: &RecordBatch) -> UInt8Array {
        let col = |n: &str| batch.column_by_name(n).and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let (Some(prov), Some(pat)) = (col("provider_id"), col("patient_id")) else {
            return UInt8Array::from(vec![Verdict::MalformedIdentity as u8; batch.num_rows()]);
        };
        let mut out = Vec::with_capacity(batch.num_rows());
        let same_provider = prov.null_count() == 0 && (0..prov.len()).all(|i| prov.value(i) == self.provider_id);
        if same_provider && pat.null_count() == 0 {
            // The hot path: one provider, no nulls; read the id bytes straight from Arrow's buffers,
            // and look ids up in groups whose table slots are prefetched first, so the cache misses
            // of a group overlap instead of queueing one after another.
            const GROUP: usize = 16;
            let (offs, bytes) = (pat.value_offsets(), pat.values().as_slice());
            let n = offs.len() - 1;
            let mut keys = [0u128; GROUP];
            let mut slot = [usize::MAX; GROUP];
            let mut start = 0;
            while start < n {
                let m = GROUP.min(n - start);
                for j in 0..m {
                    let id = &bytes[offs[start + j] as usize..offs[start + j + 1] as usize];
                    slot[j] = usize::MAX;
                    if id.len() <= SHORT
                        && !id.is_empty()
                        && id.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    {
                        keys[j] = pack(id);
                        slot[j] = hash_packed(keys[j], self.short_shift);
                        prefetch(&self.short[slot[j]]);
                    }
                }
                for j in 0..m {
                    out.push(if slot[j] != usize::MAX {
                        self.probe_short(keys[j], slot[j])
                    } else {
                        let id = &bytes[offs[start + j] as usize..offs[start + j + 1] as usize];
                        let ok = id.len() <= 32
                            && !id.is_empty()
                            && id.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                        if ok { self.lookup(id) } else { Verdict::MalformedIdentity as u8 }
                    });
                }
                start += m;
            }
        } else if same_provider {
            for i in 0..pat.len() {
                let id = if pat.is_null(i) { None } else { Some(pat.value(i)) };
                out.push(self.decide(Some(&self.provider_id), id) as u8);
            }
        } else {
            for i in 0..pat.len() {
                let p = if prov.is_null(i) { None } else { Some(prov.value(i)) };
                let id = if pat.is_null(i) { None } else { Some(pat.value(i)) };
                out.push(self.decide(p, id) as u8);
            }
        }
        UInt8Array::from(out)
    }

    /// Splits a batch into the admitted rows and the excluded ones with their verdict codes
    /// (arrow `filter`, so columns are copied once).
    pub fn split(&self, batch: &RecordBatch) -> Result<Split, arrow::error::ArrowError> {
        Self::split_by(batch, self.decide_batch(batch))
    }

    /// Splits a batch by verdict codes decided elsewhere (one per row: the gate UDF on a cluster).
    pub fn split_by(batch: &RecordBatch, codes: UInt8Array) -> Result<Split, arrow::error::ArrowError> {
        if codes.len() != batch.num_rows() || codes.null_count() > 0 {
            return Err(arrow::error::ArrowError::InvalidArgumentError(format!(
                "{} verdicts for {} rows (rule: one verdict per row)",
                codes.len(),
                batch.num_rows()
            )));
        }
        let keep: BooleanArray = codes.values().iter().map(|&c| Some(c == 0)).collect();
        let drop = arrow::compute::not(&keep)?;
        let admitted = arrow::compute::filter_record_batch(batch, &keep)?;
        let excluded = arrow::compute::filter_record_batch(batch, &drop)?;
        let codes = arrow::compute::filter(&codes, &drop)?;
        let codes = codes.as_any().downcast_ref::<UInt8Array>().expect("u8 codes").clone();
        Ok(Split { admitted, excluded, codes })
    }
}

/// A batch split by the gate.
#[derive(Debug)]
pub struct Split {
    /// Admitted rows.
    pub admitted: RecordBatch,
    /// Excluded rows.
    pub excluded: RecordBatch,
    /// The verdict code of each excluded row.
    pub codes: UInt8Array,
}

impl Split {
    /// The excluded rows with `exclusion_reason` and `rule` columns appended (the quarantine form).
    pub fn quarantine(&self) -> Result<RecordBatch, arrow::error::ArrowError> {
        quarantine_batch(&self.excluded, &self.codes)
    }
}

/// Appends the reason and rule of each row.
pub fn quarantine_batch(rows: &RecordBatch, codes: &UInt8Array) -> Result<RecordBatch, arrow::error::ArrowError> {
    let reasons: StringArray = codes.values().iter().map(|&c| Some(Verdict::from_code(c).as_str())).collect();
    let rules: StringArray = codes.values().iter().map(|&c| Some(Verdict::from_code(c).rule())).collect();
    let mut fields: Vec<_> = rows.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(arrow::datatypes::Field::new("exclusion_reason", arrow::datatypes::DataType::Utf8, false));
    fields.push(arrow::datatypes::Field::new("rule", arrow::datatypes::DataType::Utf8, false));
    let mut cols: Vec<ArrayRef> = rows.columns().to_vec();
    cols.push(Arc::new(reasons));
    cols.push(Arc::new(rules));
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn c3_p2_decide_person_follows_the_rule_and_the_waiting_period() {
        let p = PersonFacts { notices: vec![d("2025-01-01")], optouts: vec![] };
        assert_eq!(decide_person(&p, d("2025-01-31"), 30), Verdict::Admitted);
        assert_eq!(decide_person(&p, d("2025-01-30"), 30), Verdict::NoticeTooRecent);
        assert_eq!(decide_person(&p, d("2024-12-31"), 30), Verdict::UnknownPerson, "a later notice is invisible");
        let w = PersonFacts { notices: vec![], optouts: vec![("o".into(), d("2024-01-01"), Some(d("2024-02-01")))] };
        assert_eq!(decide_person(&w, d("2024-03-01"), 30), Verdict::NotNotified);
        let mut o = p.clone();
        o.optouts.push(("o".into(), d("2025-02-01"), None));
        assert_eq!(decide_person(&o, d("2025-01-31"), 30), Verdict::Admitted, "opt-out after the date");
        assert_eq!(decide_person(&o, d("2025-02-01"), 30), Verdict::OptedOut, "effective on the day");
        o.optouts[0].2 = Some(d("2025-03-01"));
        assert_eq!(decide_person(&o, d("2025-02-15"), 30), Verdict::OptedOut);
        assert_eq!(decide_person(&o, d("2025-03-01"), 30), Verdict::Admitted, "withdrawn by the person");
    }

    #[test]
    fn c3_gate_table_finds_every_person_and_nothing_else() {
        let ids: Vec<String> = (0..5000).map(|i| format!("{i:08}")).collect();
        let g = Gate::from_verdicts(
            "prov-a",
            d("2025-01-01"),
            30,
            ids.iter().enumerate().map(|(i, k)| (k.as_str(), Verdict::ALL[i % 7])),
        );
        for (i, k) in ids.iter().enumerate() {
            assert_eq!(g.decide(Some("prov-a"), Some(k)), Verdict::ALL[i % 7]);
        }
        assert_eq!(g.decide(Some("prov-a"), Some("99999999")), Verdict::UnknownPerson);
        assert_eq!(g.decide(Some("prov-b"), Some("00000000")), Verdict::ProviderMismatch);
        assert_eq!(g.decide(Some("prov-a"), Some("bad id")), Verdict::MalformedIdentity);
        assert_eq!(g.decide(Some("prov-a"), None), Verdict::MalformedIdentity);
    }

    #[test]
    fn c3_gate_table_handles_short_long_and_duplicate_ids() {
        // 15 bytes is the last packed length, 16 the first arena one, 32 the longest allowed.
        let ids: Vec<String> = (1..=32).flat_map(|n| (0..50).map(move |i| format!("{i:0n$}"))).collect();
        let ids: Vec<String> = ids.into_iter().filter(|k| k.len() <= 32).collect();
        let g = Gate::from_verdicts(
            "p",
            d("2025-01-01"),
            30,
            ids.iter().enumerate().map(|(i, k)| (k.as_str(), Verdict::ALL[i % 7])),
        );
        let mut expected: HashMap<&str, u8> = HashMap::new();
        for (i, k) in ids.iter().enumerate() {
            let v = Verdict::ALL[i % 7] as u8;
            expected.entry(k.as_str()).and_modify(|e| *e = merge(*e, v)).or_insert(v);
        }
        for (k, v) in &expected {
            assert_eq!(g.decide(Some("p"), Some(k)) as u8, *v, "id {k:?} (len {})", k.len());
        }
        assert_eq!(g.persons(), expected.len());
        // A duplicate with any exclusion is never admitted.
        let g = Gate::from_verdicts(
            "p",
            d("2025-01-01"),
            30,
            [("abc", Verdict::Admitted), ("abc", Verdict::OptedOut), ("x".repeat(20).as_str(), Verdict::OptedOut)]
                .into_iter()
                .chain([("x".repeat(20).as_str(), Verdict::Admitted)]),
        );
        assert_eq!(g.decide(Some("p"), Some("abc")), Verdict::OptedOut);
        assert_eq!(g.decide(Some("p"), Some(&"x".repeat(20))), Verdict::OptedOut);
        assert_eq!(g.decide(Some("p"), Some(&"x".repeat(33))), Verdict::MalformedIdentity);
        assert_eq!(g.decide(Some("p"), Some("abcd")), Verdict::UnknownPerson);
    }

    #[test]
    fn c3_batch_decisions_equal_row_decisions() {
        let known: Vec<String> = (0..300).map(|i| format!("{i:0w$}", w = 5 + i % 25)).collect();
        let g = Gate::from_verdicts(
            "p",
            d("2025-01-01"),
            30,
            known.iter().enumerate().map(|(i, k)| (k.as_str(), Verdict::ALL[i % 7])),
        );
        let mut ids: Vec<String> = known.clone();
        ids.extend((0..100).map(|i| format!("u{i:0w$}", w = 3 + i % 30)));
        ids.extend(["".into(), "bad id".into(), "ｉｄ".into(), "x".repeat(33)]);
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("provider_id", arrow::datatypes::DataType::Utf8, false),
            arrow::datatypes::Field::new("patient_id", arrow::datatypes::DataType::Utf8, false),
        ]));
        let prov: StringArray = ids.iter().map(|_| Some("p")).collect();
        let pat: StringArray = ids.iter().map(|k| Some(k.as_str())).collect();
        let batch = RecordBatch::try_new(schema, vec![Arc::new(prov) as ArrayRef, Arc::new(pat)]).unwrap();
        let codes = g.decide_batch(&batch);
        for (i, k) in ids.iter().enumerate() {
            assert_eq!(codes.value(i), g.decide(Some("p"), Some(k)) as u8, "row {i} id {k:?}");
        }
        assert!(codes.values().contains(&(Verdict::MalformedIdentity as u8)));
        assert!(codes.values().contains(&(Verdict::UnknownPerson as u8)));
    }
}
