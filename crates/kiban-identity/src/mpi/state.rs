//! The index's whole state as bytes (the vault snapshot stores it), so an open reads a few large
//! arrays instead of rebuilding the blocking indexes from every identity. Little-endian:
//! `KBMPI1\0\0`, then the records (fixed fields and the kana), the nine blocking indexes (per record
//! the previous record in its block; the head table's keys and records), the persons with their
//! records, and the review items, decisions and kept-apart pairs as JSON. The person-key generator
//! is not stored: a restored index draws new keys from the operating system, as [`Mpi::restore`] does.

use std::io::{Read, Write};

use kiban_model::id::PersonKey;
use kiban_model::person::Sex;

use super::{Chains, Decision, FastMap, HeadMap, MatchConfig, Mpi, Rec, RecordId, ReviewItem};

const MAGIC: &[u8; 8] = b"KBMPI1\0\0";

fn u64s(w: &mut dyn Write, v: impl Iterator<Item = u64>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    for x in v {
        buf.extend_from_slice(&x.to_le_bytes());
        if buf.len() >= 1 << 16 {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)
}

fn u32s(w: &mut dyn Write, v: &[u32]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    for c in v.chunks(1 << 14) {
        buf.clear();
        for x in c {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("index state: {what}"))
}

fn read_u64(r: &mut dyn Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A count that must fit what the input can hold (a damaged count fails, never allocates wildly).
fn read_len(r: &mut dyn Read, limit: u64) -> std::io::Result<usize> {
    let n = read_u64(r)?;
    if n > limit {
        return Err(bad("a count is out of range"));
    }
    Ok(n as usize)
}

fn read_u64s(r: &mut dyn Read, n: usize) -> std::io::Result<Vec<u64>> {
    let mut v = Vec::with_capacity(n);
    let mut buf = vec![0u8; 1 << 16];
    while v.len() < n {
        let k = (n - v.len()).min(1 << 13);
        r.read_exact(&mut buf[..k * 8])?;
        v.extend(buf[..k * 8].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))));
    }
    Ok(v)
}

fn read_u32s(r: &mut dyn Read, n: usize) -> std::io::Result<Vec<u32>> {
    let mut v = Vec::with_capacity(n);
    let mut buf = vec![0u8; 1 << 16];
    while v.len() < n {
        let k = (n - v.len()).min(1 << 14);
        r.read_exact(&mut buf[..k * 4])?;
        v.extend(buf[..k * 4].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))));
    }
    Ok(v)
}

const LIMIT: u64 = 1 << 32;

fn sex_code(s: Sex) -> u8 {
    match s {
        Sex::Male => 1,
        Sex::Female => 2,
        Sex::Unknown => 0,
    }
}

impl Mpi {
    fn chains(&self) -> [&Chains; 9] {
        [
            &self.by_birth_given,
            &self.by_birth_family,
            &self.by_birth,
            &self.by_kana_ym,
            &self.by_kana_yd,
            &self.by_kana_md,
            &self.by_phone,
            &self.by_card,
            &self.by_source,
        ]
    }

    /// Writes the index's state (see the module doc).
    pub fn write_state(&self, w: &mut dyn Write) -> std::io::Result<()> {
        w.write_all(MAGIC)?;
        w.write_all(&(self.recs.len() as u64).to_le_bytes())?;
        let mut buf = Vec::with_capacity(1 << 17);
        for r in &self.recs {
            for x in [r.source, r.kanji, r.phone, r.postal, r.address, r.insurer, r.card, r.person.as_u64()] {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            buf.extend_from_slice(&r.birth.0.to_le_bytes());
            buf.extend_from_slice(&[r.birth.1 as u8, r.birth.2 as u8, sex_code(r.sex), r.branch, u8::from(r.has_card)]);
            let k = r.kana.as_bytes();
            buf.extend_from_slice(&(k.len() as u16).to_le_bytes());
            buf.extend_from_slice(k);
            if buf.len() >= 1 << 16 {
                w.write_all(&buf)?;
                buf.clear();
            }
        }
        w.write_all(&buf)?;
        for c in self.chains() {
            w.write_all(&(c.prev.len() as u64).to_le_bytes())?;
            u32s(w, &c.prev)?;
            // The head table as sized for its entries now: grown by doubling it may be half empty,
            // and the reader takes it as it is (no re-hashing at open).
            let mut packed = HeadMap::with_capacity(c.head.len);
            for (k, v) in c.head.keys.iter().zip(&c.head.vals) {
                if *k != super::NONE {
                    packed.insert(*k, *v);
                }
            }
            w.write_all(&(packed.keys.len() as u64).to_le_bytes())?;
            w.write_all(&(packed.len as u64).to_le_bytes())?;
            u64s(w, packed.keys.iter().copied())?;
            u32s(w, &packed.vals)?;
        }
        w.write_all(&(self.persons.len() as u64).to_le_bytes())?;
        let mut buf = Vec::with_capacity(1 << 17);
        for (p, recs) in &self.persons {
            buf.extend_from_slice(&p.as_u64().to_le_bytes());
            buf.extend_from_slice(&(recs.len() as u32).to_le_bytes());
            for r in recs {
                buf.extend_from_slice(&r.0.to_le_bytes());
            }
            if buf.len() >= 1 << 16 {
                w.write_all(&buf)?;
                buf.clear();
            }
        }
        w.write_all(&buf)?;
        let apart: Vec<((PersonKey, PersonKey), u64)> = self.apart.iter().map(|(k, v)| (*k, *v)).collect();
        let json = serde_json::to_vec(&(&self.reviews, &self.decisions, apart)).expect("serializable");
        w.write_all(&(json.len() as u64).to_le_bytes())?;
        w.write_all(&json)
    }

    /// Reads an index's state written by [`Mpi::write_state`]; person keys for new persons are drawn
    /// from the operating system's random source.
    pub fn read_state(cfg: MatchConfig, r: &mut dyn Read) -> std::io::Result<Mpi> {
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad("not an index state"));
        }
        let mut m = Mpi::new(cfg);
        let n = read_len(r, LIMIT)?;
        m.recs.reserve_exact(n);
        let mut fixed = [0u8; 8 * 8 + 4 + 5 + 2];
        let mut kana = Vec::with_capacity(64);
        for _ in 0..n {
            r.read_exact(&mut fixed)?;
            let u = |i: usize| u64::from_le_bytes(fixed[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            let y = i32::from_le_bytes(fixed[64..68].try_into().expect("4 bytes"));
            let [mo, d, sex, branch, has_card] = fixed[68..73].try_into().expect("5 bytes");
            let k = u16::from_le_bytes(fixed[73..75].try_into().expect("2 bytes")) as usize;
            kana.resize(k, 0);
            r.read_exact(&mut kana)?;
            m.recs.push(Rec {
                source: u(0),
                kana: std::str::from_utf8(&kana).map_err(|_| bad("a kana name is not UTF-8"))?.into(),
                kanji: u(1),
                birth: (y, u32::from(mo), u32::from(d)),
                sex: match sex {
                    1 => Sex::Male,
                    2 => Sex::Female,
                    0 => Sex::Unknown,
                    _ => return Err(bad("a sex code is unknown")),
                },
                phone: u(2),
                postal: u(3),
                address: u(4),
                insurer: u(5),
                card: u(6),
                branch,
                has_card: has_card != 0,
                person: PersonKey::from_u64(u(7)),
            });
        }
        let mut chains = Vec::with_capacity(9);
        for _ in 0..9 {
            let np = read_len(r, LIMIT)?;
            let prev = read_u32s(r, np)?;
            let cap = read_len(r, LIMIT * 2)?;
            let len = read_len(r, cap as u64)?;
            let keys = read_u64s(r, cap)?;
            let vals = read_u32s(r, cap)?;
            if prev.len() != n || prev.iter().any(|p| *p != super::END && *p as usize >= n) {
                return Err(bad("a block chain points outside the records"));
            }
            if vals.iter().zip(&keys).any(|(v, k)| *k != super::NONE && *v as usize >= n) {
                return Err(bad("a block head points outside the records"));
            }
            chains.push(Chains { head: HeadMap { keys, vals, len }, prev });
        }
        let mut it = chains.into_iter();
        let mut next = || it.next().expect("nine indexes");
        m.by_birth_given = next();
        m.by_birth_family = next();
        m.by_birth = next();
        m.by_kana_ym = next();
        m.by_kana_yd = next();
        m.by_kana_md = next();
        m.by_phone = next();
        m.by_card = next();
        m.by_source = next();
        let np = read_len(r, LIMIT)?;
        let mut persons: FastMap<PersonKey, Vec<RecordId>> = FastMap::default();
        persons.reserve(np);
        let mut head = [0u8; 12];
        for _ in 0..np {
            r.read_exact(&mut head)?;
            let p = PersonKey::from_u64(u64::from_le_bytes(head[..8].try_into().expect("8 bytes")));
            let k = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
            if k > n {
                return Err(bad("a person has more records than the index"));
            }
            let ids = read_u32s(r, k)?;
            persons.insert(p, ids.into_iter().map(RecordId).collect());
        }
        m.persons = persons;
        let j = read_len(r, LIMIT)?;
        let mut json = vec![0u8; j];
        r.read_exact(&mut json)?;
        type Log = (Vec<ReviewItem>, Vec<Decision>, Vec<((PersonKey, PersonKey), u64)>);
        let (reviews, decisions, apart): Log =
            serde_json::from_slice(&json).map_err(|e| bad(&format!("review log: {e}")))?;
        m.reviews = reviews;
        m.decisions = decisions;
        m.apart = apart.into_iter().collect();
        let mut rest = [0u8; 1];
        if r.read(&mut rest)? != 0 {
            return Err(bad("bytes trail the index state"));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::synth_inputs;
    use kiban_model::synth::SynthConfig;

    #[test]
    fn the_index_state_round_trips_and_answers_as_before() {
        let cfg = SynthConfig { patients: 3_000, ..Default::default() };
        let (a, _) = synth_inputs(&cfg, 0..2_000);
        let mut m = Mpi::with_seed(MatchConfig::default(), 3);
        m.register_bulk(&a);
        let (p, q) = (m.person_of(RecordId(0)).unwrap(), m.person_of(RecordId(5)).unwrap());
        m.merge(q, p, None, "op").unwrap();
        m.forget(&[RecordId(7)]);
        let mut bytes = vec![];
        m.write_state(&mut bytes).unwrap();
        let mut back = Mpi::read_state(MatchConfig::default(), &mut bytes.as_slice()).unwrap();
        assert!(back.recs == m.recs && back.chains() == m.chains());
        assert_eq!(
            (&back.persons, &back.decisions, &back.reviews, &back.apart),
            (&m.persons, &m.decisions, &m.reviews, &m.apart)
        );
        // The same new records land the same way (new persons get other random keys).
        let (b, _) = synth_inputs(&cfg, 1_500..3_000);
        let kinds = |regs: Vec<Result<crate::mpi::Registration, _>>, m: &Mpi| -> Vec<(u32, Option<u32>)> {
            regs.into_iter()
                .map(|r| {
                    let r = r.unwrap();
                    (r.record.0, m.records_of(r.person).iter().map(|x| x.0).min())
                })
                .collect()
        };
        let want = m.register_bulk(&b);
        let got = back.register_bulk(&b);
        assert_eq!(kinds(got, &back), kinds(want, &m));
        // Damage is refused, never half-read.
        for cut in [0, 9, bytes.len() / 2, bytes.len() - 1] {
            assert!(Mpi::read_state(MatchConfig::default(), &mut &bytes[..cut]).is_err(), "cut at {cut}");
        }
        bytes.push(0);
        assert!(Mpi::read_state(MatchConfig::default(), &mut bytes.as_slice()).is_err());
    }
}
