//! The vault's live identities in memory, in the snapshot's compact binary encoding: records packed
//! one after another into large blocks, with a record-id → place table. Thirteen `String`s and a
//! B-tree node per record cost about 800 bytes at 10 million records; this layout costs the
//! encoded bytes plus 8, and a snapshot chunk becomes a block as it is (checked, not copied).
//!
//! Encoding of one record (little-endian): record u32, person u64, normalization u32, then provider,
//! patient, kanji, kana, sex, birth, postal, address, phone and the four card fields, each a
//! LEB128 length (one byte below 128) and UTF-8 bytes. Every block is checked when it is taken in
//! (lengths and UTF-8), so decoding a record later cannot fail.

use super::StoredIdentity;

/// Bytes per block before a new one is started (appends only; snapshot blocks keep their size).
const BLOCK: usize = 16 << 20;
const ABSENT: u32 = u32::MAX;
const FIELDS: usize = 13;

#[derive(Clone, Copy)]
struct Loc {
    block: u32,
    offset: u32,
}

const NOWHERE: Loc = Loc { block: ABSENT, offset: 0 };

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
pub(super) fn encode_into(out: &mut Vec<u8>, s: &StoredIdentity) {
    out.extend_from_slice(&s.record.to_le_bytes());
    out.extend_from_slice(&s.person.to_le_bytes());
    out.extend_from_slice(&s.normalization.to_le_bytes());
    for f in fields_of(s) {
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

/// The live identities by record id.
#[derive(Default)]
pub struct Records {
    blocks: Vec<Vec<u8>>,
    at: Vec<Loc>,
    live: usize,
}

impl Records {
    /// Adds or replaces a record.
    pub(super) fn put(&mut self, s: &StoredIdentity) {
        // A block grows as any vector does (small vaults stay small) up to BLOCK bytes.
        if self.blocks.last().is_none_or(|b| b.len() >= BLOCK) {
            self.blocks.push(Vec::new());
        }
        let block = self.blocks.len() - 1;
        let b = &mut self.blocks[block];
        let offset = b.len();
        encode_into(b, s);
        let loc = Loc { block: block as u32, offset: offset as u32 };
        let i = s.record as usize;
        if i >= self.at.len() {
            self.at.resize(i + 1, NOWHERE);
        }
        if self.at[i].block == ABSENT {
            self.live += 1;
        } else {
            self.wipe(i);
        }
        self.at[i] = loc;
    }

    /// Takes in a block of encoded records (a snapshot chunk) after checking it; returns the ids.
    pub(super) fn take_block(&mut self, block: Vec<u8>) -> Result<usize, String> {
        let index = self.blocks.len() as u32;
        let mut p = 0;
        let mut n = 0;
        while p < block.len() {
            let len = check(&block, p)?;
            let i = u32_at(&block, p) as usize;
            if i >= self.at.len() {
                self.at.resize(i + 1, NOWHERE);
            }
            if self.at[i].block != ABSENT {
                return Err(format!("record {i} appears twice"));
            }
            self.at[i] = Loc { block: index, offset: p as u32 };
            self.live += 1;
            p += len;
            n += 1;
        }
        self.blocks.push(block);
        Ok(n)
    }

    /// Removes a record (its bytes are overwritten with zeros in memory).
    pub(super) fn remove(&mut self, record: u32) {
        let i = record as usize;
        if self.at.get(i).is_some_and(|l| l.block != ABSENT) {
            self.wipe(i);
            self.at[i] = NOWHERE;
            self.live -= 1;
        }
    }

    fn wipe(&mut self, i: usize) {
        let Loc { block, offset } = self.at[i];
        let b = &mut self.blocks[block as usize];
        let len = check(b, offset as usize).expect("blocks are checked when taken in");
        // Keep the record id and field lengths readable as zeros so the block still scans.
        b[offset as usize + 4..offset as usize + 16].fill(0);
        let mut p = offset as usize + 16;
        for _ in 0..FIELDS {
            let (n, w) = varint(b, p).expect("blocks are checked when taken in");
            b[p + w..p + w + n].fill(0);
            p += w + n;
        }
        debug_assert_eq!(p - offset as usize, len);
    }

    /// One record.
    pub fn get(&self, record: u32) -> Option<StoredRef<'_>> {
        let l = *self.at.get(record as usize)?;
        (l.block != ABSENT).then(|| decode(&self.blocks[l.block as usize], l.offset as usize))
    }

    /// Whether a record is live.
    pub fn contains(&self, record: u32) -> bool {
        self.at.get(record as usize).is_some_and(|l| l.block != ABSENT)
    }

    /// Live records whose ids fall in `ids`, in id order.
    pub fn range(&self, ids: std::ops::Range<usize>) -> impl Iterator<Item = StoredRef<'_>> + '_ {
        let end = ids.end.min(self.at.len());
        self.at[ids.start.min(end)..end]
            .iter()
            .filter(|l| l.block != ABSENT)
            .map(|l| decode(&self.blocks[l.block as usize], l.offset as usize))
    }

    /// One past the highest record id with a place (live or not).
    pub fn id_bound(&self) -> usize {
        self.at.len()
    }

    /// Live records in id order.
    pub fn iter(&self) -> impl Iterator<Item = StoredRef<'_>> + '_ {
        self.at.iter().filter(|l| l.block != ABSENT).map(|l| decode(&self.blocks[l.block as usize], l.offset as usize))
    }

    /// The encoded bytes of the live records in id order, in runs of `per` records (snapshot chunks).
    pub(super) fn encoded_chunks(&self, per: usize) -> Vec<Vec<u8>> {
        let live: Vec<Loc> = self.at.iter().copied().filter(|l| l.block != ABSENT).collect();
        live.chunks(per)
            .map(|c| {
                let mut out = Vec::new();
                for l in c {
                    let b = &self.blocks[l.block as usize];
                    let len = check(b, l.offset as usize).expect("blocks are checked when taken in");
                    out.extend_from_slice(&b[l.offset as usize..l.offset as usize + len]);
                }
                out
            })
            .collect()
    }

    /// Number of live records.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Owned copies of all live records in id order (tests, small vaults).
    pub fn to_vec(&self) -> Vec<StoredIdentity> {
        self.iter().map(|r| r.to_owned()).collect()
    }

    /// Bytes held (blocks and the place table), for the benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.blocks.iter().map(Vec::capacity).sum::<usize>() + self.at.capacity() * std::mem::size_of::<Loc>()
    }
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
    fn records_round_trip_replace_remove_and_rechunk() {
        let mut r = Records::default();
        r.put(&s(0, "ア"));
        r.put(&s(2, "イ"));
        r.put(&s(0, "ウ"));
        assert_eq!(r.len(), 2);
        assert_eq!(r.get(0).unwrap().to_owned(), s(0, "ウ"));
        assert!(r.get(0).unwrap().same_as(&s(0, "ウ")) && !r.get(0).unwrap().same_as(&s(0, "ア")));
        assert!(r.get(1).is_none() && r.get(9).is_none());
        r.remove(2);
        assert_eq!(r.to_vec(), vec![s(0, "ウ")]);
        assert!(!r.blocks[0].windows("イ".len()).any(|w| w == "イ".as_bytes()), "erased bytes are wiped");
        r.put(&s(5, "エ"));
        let chunks = r.encoded_chunks(1);
        assert_eq!(chunks.len(), 2);
        let mut back = Records::default();
        for c in chunks {
            back.take_block(c).unwrap();
        }
        assert_eq!(back.to_vec(), r.to_vec());
        let mut bad = Records::default();
        let mut block = vec![];
        encode_into(&mut block, &s(1, "オ"));
        let n = block.len();
        assert!(bad.take_block(block[..n - 1].to_vec()).is_err(), "truncated");
        block[n - 1] = 0xff;
        assert!(bad.take_block(block).is_err(), "not UTF-8");
        // A field of 300 bytes takes a two-byte length and round-trips.
        let mut long = s(3, "カ");
        long.address = "あ".repeat(100);
        let mut block = vec![];
        encode_into(&mut block, &long);
        let mut r = Records::default();
        r.take_block(block).unwrap();
        assert_eq!(r.to_vec(), vec![long]);
    }
}
