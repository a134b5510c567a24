//! The on-disk framing of entries and checkpoints.
//!
//! An entry line is `{"hash":"<64 hex>","prev":"<64 hex>","entry":<entry JSON>}` and a newline, where
//! `hash = SHA-256(prev || entry JSON bytes)` and `prev` is the hash of the entry before (32 zero bytes
//! before the first). The entry JSON is the canonical encoding: serde_json of [`crate::Entry`] with
//! its fixed field order and no whitespace; verification hashes the stored bytes as they are, so it
//! never re-encodes and never trusts a parser. A checkpoint line is `{"mac":"<64 hex>","cp":<JSON>}`
//! with `mac = HMAC-SHA-256(key, CHECKPOINT_DOMAIN || cp JSON bytes)`.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub(crate) type Hash = [u8; 32];

/// The `prev` of the first entry.
pub(crate) const GENESIS: Hash = [0; 32];

/// The domain separator of checkpoint MACs.
pub(crate) const CHECKPOINT_DOMAIN: &[u8] = b"kiban-audit checkpoint v1\n";

const P_HASH: &[u8] = b"{\"hash\":\"";
const P_PREV: &[u8] = b"\",\"prev\":\"";
const P_ENTRY: &[u8] = b"\",\"entry\":";
const ENTRY_AT: usize = P_HASH.len() + 64 + P_PREV.len() + 64 + P_ENTRY.len();

/// The chain hash of an entry.
pub(crate) fn chain_hash(prev: &Hash, entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(entry);
    h.finalize().into()
}

/// Appends one framed entry line (with its newline) to `out`.
pub(crate) fn encode_entry(out: &mut Vec<u8>, hash: &Hash, prev: &Hash, entry: &[u8]) {
    let mut hx = [0u8; 64];
    out.reserve(ENTRY_AT + entry.len() + 2);
    out.extend_from_slice(P_HASH);
    hex::encode_to_slice(hash, &mut hx).expect("64 hex digits");
    out.extend_from_slice(&hx);
    out.extend_from_slice(P_PREV);
    hex::encode_to_slice(prev, &mut hx).expect("64 hex digits");
    out.extend_from_slice(&hx);
    out.extend_from_slice(P_ENTRY);
    out.extend_from_slice(entry);
    out.extend_from_slice(b"}\n");
}

/// An entry line split into its parts, without any trust in them.
pub(crate) struct RawEntry<'a> {
    /// The stored hash.
    pub hash: Hash,
    /// The stored hash of the previous entry.
    pub prev: Hash,
    /// The entry JSON bytes.
    pub entry: &'a [u8],
}

/// Splits an entry line (without its newline).
pub(crate) fn decode_entry(line: &[u8]) -> Result<RawEntry<'_>, &'static str> {
    if line.len() < ENTRY_AT + 3 || !line.starts_with(P_HASH) || line[line.len() - 1] != b'}' {
        return Err("not an audit entry line");
    }
    let mut hash = [0u8; 32];
    let mut prev = [0u8; 32];
    let h_at = P_HASH.len();
    let p_at = h_at + 64 + P_PREV.len();
    if &line[h_at + 64..p_at] != P_PREV || &line[p_at + 64..ENTRY_AT] != P_ENTRY {
        return Err("not an audit entry line");
    }
    if !unhex32(&line[h_at..h_at + 64], &mut hash) {
        return Err("hash is not lowercase hexadecimal");
    }
    if !unhex32(&line[p_at..p_at + 64], &mut prev) {
        return Err("prev is not lowercase hexadecimal");
    }
    Ok(RawEntry { hash, prev, entry: &line[ENTRY_AT..line.len() - 1] })
}

const fn hex_table() -> [u8; 256] {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
}

const HEX: [u8; 256] = hex_table();

/// Decodes 64 lowercase hex digits into 32 bytes; false if any is not one (the writer only writes lowercase).
fn unhex32(digits: &[u8], out: &mut Hash) -> bool {
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (hi, lo) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    bad & 0xf0 == 0
}

/// The sequence number an entry JSON claims, read without a JSON parser.
pub(crate) fn entry_seq(entry: &[u8]) -> Option<u64> {
    let rest = entry.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Appends one framed checkpoint line (with its newline) to `out`.
pub(crate) fn encode_checkpoint(out: &mut Vec<u8>, mac: &Hash, cp: &[u8]) {
    out.extend_from_slice(b"{\"mac\":\"");
    out.extend_from_slice(hex::encode(mac).as_bytes());
    out.extend_from_slice(b"\",\"cp\":");
    out.extend_from_slice(cp);
    out.extend_from_slice(b"}\n");
}

/// Splits a checkpoint line (without its newline) into its MAC and checkpoint JSON.
pub(crate) fn decode_checkpoint(line: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let rest = line.strip_prefix(b"{\"mac\":\"")?;
    if rest.len() < 64 + 8 {
        return None;
    }
    let mac = hex::decode(&rest[..64]).ok()?;
    let cp = rest[64..].strip_prefix(b"\",\"cp\":")?.strip_suffix(b"}")?;
    Some((mac, cp))
}

/// The message a checkpoint MAC covers.
pub(crate) fn checkpoint_message(cp: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + cp.len());
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(cp);
    m
}

/// The file name of the segment whose first entry is `first_seq`.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.jsonl")
}

/// Whether a file name is a segment's.
pub(crate) fn is_segment_name(name: &str) -> bool {
    name.len() == 30
        && name.starts_with("seg-")
        && name.ends_with(".jsonl")
        && name[4..24].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x6_entry_line_round_trips_and_seq_is_read_without_a_parser() {
        let entry = br#"{"seq":42,"at":"2026-01-01T00:00:00Z"}"#;
        let prev = [7u8; 32];
        let hash = chain_hash(&prev, entry);
        let mut line = Vec::new();
        encode_entry(&mut line, &hash, &prev, entry);
        assert_eq!(line.last(), Some(&b'\n'));
        let raw = decode_entry(&line[..line.len() - 1]).unwrap();
        assert_eq!(raw.hash, hash);
        assert_eq!(raw.prev, prev);
        assert_eq!(raw.entry, entry);
        assert_eq!(entry_seq(raw.entry), Some(42));
        assert_eq!(entry_seq(br#"{"seq":x,"#), None);
        for bad in [b'G', b'A', b'/'] {
            let mut changed = line.clone();
            changed[9 + 5] = bad;
            assert!(decode_entry(&changed[..changed.len() - 1]).is_err(), "{} is not a hex digit here", bad as char);
        }
        assert!(serde_json::from_slice::<serde_json::Value>(&line).is_ok(), "a line is valid JSON");
    }
}
