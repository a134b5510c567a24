//! The master patient index: decides which provider records are one person and hands out the
//! random [`PersonKey`].
//!
//! Matching runs in three steps. Blocking first: a record is compared only with records sharing
//! (birth date, sex, given kana), (birth date, sex, family kana) — so a marriage or a typo in one
//! name part still meets — the whole kana name with two of birth year, month and day (a birth date
//! wrong in one part still meets), the phone number, or the individual insured-person number; a kana name with unknown marks (〓) falls back to the
//! whole (birth date, sex) block. Each block is walked newest first up to `max_block` records, so
//! work per record stays bounded however large the index grows (10 million records and more). Deterministic rules next: an identical individual insured-person
//! number with the same birth date and sex is the same person. Then a Fellegi–Sunter score, the sum
//! of per-field log-likelihood weights ([`Weights`]), against two thresholds: at or above `upper` the
//! record joins the best person, below `lower` it starts a new person, and between it starts a new
//! person and goes to the review queue. Household fields (phone, address, postal code, card number)
//! count once, as the best of them, because family members share them — twins share all of them, and
//! a different given name or card branch is what tells them apart. Reviewers merge, split or keep
//! apart; every decision is recorded and can be undone.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use kiban_model::id::PersonKey;
use kiban_model::person::Sex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::identity::{Identity, IdentityInput, RecordError};
use crate::normalize::UNKNOWN;
use crate::vault::{StoredIdentity, StoredRef};

mod state;

/// Agreement and disagreement weights (log2 m/u) per field.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// Family kana (agree, disagree); disagreement is mild because names change at marriage.
    pub family: (f64, f64),
    /// Given kana (agree, disagree).
    pub given: (f64, f64),
    /// Kanji name, variants folded, separator ignored (agree, disagree).
    pub kanji: (f64, f64),
    /// Birth date (agree, one of year/month/day differs, disagree).
    pub birth: (f64, f64, f64),
    /// Sex (agree, disagree).
    pub sex: (f64, f64),
    /// Best household field agreeing: phone, card number, address, postal; and none agreeing.
    pub household: (f64, f64, f64, f64, f64),
    /// Insurer number (agree, disagree); people change insurers.
    pub insurer: (f64, f64),
    /// Card branch when the card number agrees (agree, disagree): twins differ here.
    pub branch: (f64, f64),
    /// Kana that agree except at unknown (〓) positions.
    pub kana_wildcard: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            family: (8.0, -3.0),
            given: (9.0, -10.0),
            kanji: (3.0, -1.0),
            birth: (13.0, -3.0, -12.0),
            sex: (1.0, -10.0),
            household: (12.0, 10.0, 8.0, 4.0, -5.0),
            insurer: (4.0, -1.0),
            branch: (6.0, -25.0),
            kana_wildcard: 4.0,
        }
    }
}

/// Matching configuration: weights and the two thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MatchConfig {
    /// Field weights.
    pub weights: Weights,
    /// At or above: same person.
    pub upper: f64,
    /// Below: different person; in between: review.
    pub lower: f64,
    /// Largest block compared in full; bigger blocks compare their most recent entries only.
    pub max_block: usize,
}

impl Default for MatchConfig {
    fn default() -> Self {
        MatchConfig { weights: Weights::default(), upper: 30.0, lower: 20.0, max_block: 256 }
    }
}

/// Index of a record in the MPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordId(pub u32);

fn fp(parts: &[&[u8]]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

/// Keys are already well-mixed 64-bit hashes (or random person keys): hashing them again is waste.
#[derive(Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<PassThrough>>;

/// The newest record of each block: an open-addressing table of block keys (well-mixed 64-bit
/// hashes, never `NONE`, which marks a free slot) and records in two arrays, linear probing, at most
/// 7/8 full. Twelve bytes a slot against a hash map's seventeen and its power-of-two rounding: the
/// heads of nine indexes are most of the index's memory at ten million records.
#[derive(Default)]
struct HeadMap {
    keys: Vec<u64>,
    vals: Vec<u32>,
    len: usize,
}

impl HeadMap {
    fn with_capacity(n: usize) -> HeadMap {
        let cap = (n + n / 4).max(16);
        HeadMap { keys: vec![NONE; cap], vals: vec![0; cap], len: 0 }
    }
    /// The home slot: the key's high bits scaled to the capacity (any capacity, no power of two).
    fn home(&self, key: u64) -> usize {
        ((u128::from(key) * self.keys.len() as u128) >> 64) as usize
    }
    fn get(&self, key: u64) -> Option<u32> {
        if self.keys.is_empty() {
            return None;
        }
        let mut i = self.home(key);
        loop {
            match self.keys[i] {
                k if k == key => return Some(self.vals[i]),
                NONE => return None,
                _ => i = if i + 1 == self.keys.len() { 0 } else { i + 1 },
            }
        }
    }
    /// Sets the head of block `key`, returning the previous one.
    fn insert(&mut self, key: u64, v: u32) -> Option<u32> {
        debug_assert_ne!(key, NONE);
        if (self.len + 1) * 8 > self.keys.len() * 7 {
            let mut bigger = HeadMap::with_capacity(self.keys.len().max(16) * 2 * 4 / 5);
            for (k, v) in self.keys.iter().zip(&self.vals) {
                if *k != NONE {
                    bigger.insert(*k, *v);
                }
            }
            *self = bigger;
        }
        let mut i = self.home(key);
        loop {
            match self.keys[i] {
                k if k == key => return Some(std::mem::replace(&mut self.vals[i], v)),
                NONE => {
                    self.keys[i] = key;
                    self.vals[i] = v;
                    self.len += 1;
                    return None;
                }
                _ => i = if i + 1 == self.keys.len() { 0 } else { i + 1 },
            }
        }
    }
}

impl PartialEq for HeadMap {
    /// The same blocks with the same heads, whatever the capacity and insertion order.
    fn eq(&self, other: &HeadMap) -> bool {
        self.len == other.len && self.keys.iter().zip(&self.vals).all(|(k, v)| *k == NONE || other.get(*k) == Some(*v))
    }
}

/// One blocking index as chains: the newest record of each block, and per record the previous one
/// in its block. Eight bytes per record and key instead of a vector per block, and walking a
/// chain visits the most recent records first (what `max_block` keeps).
#[derive(Default, PartialEq)]
struct Chains {
    head: HeadMap,
    prev: Vec<u32>,
}

const END: u32 = u32::MAX;

impl Chains {
    /// Adds record `i` (records are added in increasing id order; erased ids in between are never
    /// added) under `key`; `NONE` adds nothing.
    fn push(&mut self, key: u64, i: u32) {
        self.prev.resize(i as usize, END);
        let prev = if key == NONE { END } else { self.head.insert(key, i).unwrap_or(END) };
        self.prev.push(prev);
    }
    /// Appends up to `max` records of block `key`, newest first.
    fn walk(&self, key: u64, max: usize, out: &mut Vec<u32>) {
        let mut at = self.head.get(key).unwrap_or(END);
        let mut n = 0;
        while at != END && n < max {
            out.push(at);
            at = self.prev[at as usize];
            n += 1;
        }
    }
}

/// The blocking keys of a record.
struct BlockKeys {
    birth: u64,
    birth_given: u64,
    birth_family: u64,
    /// Whole kana name with two of year, month, day: meets a record whose birth date differs in one part.
    kana: [u64; 3],
    card: u64,
}

/// The compact matching view of a record (the full identity lives in the vault).
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    source: u64,
    kana: Box<str>,
    kanji: u64,
    birth: (i32, u32, u32),
    sex: Sex,
    phone: u64,
    postal: u64,
    address: u64,
    insurer: u64,
    card: u64,
    branch: u8,
    has_card: bool,
    person: PersonKey,
}

const NONE: u64 = 0;

/// Whether a record was erased (P7): its person is the never-drawn key 0, so it is never matched
/// nor returned.
fn erased(r: &Rec) -> bool {
    r.person.as_u64() == 0
}

/// The fingerprint of a kanji name without its separator, hashed in place (no joined copy): the
/// same as `fp` of the joined text, since the hasher streams.
fn kanji_fp(s: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write_usize(s.len() - s.bytes().filter(|b| *b == b' ').count());
    for part in s.split(' ') {
        h.write(part.as_bytes());
    }
    h.finish()
}

/// A canonical `YYYY-MM-DD` date as (year, month, day), checked as a calendar date; without
/// chrono's format parser, which dominated reopening a large vault.
fn iso_date(s: &str) -> Option<(i32, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let (y, m, d) = (num(0..4)? as i32, num(5..7)?, num(8..10)?);
    chrono::NaiveDate::from_ymd_opt(y, m, d)?;
    Some((y, m, d))
}

fn opt_fp(s: &str) -> u64 {
    if s.is_empty() { NONE } else { fp(&[s.as_bytes()]).max(1) }
}

impl Rec {
    fn new(id: &Identity) -> Rec {
        use chrono::Datelike;
        let card = id.card.as_ref();
        Rec {
            source: fp(&[id.provider.as_str().as_bytes(), id.patient.as_str().as_bytes()]),
            kana: id.kana.as_str().into(),
            kanji: kanji_fp(id.kanji.as_str()),
            birth: (id.birth.year(), id.birth.month(), id.birth.day()),
            sex: id.sex,
            phone: opt_fp(&id.phone),
            postal: opt_fp(&id.postal),
            address: opt_fp(&id.address),
            insurer: card.map_or(NONE, |c| opt_fp(c.insurer.as_str())),
            card: card.map_or(NONE, |c| fp(&[c.symbol.as_str().as_bytes(), c.number.as_str().as_bytes()])),
            branch: card.map_or(0, |c| c.branch.as_str().parse().unwrap_or(0)),
            has_card: card.is_some(),
            person: PersonKey::from_u64(0),
        }
    }
    /// The same view built straight from a stored (already canonical) identity, without parsing it
    /// again: what makes reopening a large vault fast. Proven equal to [`Rec::new`] by a test.
    fn from_stored(s: &StoredRef<'_>) -> Option<Rec> {
        let birth = iso_date(s.birth())?;
        let card = s.card();
        let has_card = !card[0].is_empty();
        Some(Rec {
            source: fp(&[s.provider().as_bytes(), s.patient().as_bytes()]),
            kana: s.kana().into(),
            kanji: kanji_fp(s.kanji()),
            birth,
            sex: Sex::parse(s.sex()).ok()?,
            phone: opt_fp(s.phone()),
            postal: opt_fp(s.postal()),
            address: opt_fp(s.address()),
            insurer: if has_card { opt_fp(card[0]) } else { NONE },
            card: if has_card { fp(&[card[1].as_bytes(), card[2].as_bytes()]) } else { NONE },
            branch: if has_card { card[3].parse().unwrap_or(0) } else { 0 },
            has_card,
            person: PersonKey::from_u64(0),
        })
    }
    /// The placeholder of an erased record.
    fn tombstone() -> Rec {
        Rec {
            source: NONE,
            kana: "".into(),
            kanji: NONE,
            birth: (0, 0, 0),
            sex: Sex::Unknown,
            phone: NONE,
            postal: NONE,
            address: NONE,
            insurer: NONE,
            card: NONE,
            branch: 0,
            has_card: false,
            person: PersonKey::from_u64(0),
        }
    }
    fn family(&self) -> &str {
        self.kana.split(' ').next().unwrap_or_default()
    }
    fn given(&self) -> &str {
        self.kana.split_once(' ').map_or("", |(_, g)| g)
    }
    fn block_keys(&self) -> BlockKeys {
        let b = [&self.birth.0.to_le_bytes()[..], &self.birth.1.to_le_bytes(), &self.birth.2.to_le_bytes()];
        let sex = self.sex.code().as_bytes();
        let (fam, giv) = (self.family(), self.given());
        let named = |tag: &[u8], part: &str| {
            if part.is_empty() || part.contains(UNKNOWN) {
                NONE
            } else {
                fp(&[b[0], b[1], b[2], sex, tag, part.as_bytes()]).max(1)
            }
        };
        BlockKeys {
            birth: fp(&[b[0], b[1], b[2], sex]).max(1),
            birth_given: named(b"g", giv),
            birth_family: named(b"f", fam),
            kana: if self.kana.contains(UNKNOWN) {
                [NONE; 3]
            } else {
                let k = self.joined_kana_fp().to_le_bytes();
                [fp(&[&k, b[0], b[1]]).max(1), fp(&[&k, b[0], b[2]]).max(1), fp(&[&k, b[1], b[2]]).max(1)]
            },
            card: if self.has_card {
                fp(&[&self.insurer.to_le_bytes(), &self.card.to_le_bytes(), &[self.branch]]).max(1)
            } else {
                NONE
            },
        }
    }
    fn joined_kana_fp(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        for c in self.kana.chars().filter(|c| *c != ' ') {
            c.hash(&mut h);
        }
        h.finish()
    }
}

fn wild_eq(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) =
        (a.chars().filter(|c| *c != ' ').collect(), b.chars().filter(|c| *c != ' ').collect());
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x == y || *x == UNKNOWN || *y == UNKNOWN)
}

/// Fellegi–Sunter score of two records.
fn score(w: &Weights, a: &Rec, b: &Rec) -> f64 {
    let mut s = 0.0;
    if a.kana.contains(UNKNOWN) || b.kana.contains(UNKNOWN) {
        s += if wild_eq(&a.kana, &b.kana) { w.kana_wildcard } else { w.given.1 };
    } else {
        s += if a.family() == b.family() { w.family.0 } else { w.family.1 };
        s += if a.given() == b.given() { w.given.0 } else { w.given.1 };
    }
    s += if a.kanji == b.kanji { w.kanji.0 } else { w.kanji.1 };
    let same = [a.birth.0 == b.birth.0, a.birth.1 == b.birth.1, a.birth.2 == b.birth.2];
    s += match same.iter().filter(|x| **x).count() {
        3 => w.birth.0,
        2 => w.birth.1,
        _ => w.birth.2,
    };
    s += if a.sex == b.sex { w.sex.0 } else { w.sex.1 };
    let eq = |x: u64, y: u64| x != NONE && x == y;
    let card_eq = a.has_card && b.has_card && a.card == b.card;
    s += if eq(a.phone, b.phone) {
        w.household.0
    } else if card_eq {
        w.household.1
    } else if eq(a.address, b.address) {
        w.household.2
    } else if eq(a.postal, b.postal) {
        w.household.3
    } else {
        w.household.4
    };
    if a.has_card && b.has_card {
        s += if a.insurer == b.insurer { w.insurer.0 } else { w.insurer.1 };
        if card_eq {
            s += if a.branch == b.branch { w.branch.0 } else { w.branch.1 };
        }
    }
    s
}

/// What registering one record did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Joined an existing person by a deterministic rule.
    Deterministic,
    /// Joined an existing person by score.
    Matched {
        /// The score.
        score: f64,
    },
    /// Started a new person.
    New,
    /// Started a new person and queued a review against a candidate.
    Review {
        /// The review item.
        item: u64,
    },
}

/// What the index keeps of one record for matching (built from a parsed or a stored identity).
#[derive(Debug, Clone, PartialEq)]
pub struct MatchView(Rec);

impl MatchView {
    /// From a parsed identity.
    pub fn of(id: &Identity) -> MatchView {
        MatchView(Rec::new(id))
    }
    /// From a stored identity, without re-parsing; `None` if its birth date or sex is unreadable.
    pub fn of_stored(s: &StoredIdentity) -> Option<MatchView> {
        Rec::from_stored(&s.as_ref()).map(MatchView)
    }
    /// From a stored identity borrowed from the vault, without re-parsing or copying it.
    pub fn of_stored_ref(s: &StoredRef<'_>) -> Option<MatchView> {
        Rec::from_stored(s).map(MatchView)
    }
}

/// The result of registering a record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Registration {
    /// The record's id in the MPI.
    pub record: RecordId,
    /// The person it was assigned.
    pub person: PersonKey,
    /// How.
    pub outcome: Outcome,
}

/// A pair the thresholds could not decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// Item id.
    pub id: u64,
    /// The new record.
    pub record: RecordId,
    /// The person it might belong to.
    pub candidate: PersonKey,
    /// The best score against that person.
    pub score: f64,
    /// Decided (by which decision), or open.
    pub decided_by: Option<u64>,
}

/// A reviewer's decision; each carries what is needed to undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DecisionKind {
    /// All records of `from` moved to `into`.
    Merge {
        /// Person that disappeared.
        from: PersonKey,
        /// Person that remains.
        into: PersonKey,
        /// The records moved.
        records: Vec<RecordId>,
    },
    /// One record moved out of `from` into the new person `to`.
    Split {
        /// The record.
        record: RecordId,
        /// Its former person.
        from: PersonKey,
        /// The new person.
        to: PersonKey,
    },
    /// Two persons declared different; they are never proposed together again.
    KeepApart {
        /// One person.
        a: PersonKey,
        /// The other.
        b: PersonKey,
    },
}

/// A recorded decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Decision id.
    pub id: u64,
    /// The review item it resolved, if any.
    pub item: Option<u64>,
    /// What was decided.
    pub kind: DecisionKind,
    /// Who decided (an operator id, never a patient identifier).
    pub by: String,
    /// Undone by a later call to [`Mpi::undo`].
    pub undone: bool,
}

/// One entry of the MPI's persisted log, beside the registered records themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LogEntry {
    /// A review item was opened at registration.
    Review(ReviewItem),
    /// A decision was made.
    Decision(Decision),
    /// A decision was undone.
    Undo {
        /// The decision.
        decision: u64,
        /// Who undid it.
        by: String,
    },
    /// Records were erased (P7).
    Forget {
        /// The records.
        records: Vec<RecordId>,
    },
}

/// Parses many records on all cores; one result per input, in order.
pub fn parse_bulk(inputs: &[IdentityInput]) -> Vec<Result<Identity, RecordError>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let chunk = inputs.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> =
            inputs.chunks(chunk).map(|c| s.spawn(move || c.iter().map(Identity::parse).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("parser thread")).collect()
    })
}

/// Errors of review operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MpiError {
    /// No such person.
    #[error("unknown person {0}")]
    UnknownPerson(PersonKey),
    /// No such record.
    #[error("unknown record {0:?}")]
    UnknownRecord(RecordId),
    /// No such review item or decision.
    #[error("unknown review item or decision {0}")]
    UnknownItem(u64),
    /// The decision was already undone, or later decisions depend on it.
    #[error("decision {0} cannot be undone: {1}")]
    CannotUndo(u64, &'static str),
    /// The review item was already decided (undo that decision first).
    #[error("review item {0} was already decided by decision {1}; undo it first")]
    Decided(u64, u64),
    /// `split` on a review item whose record is not in the candidate person.
    #[error("review item {0}: its record is not merged with the candidate; decide merge or keep-apart")]
    NotMerged(u64),
    /// The two persons were declared different.
    #[error("persons {0} and {1} were kept apart by decision {2}; undo it first")]
    KeptApart(PersonKey, PersonKey, u64),
}

/// The master patient index.
pub struct Mpi {
    cfg: MatchConfig,
    recs: Vec<Rec>,
    persons: FastMap<PersonKey, Vec<RecordId>>,
    by_birth_given: Chains,
    by_birth_family: Chains,
    by_birth: Chains,
    by_kana_ym: Chains,
    by_kana_yd: Chains,
    by_kana_md: Chains,
    by_phone: Chains,
    by_card: Chains,
    by_source: Chains,
    reviews: Vec<ReviewItem>,
    decisions: Vec<Decision>,
    apart: HashMap<(PersonKey, PersonKey), u64>,
    rng: ChaCha20Rng,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi").field("records", &self.recs.len()).field("persons", &self.persons.len()).finish()
    }
}

fn pair(a: PersonKey, b: PersonKey) -> (PersonKey, PersonKey) {
    if a <= b { (a, b) } else { (b, a) }
}

impl Mpi {
    /// An empty index whose person keys are drawn from the operating system's random source.
    pub fn new(cfg: MatchConfig) -> Mpi {
        Self::with_rng(cfg, ChaCha20Rng::from_seed(crate::keystore::random_bytes::<32>()))
    }

    /// An empty index with reproducible person keys (tests, demos).
    pub fn with_seed(cfg: MatchConfig, seed: u64) -> Mpi {
        Self::with_rng(cfg, ChaCha20Rng::seed_from_u64(seed))
    }

    fn with_rng(cfg: MatchConfig, rng: ChaCha20Rng) -> Mpi {
        Mpi {
            cfg,
            recs: vec![],
            persons: FastMap::default(),
            by_birth_given: Chains::default(),
            by_birth_family: Chains::default(),
            by_birth: Chains::default(),
            by_kana_ym: Chains::default(),
            by_kana_yd: Chains::default(),
            by_kana_md: Chains::default(),
            by_phone: Chains::default(),
            by_card: Chains::default(),
            by_source: Chains::default(),
            reviews: vec![],
            decisions: vec![],
            apart: HashMap::new(),
            rng,
        }
    }

    fn new_person(&mut self) -> PersonKey {
        loop {
            let k = PersonKey::from_u64(self.rng.next_u64());
            if k.as_u64() != 0 && !self.persons.contains_key(&k) {
                self.persons.insert(k, vec![]);
                return k;
            }
        }
    }

    fn candidates(&self, r: &Rec, out: &mut Vec<u32>) {
        out.clear();
        let keys = r.block_keys();
        let wild = r.kana.contains(UNKNOWN);
        let blocks = [
            (&self.by_birth_given, keys.birth_given),
            (&self.by_birth_family, keys.birth_family),
            (&self.by_kana_ym, keys.kana[0]),
            (&self.by_kana_yd, keys.kana[1]),
            (&self.by_kana_md, keys.kana[2]),
            (&self.by_phone, r.phone),
            (&self.by_card, keys.card),
            // The wide (birth, sex) block only for kana with unknown marks, whose name keys are useless.
            (&self.by_birth, if wild { keys.birth } else { NONE }),
        ];
        for (ix, key) in blocks {
            if key != NONE {
                ix.walk(key, self.cfg.max_block, out);
            }
        }
        out.sort_unstable();
        out.dedup();
    }

    fn index(&mut self, i: u32) {
        let r = &self.recs[i as usize];
        let keys = r.block_keys();
        let (phone, source) = (r.phone, r.source);
        self.by_birth_given.push(keys.birth_given, i);
        self.by_birth_family.push(keys.birth_family, i);
        self.by_birth.push(keys.birth, i);
        self.by_kana_ym.push(keys.kana[0], i);
        self.by_kana_yd.push(keys.kana[1], i);
        self.by_kana_md.push(keys.kana[2], i);
        self.by_phone.push(phone, i);
        self.by_card.push(keys.card, i);
        self.by_source.push(source, i);
    }

    /// Builds every blocking index over all live records at once (restore): the keys on all cores,
    /// then one thread per index. Gives the same chains as [`Mpi::index`] record by record.
    fn index_all(&mut self) {
        let recs = &self.recs;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
        // Sized once: growing by doubling would hold the old and new tables at once. The (birth,
        // sex) index has few blocks; every other one about one per record.
        let mut chains: Vec<Chains> = (0..9)
            .map(|c| Chains {
                head: HeadMap::with_capacity(if c == 2 { 1 << 16 } else { recs.len() }),
                prev: Vec::with_capacity(recs.len()),
            })
            .collect();
        // Keys are made a batch at a time (bounded memory at any size), then each index takes them.
        const BATCH: usize = 1 << 20;
        for start in (0..recs.len()).step_by(BATCH) {
            let batch = &recs[start..(start + BATCH).min(recs.len())];
            let per = batch.len().div_ceil(threads).max(1);
            let keys: Vec<[u64; 9]> = std::thread::scope(|sc| {
                let handles: Vec<_> = batch
                    .chunks(per)
                    .map(|chunk| {
                        sc.spawn(move || {
                            chunk
                                .iter()
                                .map(|r| {
                                    let k = r.block_keys();
                                    [
                                        k.birth_given,
                                        k.birth_family,
                                        k.birth,
                                        k.kana[0],
                                        k.kana[1],
                                        k.kana[2],
                                        r.phone,
                                        k.card,
                                        r.source,
                                    ]
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles.into_iter().flat_map(|h| h.join().expect("index key thread")).collect()
            });
            let keys = &keys;
            std::thread::scope(|sc| {
                for (c, ch) in chains.iter_mut().enumerate() {
                    sc.spawn(move || {
                        for (j, (k, r)) in keys.iter().zip(batch).enumerate() {
                            if !erased(r) {
                                ch.push(k[c], (start + j) as u32);
                            }
                        }
                    });
                }
            });
        }
        let mut it = chains.into_iter();
        let mut next = || it.next().expect("nine indexes");
        self.by_birth_given = next();
        self.by_birth_family = next();
        self.by_birth = next();
        self.by_kana_ym = next();
        self.by_kana_yd = next();
        self.by_kana_md = next();
        self.by_phone = next();
        self.by_card = next();
        self.by_source = next();
    }

    /// Registers one parsed identity and returns the person it was assigned.
    pub fn register(&mut self, id: &Identity) -> Registration {
        let mut buf = Vec::new();
        self.register_rec(Rec::new(id), &mut buf)
    }

    fn register_rec(&mut self, mut rec: Rec, buf: &mut Vec<u32>) -> Registration {
        self.candidates(&rec, buf);
        let w = self.cfg.weights;
        // Best score per candidate person; deterministic rule: same individual number, birth, sex.
        let mut best: Vec<(PersonKey, f64, bool)> = Vec::new();
        for &c in buf.iter() {
            let other = &self.recs[c as usize];
            if erased(other) {
                continue;
            }
            let det = rec.has_card
                && other.has_card
                && rec.insurer == other.insurer
                && rec.card == other.card
                && rec.branch == other.branch
                && rec.birth == other.birth
                && rec.sex == other.sex;
            let s = score(&w, &rec, other);
            match best.iter_mut().find(|b| b.0 == other.person) {
                Some(b) => {
                    b.1 = b.1.max(s);
                    b.2 |= det;
                }
                None => best.push((other.person, s, det)),
            }
        }
        best.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.total_cmp(&a.1)));
        let id = RecordId(self.recs.len() as u32);
        let (person, outcome) = match best.first() {
            Some(&(p, _, true)) => (p, Outcome::Deterministic),
            Some(&(p, s, false)) if s >= self.cfg.upper => (p, Outcome::Matched { score: s }),
            Some(&(p, s, false)) if s >= self.cfg.lower => {
                let np = self.new_person();
                let item = self.reviews.len() as u64 + 1;
                self.reviews.push(ReviewItem { id: item, record: id, candidate: p, score: s, decided_by: None });
                (np, Outcome::Review { item })
            }
            _ => (self.new_person(), Outcome::New),
        };
        rec.person = person;
        self.recs.push(rec);
        self.persons.entry(person).or_default().push(id);
        self.index(id.0);
        Registration { record: id, person, outcome }
    }

    /// Parses and registers many records: parsing runs on all cores, matching in input order.
    /// Returns one result per input, in order; rejected records never reach the index.
    pub fn register_bulk(&mut self, inputs: &[IdentityInput]) -> Vec<Result<Registration, RecordError>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
        let chunk = inputs.len().div_ceil(threads).max(1);
        let parsed: Vec<Result<Rec, RecordError>> = std::thread::scope(|s| {
            let handles: Vec<_> = inputs
                .chunks(chunk)
                .map(|c| {
                    s.spawn(move || c.iter().map(|i| Identity::parse(i).map(|id| Rec::new(&id))).collect::<Vec<_>>())
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("parser thread")).collect()
        });
        let mut buf = Vec::with_capacity(64);
        parsed.into_iter().map(|r| r.map(|rec| self.register_rec(rec, &mut buf))).collect()
    }

    /// Registers identities parsed beforehand (see [`parse_bulk`]), in order.
    pub fn register_parsed(&mut self, ids: &[&Identity]) -> Vec<Registration> {
        let mut buf = Vec::with_capacity(64);
        ids.iter().map(|id| self.register_rec(Rec::new(id), &mut buf)).collect()
    }

    /// Rebuilds an index from what was persisted: every record with the person it was registered
    /// to (record ids must be dense from 0; a missing id is an erased record), then the review
    /// items and the decision log replayed in order, so the result answers exactly as before.
    /// `next_record` is one past the highest record id ever handed out, so erased ids are never reused.
    pub fn restore(
        cfg: MatchConfig,
        next_record: u32,
        records: Vec<(RecordId, PersonKey, MatchView)>,
        log: impl IntoIterator<Item = LogEntry>,
    ) -> Result<Mpi, MpiError> {
        Self::restore_parts(cfg, next_record, vec![records], log)
    }

    /// [`Mpi::restore`] from consecutive runs of records (one per thread that made them); each run is
    /// moved into the index and freed before the next, so the views are never held twice.
    pub fn restore_parts(
        cfg: MatchConfig,
        next_record: u32,
        parts: Vec<Vec<(RecordId, PersonKey, MatchView)>>,
        log: impl IntoIterator<Item = LogEntry>,
    ) -> Result<Mpi, MpiError> {
        let mut m = Mpi::new(cfg);
        let mut next = 0u32;
        m.recs.reserve_exact(next_record as usize);
        for (id, person, identity) in parts.into_iter().flatten() {
            while next < id.0 {
                // Erased (P7): a placeholder keeps record ids stable; it is never indexed.
                m.recs.push(Rec::tombstone());
                next += 1;
            }
            if id.0 != next {
                return Err(MpiError::UnknownRecord(id));
            }
            let mut rec = identity.0;
            rec.person = person;
            m.recs.push(rec);
            m.persons.entry(person).or_default().push(id);
            next += 1;
        }
        while next < next_record {
            m.recs.push(Rec::tombstone());
            next += 1;
        }
        m.index_all();
        for e in log {
            m.replay(e)?;
        }
        Ok(m)
    }

    /// Adds one persisted record with the person it was registered to (catching up with a vault
    /// another process appended to); ids skipped on the way were erased.
    pub fn add_restored(&mut self, id: RecordId, person: PersonKey, view: MatchView) -> Result<(), MpiError> {
        if (id.0 as usize) < self.recs.len() {
            return Err(MpiError::UnknownRecord(id));
        }
        while (self.recs.len() as u32) < id.0 {
            self.recs.push(Rec::tombstone());
        }
        let mut rec = view.0;
        rec.person = person;
        self.recs.push(rec);
        self.persons.entry(person).or_default().push(id);
        self.index(id.0);
        Ok(())
    }

    /// The person a person key handed out earlier (e.g. at intake, now in the clinical store) stands
    /// for today: merges not undone are followed (`from` → `into`), so clinical rows keyed before a
    /// merge link to the merged person when a release is made. A split moves single records, which
    /// person keys alone cannot follow; those persons answer themselves.
    pub fn current_person(&self, mut p: PersonKey) -> PersonKey {
        // Each hop follows a later decision than the last, so this ends.
        let mut after = 0u64;
        loop {
            let next = self.decisions.iter().find(|d| {
                d.id > after && !d.undone && matches!(&d.kind, DecisionKind::Merge { from, .. } if *from == p)
            });
            match next {
                Some(Decision { id, kind: DecisionKind::Merge { into, .. }, .. }) => {
                    after = *id;
                    p = *into;
                }
                _ => return p,
            }
        }
    }

    /// The matching configuration.
    pub fn config(&self) -> MatchConfig {
        self.cfg
    }

    /// Applies one persisted log entry (used by [`Mpi::restore`] and when catching up).
    pub fn replay(&mut self, e: LogEntry) -> Result<(), MpiError> {
        match e {
            LogEntry::Review(item) => {
                if item.id != self.reviews.len() as u64 + 1 {
                    return Err(MpiError::UnknownItem(item.id));
                }
                self.reviews.push(ReviewItem { decided_by: None, ..item });
            }
            LogEntry::Decision(d) => {
                if d.id != self.decisions.len() as u64 + 1 {
                    return Err(MpiError::UnknownItem(d.id));
                }
                match &d.kind {
                    DecisionKind::Merge { from, into, records } => {
                        self.persons.entry(*into).or_default();
                        self.move_records(records, *from, *into);
                    }
                    DecisionKind::Split { record, from, to } => {
                        self.persons.entry(*to).or_default();
                        self.move_records(&[*record], *from, *to);
                        self.apart.insert(pair(*from, *to), d.id);
                    }
                    DecisionKind::KeepApart { a, b } => {
                        self.apart.insert(pair(*a, *b), d.id);
                    }
                }
                self.record(d.item, d.kind, &d.by);
            }
            LogEntry::Undo { decision, by } => self.undo(decision, &by)?,
            LogEntry::Forget { records } => self.forget(&records),
        }
        Ok(())
    }

    /// Erases records from the index (P7): they are never matched or returned again; their ids stay
    /// taken so the decision log still reads.
    pub fn forget(&mut self, records: &[RecordId]) {
        for r in records {
            let Some(rec) = self.recs.get_mut(r.0 as usize) else { continue };
            let p = std::mem::replace(&mut rec.person, PersonKey::from_u64(0));
            if let Some(v) = self.persons.get_mut(&p) {
                v.retain(|x| x != r);
            }
        }
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.recs.len()
    }
    /// Number of persons.
    pub fn person_count(&self) -> usize {
        self.persons.values().filter(|v| !v.is_empty()).count()
    }
    /// The person a record currently belongs to (`None` for unknown or erased records).
    pub fn person_of(&self, record: RecordId) -> Option<PersonKey> {
        self.recs.get(record.0 as usize).filter(|r| !erased(r)).map(|r| r.person)
    }
    /// Whether `person` was ever handed out (it may have no records left after a merge).
    pub fn knows_person(&self, person: PersonKey) -> bool {
        self.persons.contains_key(&person)
    }
    /// A review item by id, open or decided.
    pub fn review(&self, item: u64) -> Option<&ReviewItem> {
        self.reviews.iter().find(|r| r.id == item)
    }
    /// All review items, oldest first.
    pub fn reviews(&self) -> &[ReviewItem] {
        &self.reviews
    }
    /// The records of a person.
    pub fn records_of(&self, person: PersonKey) -> &[RecordId] {
        self.persons.get(&person).map_or(&[], |v| v.as_slice())
    }
    /// Looks up the records a provider registered under its patient id.
    pub fn lookup(&self, provider: &str, patient: &str) -> Vec<(RecordId, PersonKey)> {
        let key = fp(&[provider.as_bytes(), patient.as_bytes()]);
        let mut v = vec![];
        self.by_source.walk(key, usize::MAX, &mut v);
        v.reverse(); // oldest first
        v.into_iter()
            .filter(|&i| !erased(&self.recs[i as usize]))
            .map(|i| (RecordId(i), self.recs[i as usize].person))
            .collect()
    }
    /// Persons that have at least one live record, sorted.
    pub fn persons_with_records(&self) -> Vec<PersonKey> {
        let mut v: Vec<PersonKey> = self.persons.iter().filter(|(_, r)| !r.is_empty()).map(|(p, _)| *p).collect();
        v.sort_unstable();
        v
    }
    /// Open review items.
    pub fn review_queue(&self) -> impl Iterator<Item = &ReviewItem> {
        self.reviews.iter().filter(|r| r.decided_by.is_none())
    }
    /// All decisions, oldest first.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    fn record(&mut self, item: Option<u64>, kind: DecisionKind, by: &str) -> u64 {
        let id = self.decisions.len() as u64 + 1;
        if let Some(i) = item
            && let Some(r) = self.reviews.iter_mut().find(|r| r.id == i)
        {
            r.decided_by = Some(id);
        }
        self.decisions.push(Decision { id, item, kind, by: by.to_owned(), undone: false });
        id
    }

    fn move_records(&mut self, records: &[RecordId], from: PersonKey, to: PersonKey) {
        let live: Vec<RecordId> =
            records.iter().copied().filter(|r| self.recs.get(r.0 as usize).is_some_and(|x| !erased(x))).collect();
        for r in &live {
            self.recs[r.0 as usize].person = to;
        }
        if let Some(v) = self.persons.get_mut(&from) {
            v.retain(|r| !live.contains(r));
        }
        self.persons.entry(to).or_default().extend_from_slice(&live);
    }

    /// Merges person `from` into `into` (both keys stay recorded; `from` becomes empty).
    pub fn merge(&mut self, from: PersonKey, into: PersonKey, item: Option<u64>, by: &str) -> Result<u64, MpiError> {
        for p in [from, into] {
            if !self.persons.contains_key(&p) {
                return Err(MpiError::UnknownPerson(p));
            }
        }
        if let Some(&d) = self.apart.get(&pair(from, into)) {
            return Err(MpiError::KeptApart(from, into, d));
        }
        let records = self.persons[&from].clone();
        self.move_records(&records, from, into);
        Ok(self.record(item, DecisionKind::Merge { from, into, records }, by))
    }

    /// Moves one record out of its person into a new person.
    pub fn split(&mut self, record: RecordId, by: &str) -> Result<(u64, PersonKey), MpiError> {
        self.split_for(record, None, by)
    }

    /// Resolves a review item by splitting its record out of the person it is in now (after an
    /// earlier merge), into a new person kept apart from the old one.
    pub fn split_item(&mut self, item: u64, by: &str) -> Result<(u64, PersonKey), MpiError> {
        let it = self.review(item).ok_or(MpiError::UnknownItem(item))?;
        let record = it.record;
        if self.person_of(record) != Some(it.candidate) {
            return Err(MpiError::NotMerged(item));
        }
        self.split_for(record, Some(item), by)
    }

    fn split_for(&mut self, record: RecordId, item: Option<u64>, by: &str) -> Result<(u64, PersonKey), MpiError> {
        let from = self.person_of(record).ok_or(MpiError::UnknownRecord(record))?;
        let to = self.new_person();
        self.move_records(&[record], from, to);
        let d = self.record(item, DecisionKind::Split { record, from, to }, by);
        self.apart.insert(pair(from, to), d);
        Ok((d, to))
    }

    fn open_item(&self, item: u64) -> Result<&ReviewItem, MpiError> {
        let it = self.review(item).ok_or(MpiError::UnknownItem(item))?;
        match it.decided_by {
            Some(d) => Err(MpiError::Decided(item, d)),
            None => Ok(it),
        }
    }

    /// Resolves a review item as two different persons.
    pub fn keep_apart(&mut self, item: u64, by: &str) -> Result<u64, MpiError> {
        let it = self.open_item(item)?;
        let (a, b) = (self.recs[it.record.0 as usize].person, it.candidate);
        let d = self.record(Some(item), DecisionKind::KeepApart { a, b }, by);
        self.apart.insert(pair(a, b), d);
        Ok(d)
    }

    /// Resolves a review item as one person: the record's person merges into the candidate.
    pub fn accept(&mut self, item: u64, by: &str) -> Result<u64, MpiError> {
        let it = self.open_item(item)?;
        let (from, into) = (self.recs[it.record.0 as usize].person, it.candidate);
        self.merge(from, into, Some(item), by)
    }

    /// Reverts a decision; allowed only for the latest decision not yet undone, so history stays linear.
    pub fn undo(&mut self, decision: u64, by: &str) -> Result<(), MpiError> {
        let latest = self.decisions.iter().rev().find(|d| !d.undone).map(|d| d.id);
        let d = self.decisions.iter().find(|d| d.id == decision).ok_or(MpiError::UnknownItem(decision))?.clone();
        if d.undone {
            return Err(MpiError::CannotUndo(decision, "already undone"));
        }
        if latest != Some(decision) {
            return Err(MpiError::CannotUndo(decision, "later decisions must be undone first"));
        }
        match &d.kind {
            DecisionKind::Merge { from, into, records } => self.move_records(records, *into, *from),
            DecisionKind::Split { record, from, to } => {
                self.move_records(&[*record], *to, *from);
                self.apart.remove(&pair(*from, *to));
            }
            DecisionKind::KeepApart { a, b } => {
                self.apart.remove(&pair(*a, *b));
            }
        }
        if let Some(i) = d.item
            && let Some(r) = self.reviews.iter_mut().find(|r| r.id == i)
        {
            r.decided_by = None;
        }
        let _ = by;
        self.decisions[decision as usize - 1].undone = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_map_finds_replaces_grows_and_compares_by_content() {
        let mut a = HeadMap::default();
        let mut b = HeadMap::with_capacity(5000);
        // Keys crowded into few home slots (small high bits) and spread ones, through several growths.
        let keys: Vec<u64> =
            (1..3000u64).map(|i| if i % 2 == 0 { i } else { i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 }).collect();
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(a.insert(*k, n as u32), None);
        }
        for (n, k) in keys.iter().enumerate().rev() {
            b.insert(*k, n as u32);
        }
        assert!(a == b, "same content, other capacity and order");
        assert_eq!(a.insert(keys[7], 99), Some(7));
        assert!(a != b);
        assert_eq!((a.get(keys[7]), a.get(keys[8]), a.get(4_000_000)), (Some(99), Some(8), None));
        assert_eq!(a.len, keys.len());
        assert_eq!(HeadMap::default().get(5), None);
    }

    fn input(kanji: &str, kana: &str, birth: &str, phone: &str, branch: &str) -> IdentityInput {
        IdentityInput {
            provider_id: "prov-a".into(),
            patient_id: format!("{:x}", fp(&[kana.as_bytes(), branch.as_bytes()]) % 1_000_000),
            name_kanji: kanji.into(),
            name_kana: kana.into(),
            sex: "2".into(),
            birth_date: birth.into(),
            postal_code: "1000001".into(),
            address: "東京都千代田区1-2-3".into(),
            phone: phone.into(),
            insurer_number: "01130012".into(),
            card_symbol: "1234".into(),
            card_number: "567".into(),
            card_branch: branch.into(),
        }
    }

    fn reg(m: &mut Mpi, i: IdentityInput) -> Registration {
        m.register(&Identity::parse(&i).unwrap())
    }

    #[test]
    fn same_sex_twins_are_kept_apart() {
        let mut m = Mpi::with_seed(MatchConfig::default(), 1);
        let a = reg(&mut m, input("山田 花子", "ヤマダ ハナコ", "2001-05-05", "0312345678", "01"));
        let b = reg(&mut m, input("山田 桃子", "ヤマダ モモコ", "2001-05-05", "0312345678", "02"));
        assert_ne!(a.person, b.person);
        assert!(matches!(b.outcome, Outcome::New), "{:?}", b.outcome);
        // The same twin seen by a legacy provider joins the right one.
        let c = reg(&mut m, input("山田桃子", "ﾔﾏﾀﾞ ﾓﾓｺ", "平成13年5月5日", "03-1234-5678", "2"));
        assert_eq!(c.person, b.person);
        assert_eq!(c.outcome, Outcome::Deterministic);
    }

    #[test]
    fn marriage_and_insurer_change_still_match() {
        let mut m = Mpi::with_seed(MatchConfig::default(), 1);
        let a = reg(&mut m, input("佐藤 花子", "サトウ ハナコ", "1985-01-02", "0901111222", "00"));
        let mut married = input("鈴木 花子", "すずき はなこ", "1985-01-02", "0901111222", "00");
        married.insurer_number = "06130017".into();
        married.card_number = "99".into();
        let b = reg(&mut m, married);
        assert_eq!(b.person, a.person, "{:?}", b.outcome);
        assert!(matches!(b.outcome, Outcome::Matched { .. }));
    }

    #[test]
    fn strangers_with_the_same_birthday_are_different_people() {
        let mut m = Mpi::with_seed(MatchConfig::default(), 1);
        let a = reg(&mut m, input("佐藤 花子", "サトウ ハナコ", "1985-01-02", "0901111222", "00"));
        let mut other = input("田中 良子", "タナカ ヨシコ", "1985-01-02", "0903333444", "00");
        other.card_number = "12".into();
        other.address = "大阪府".into();
        other.postal_code = "5300001".into();
        let b = reg(&mut m, other);
        assert_ne!(a.person, b.person);
        assert_eq!(b.outcome, Outcome::New);
    }

    #[test]
    fn p7_restore_builds_the_same_indexes_as_registration() {
        let mut m = Mpi::with_seed(MatchConfig::default(), 3);
        let (inputs, _) = crate::eval::synth_inputs(&kiban_model::synth::SynthConfig::default(), 0..300);
        let ids: Vec<Identity> = inputs.iter().map(|i| Identity::parse(i).unwrap()).collect();
        let regs: Vec<Registration> = ids.iter().map(|id| m.register(id)).collect();
        // Erase one in the middle: restore sees a gap (tombstone) there.
        let gone = regs[150].record;
        m.forget(&[gone]);
        let records = regs
            .iter()
            .zip(&ids)
            .filter(|(r, _)| r.record != gone)
            .map(|(r, id)| (r.record, m.person_of(r.record).unwrap(), MatchView::of(id)))
            .collect();
        let r = Mpi::restore(
            MatchConfig::default(),
            regs.len() as u32,
            records,
            m.reviews().iter().cloned().map(LogEntry::Review),
        )
        .unwrap();
        let live = |c: &Chains| c.prev.len();
        assert!(live(&r.by_source) > 0);
        // Registration indexed the erased record too; restore never sees it: compare all but it.
        let mut m2 = Mpi::with_seed(MatchConfig::default(), 3);
        for (reg, id) in regs.iter().zip(&ids) {
            if reg.record == gone {
                m2.recs.push(Rec::tombstone());
            } else {
                let mut rec = Rec::new(id);
                rec.person = m.person_of(reg.record).unwrap();
                m2.recs.push(rec);
                m2.index(reg.record.0);
            }
        }
        for (a, b) in [
            (&r.by_birth_given, &m2.by_birth_given),
            (&r.by_birth_family, &m2.by_birth_family),
            (&r.by_birth, &m2.by_birth),
            (&r.by_kana_ym, &m2.by_kana_ym),
            (&r.by_kana_yd, &m2.by_kana_yd),
            (&r.by_kana_md, &m2.by_kana_md),
            (&r.by_phone, &m2.by_phone),
            (&r.by_card, &m2.by_card),
            (&r.by_source, &m2.by_source),
        ] {
            assert!(a.head == b.head && a.prev[..] == b.prev[..a.prev.len()], "an index differs after restore");
        }
    }

    #[test]
    fn a3_an_intake_person_key_follows_merges_until_undone() {
        let mut m = Mpi::with_seed(MatchConfig::default(), 7);
        let a = reg(&mut m, input("山田 花子", "ヤマダ ハナコ", "1980-01-01", "0312345678", "01")).person;
        let b = reg(&mut m, input("鈴木 一郎", "スズキ イチロウ", "1970-02-02", "0398765432", "02")).person;
        let c = reg(&mut m, input("田中 次郎", "タナカ ジロウ", "1960-03-03", "0311112222", "03")).person;
        assert_eq!(m.current_person(a), a);
        let d1 = m.merge(a, b, None, "op").unwrap();
        let d2 = m.merge(b, c, None, "op").unwrap();
        assert_eq!(m.current_person(a), c, "a → b → c");
        m.undo(d2, "op").unwrap();
        assert_eq!(m.current_person(a), b, "an undone merge is not followed");
        m.undo(d1, "op").unwrap();
        assert_eq!((m.current_person(a), m.current_person(b)), (a, b));
    }

    #[test]
    fn p7_review_decisions_are_recorded_and_reversible() {
        let cfg = MatchConfig { upper: 100.0, lower: 0.0, ..Default::default() };
        let mut m = Mpi::with_seed(cfg, 1);
        let a = reg(&mut m, input("佐藤 花子", "サトウ ハナコ", "1985-01-02", "0901111222", "00"));
        let b = reg(&mut m, input("佐藤 花子", "ｻﾄｳ ﾊﾅｺ", "1985-01-02", "0901111222", "01"));
        let Outcome::Review { item } = b.outcome else { panic!("{:?}", b.outcome) };
        assert_eq!(m.review_queue().count(), 1);
        assert!(matches!(m.split_item(item, "op-1"), Err(MpiError::NotMerged(_))), "nothing to split yet");
        let d = m.accept(item, "op-1").unwrap();
        assert_eq!(m.person_of(b.record), Some(a.person));
        assert_eq!(m.review_queue().count(), 0);
        assert!(matches!(m.keep_apart(item, "op-1"), Err(MpiError::Decided(_, _))), "decided items stay decided");
        m.undo(d, "op-1").unwrap();
        assert_eq!(m.person_of(b.record), Some(b.person));
        assert_eq!(m.review_queue().count(), 1);
        let k = m.keep_apart(item, "op-2").unwrap();
        assert!(matches!(m.merge(b.person, a.person, None, "op-3"), Err(MpiError::KeptApart(..))));
        m.undo(k, "op-2").unwrap();
        m.merge(b.person, a.person, None, "op-3").unwrap();
        let (s, new) = m.split(b.record, "op-3").unwrap();
        assert_eq!(m.records_of(new), &[b.record]);
        assert!(m.undo(d, "x").is_err(), "undone decisions cannot be undone twice");
        m.undo(s, "op-3").unwrap();
        assert_eq!(m.person_of(b.record), Some(a.person));
        assert_eq!(m.decisions().len(), 4);
    }

    #[test]
    fn namesakes_born_the_same_day_are_not_merged_without_corroboration() {
        // At 10 million records same-name same-birthday strangers are common; name and birth date
        // alone must not reach the upper threshold: with nothing else agreeing it goes to review.
        let mut m = Mpi::with_seed(MatchConfig::default(), 1);
        let a = reg(&mut m, input("佐藤 花子", "サトウ ハナコ", "1985-01-02", "0901111222", "00"));
        let mut other = input("佐藤 花子", "サトウ ハナコ", "1985-01-02", "0665554444", "00");
        other.insurer_number = "06130017".into();
        other.card_number = "99".into();
        other.address = "大阪府大阪市北区1-1".into();
        other.postal_code = "5300001".into();
        let b = reg(&mut m, other);
        assert_ne!(b.person, a.person);
        assert!(matches!(b.outcome, Outcome::Review { .. }), "{:?}", b.outcome);
    }

    #[test]
    fn a_birth_date_wrong_in_one_part_still_meets_its_person() {
        let mut m = Mpi::with_seed(MatchConfig::default(), 1);
        let a = reg(&mut m, input("佐藤 花子", "サトウ ハナコ", "1985-01-02", "0901111222", "00"));
        for typo in ["1985-01-03", "1985-02-02", "1986-01-02"] {
            let mut other = input("佐藤 花子", "サトウ ハナコ", typo, "", "00");
            other.insurer_number = String::new();
            let b = reg(&mut m, other);
            // Only the kana-with-two-date-parts blocks bring them together; the score sends it to review.
            let Outcome::Review { item } = b.outcome else { panic!("{typo}: {:?}", b.outcome) };
            assert_eq!(m.review(item).unwrap().candidate, a.person);
        }
    }

    #[test]
    fn unknown_marks_never_match_on_their_own() {
        let mut m = Mpi::with_seed(MatchConfig::default(), 1);
        let a = reg(&mut m, input("佐藤 花子", "サトウ ハナコ", "1985-01-02", "0901111222", "00"));
        let mut blurred = input("佐藤 花子", "サトウ ハナ●", "1985-01-02", "0901111222", "00");
        blurred.insurer_number = String::new();
        let b = reg(&mut m, blurred);
        // Wildcard agreement is weaker than a real one but the rest of the record carries it.
        assert_eq!(b.person, a.person);
        let mut stranger = input("佐藤 花子", "●●ウ ●●●", "1985-01-02", "", "00");
        stranger.insurer_number = String::new();
        stranger.address = String::new();
        stranger.postal_code = String::new();
        let c = reg(&mut m, stranger);
        assert_ne!(c.person, a.person, "{:?}", c.outcome);
    }
}
