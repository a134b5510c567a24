//! The vault's live identities: a record-id → place table ([`Records`]; the identities stay sealed
//! on disk), and the snapshot's compact binary encoding of an identity.
//!
//! Encoding of one record (little-endian): record u32, person u64, normalization u32, then provider,
//! patient, kanji, kana, sex, birth, postal, address, phone and the four card fields, each a
//! LEB128 length (one byte below 128) and UTF-8 bytes. Every block is checked when it is taken in
//! (lengths and UTF-8), so decoding a record later cannot fail.

use super::StoredIdentity;

const FIELDS: usize = 13;

/// A stored identity borrowed from its block (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRef<'a> {
    /// MPI record id.
    pub record: u32,
    /// Person key the record was registered to.
    pub person: u64,
    /// Canonical form version.
    pub normalization: u32,
    /// Provider, patient, kanji, kana, sex, birth, postal, address, phone, then the card's insurer
    /// number, symbol, number and branch, in the order of [`StoredIdentity`].
    pub fields: [&'a str; FIELDS],
}

impl StoredRef<'_> {
    /// Provider id.
    pub fn provider(&self) -> &str {
        self.fields[0]
    }
    /// Provider patient id.
    pub fn patient(&self) -> &str {
        self.fields[1]
    }
    /// Kanji name.
    pub fn kanji(&self) -> &str {
        self.fields[2]
    }
    /// Kana name.
    pub fn kana(&self) -> &str {
        self.fields[3]
    }
    /// Sex code.
    pub fn sex(&self) -> &str {
        self.fields[4]
    }
    /// Birth date, ISO.
    pub fn birth(&self) -> &str {
        self.fields[5]
    }
    /// Postal code digits.
    pub fn postal(&self) -> &str {
        self.fields[6]
    }
    /// Address.
    pub fn address(&self) -> &str {
        self.fields[7]
    }
    /// Phone digits.
    pub fn phone(&self) -> &str {
        self.fields[8]
    }
    /// Insurer number, symbol, number, branch.
    pub fn card(&self) -> [&str; 4] {
        [self.fields[9], self.fields[10], self.fields[11], self.fields[12]]
    }
    /// The owned form.
    pub fn to_owned(&self) -> StoredIdentity {
        let f = |i: usize| self.fields[i].to_owned();
        StoredIdentity {
            record: self.record,
            person: self.person,
            normalization: self.normalization,
            provider: f(0),
            patient: f(1),
            kanji: f(2),
            kana: f(3),
            sex: f(4),
            birth: f(5),
            postal: f(6),
            address: f(7),
            phone: f(8),
            card: [f(9), f(10), f(11), f(12)],
        }
    }
    /// Whether it is `s` field for field.
    pub fn same_as(&self, s: &StoredIdentity) -> bool {
        self.record == s.record
            && self.person == s.person
            && self.normalization == s.normalization
            && self.fields == fields_of(s)
    }
}

impl StoredIdentity {
    /// The borrowed form.
    pub fn as_ref(&self) -> StoredRef<'_> {
        StoredRef {
            record: self.record,
            person: self.person,
            normalization: self.normalization,
            fields: fields_of(self),
        }
    }
}

fn fields_of(s: &StoredIdentity) -> [&str; FIELDS] {
    [
        &s.provider,
        &s.patient,
        &s.kanji,
        &s.kana,
        &s.sex,
        &s.birth,
        &s.postal,
        &s.address,
        &s.phone,
        &s.card[0],
        &s.card[1],
        &s.card[2],
        &s.card[3],
    ]
}

/// Appends the encoding of `s` to `out`.
pub(super) fn encode_into(out: &mut Vec<u8>, s: &StoredRef<'_>) {
    out.extend_from_slice(&s.record.to_le_bytes());
    out.extend_from_slice(&s.person.to_le_bytes());
    out.extend_from_slice(&s.normalization.to_le_bytes());
    for f in s.fields {
        let mut n = f.len();
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(f.as_bytes());
    }
}

/// A LEB128 length at `p` of `b`: (value, bytes it took), or `None` if truncated or over 2^28.
fn varint(b: &[u8], p: usize) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for i in 0..4 {
        let c = *b.get(p + i)?;
        v |= usize::from(c & 0x7f) << (7 * i);
        if c < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Checks one record at `at` of `b`: its length, or why it is malformed.
fn check(b: &[u8], at: usize) -> Result<usize, String> {
    let mut p = at + 16;
    if p > b.len() {
        return Err("a record is truncated".into());
    }
    for _ in 0..FIELDS {
        let (n, w) = varint(b, p).ok_or("a record field length is truncated")?;
        p += w;
        let s = b.get(p..p + n).ok_or("a record field is truncated")?;
        std::str::from_utf8(s).map_err(|_| "a record field is not UTF-8".to_owned())?;
        p += n;
    }
    Ok(p - at)
}

/// Decodes the (checked) record at `at` of `b`.
fn decode(b: &[u8], at: usize) -> StoredRef<'_> {
    let mut p = at + 16;
    let fields = std::array::from_fn(|_| {
        let (n, w) = varint(b, p).expect("blocks are checked when taken in");
        let s = std::str::from_utf8(&b[p + w..p + w + n]).expect("blocks are checked when taken in");
        p += w + n;
        s
    });
    StoredRef {
        record: u32_at(b, at),
        person: u64::from_le_bytes(b[at + 4..at + 12].try_into().expect("8 bytes")),
        normalization: u32_at(b, at + 12),
        fields,
    }
}

/// Where a live identity is: in a sealed chunk of the snapshot this vault was opened from (chunk,
/// byte offset in its plaintext) or in a frame of the vault file (the frame's file offset, the
/// entry's index in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Place {
    /// Snapshot chunk and offset.
    Snap(u32, u32),
    /// Vault frame offset and entry index.
    Frame(u64, u32),
}

const SNAP_BIT: u64 = 1 << 63;

/// The live identities by record id: where each one is (20 bytes a record), not the identity
/// itself, which stays sealed on disk and is read on demand ([`super::Vault::read_records`]). An
/// identity in memory cost about 190 bytes at 10 million records; its place and a digest of its
/// canonical fields (to tell a resubmitted identical record without reading it) cost 20.
#[derive(Default)]
pub struct Records {
    /// `Place` packed: `SNAP_BIT | chunk` or the frame offset; `u64::MAX` when absent.
    at: Vec<u64>,
    /// Byte offset in the chunk, or entry index in the frame.
    sub: Vec<u32>,
    /// [`content_digest`] of the identity.
    digest: Vec<u64>,
    live: usize,
}

const GONE: u64 = u64::MAX;

/// A 64-bit digest of a stored identity's normalization version and fields (not its record id or
/// person): equal digests mean the same canonical identity. Kept in memory only for that test.
pub fn content_digest(s: &StoredRef<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    s.normalization.hash(&mut h);
    s.fields.hash(&mut h);
    h.finish()
}

impl Records {
    /// Adds or replaces a record at `place`.
    pub(super) fn put(&mut self, record: u32, place: Place, digest: u64) {
        let i = record as usize;
        if i >= self.at.len() {
            self.at.resize(i + 1, GONE);
            self.sub.resize(i + 1, 0);
            self.digest.resize(i + 1, 0);
        }
        if self.at[i] == GONE {
            self.live += 1;
        }
        (self.at[i], self.sub[i]) = match place {
            Place::Snap(c, o) => (SNAP_BIT | u64::from(c), o),
            Place::Frame(f, s) => (f, s),
        };
        self.digest[i] = digest;
    }

    /// Moves a live record to `place` (the same identity rewritten elsewhere).
    pub(super) fn relocate(&mut self, record: u32, place: Place) {
        if self.contains(record) {
            let d = self.digest[record as usize];
            self.put(record, place, d);
        }
    }

    /// Removes a record.
    pub(super) fn remove(&mut self, record: u32) {
        let i = record as usize;
        if self.at.get(i).is_some_and(|a| *a != GONE) {
            self.at[i] = GONE;
            self.live -= 1;
        }
    }

    /// Where a live record is.
    pub(super) fn place(&self, record: u32) -> Option<Place> {
        let i = record as usize;
        let a = *self.at.get(i)?;
        if a == GONE {
            None
        } else if a & SNAP_BIT != 0 {
            Some(Place::Snap((a & !SNAP_BIT) as u32, self.sub[i]))
        } else {
            Some(Place::Frame(a, self.sub[i]))
        }
    }

    /// The live records with their places, in record order.
    pub(super) fn places(&self) -> impl Iterator<Item = (u32, Place)> + '_ {
        (0..self.at.len() as u32).filter_map(|r| self.place(r).map(|p| (r, p)))
    }

    /// The digest of a live record's canonical identity ([`content_digest`]).
    pub fn digest(&self, record: u32) -> Option<u64> {
        self.contains(record).then(|| self.digest[record as usize])
    }

    /// Whether a record is live.
    pub fn contains(&self, record: u32) -> bool {
        self.at.get(record as usize).is_some_and(|a| *a != GONE)
    }

    /// Live record ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.at.iter().enumerate().filter(|(_, a)| **a != GONE).map(|(i, _)| i as u32)
    }

    /// One past the highest record id with a place (live or not).
    pub fn id_bound(&self) -> usize {
        self.at.len()
    }

    /// Number of live records.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes held, for the benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.at.capacity() * 8 + self.sub.capacity() * 4 + self.digest.capacity() * 8
    }
}

/// Checks a block of encoded records (a snapshot chunk): each record's offset and borrowed form.
pub(super) fn scan_block(block: &[u8]) -> Result<Vec<(u32, StoredRef<'_>)>, String> {
    let mut p = 0;
    let mut out = vec![];
    while p < block.len() {
        let len = check(block, p)?;
        out.push((p as u32, decode(block, p)));
        p += len;
    }
    Ok(out)
}

/// The record at byte `offset` of a (checked) block, if one starts there.
pub(super) fn record_at(block: &[u8], offset: u32) -> Option<StoredRef<'_>> {
    let at = offset as usize;
    check(block, at).ok().map(|_| decode(block, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(record: u32, kana: &str) -> StoredIdentity {
        StoredIdentity {
            record,
            person: 7,
            normalization: 1,
            provider: "p".into(),
            patient: format!("{record}"),
            kanji: "山田 花子".into(),
            kana: kana.into(),
            sex: "2".into(),
            birth: "1980-01-02".into(),
            postal: String::new(),
            address: "東京都".into(),
            phone: String::new(),
            card: Default::default(),
        }
    }

    #[test]
    fn places_replace_remove_and_blocks_round_trip() {
        let mut r = Records::default();
        r.put(0, Place::Frame(8, 1), 5);
        r.put(2, Place::Snap(3, 40), 6);
        r.put(0, Place::Frame(100, 0), 7);
        assert_eq!(r.len(), 2);
        assert_eq!(r.place(0), Some(Place::Frame(100, 0)));
        assert_eq!(r.place(2), Some(Place::Snap(3, 40)));
        assert_eq!((r.digest(0), r.place(1), r.place(9)), (Some(7), None, None));
        r.remove(2);
        assert_eq!(r.places().collect::<Vec<_>>(), vec![(0, Place::Frame(100, 0))]);
        assert_eq!(r.ids().collect::<Vec<_>>(), vec![0]);
        let mut block = vec![];
        encode_into(&mut block, &s(1, "オ").as_ref());
        let second = block.len() as u32;
        let mut long = s(3, "カ");
        long.address = "あ".repeat(100); // a 300-byte field takes a two-byte length
        encode_into(&mut block, &long.as_ref());
        let got: Vec<StoredIdentity> = scan_block(&block).unwrap().iter().map(|(_, r)| r.to_owned()).collect();
        assert_eq!(got, vec![s(1, "オ"), long.clone()]);
        assert_eq!(record_at(&block, second).unwrap().to_owned(), long);
        let mut elsewhere = s(1, "オ");
        (elsewhere.record, elsewhere.person) = (9, 3);
        assert_eq!(content_digest(&record_at(&block, 0).unwrap()), content_digest(&elsewhere.as_ref()));
        assert_ne!(content_digest(&record_at(&block, 0).unwrap()), content_digest(&s(1, "ア").as_ref()));
        let n = block.len();
        assert!(scan_block(&block[..n - 1]).is_err(), "truncated");
        block[n - 1] = 0xff;
        assert!(scan_block(&block).is_err(), "not UTF-8");
    }
}
