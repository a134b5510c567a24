//! Legacy Japanese encodings, decoded here and nowhere else: ISO-2022-JP (HL7 in SS-MIX2) and
//! Shift_JIS (UKE receipts, DPC files). Decoding never replaces a bad byte silently: it fails,
//! and the reader quarantines the record with the reason.

use std::borrow::Cow;

use encoding_rs::{ISO_2022_JP, SHIFT_JIS};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Strips a UTF-8 byte-order mark; says whether there was one.
pub fn strip_bom(b: &[u8]) -> (&[u8], bool) {
    match b.strip_prefix(UTF8_BOM) {
        Some(rest) => (rest, true),
        None => (b, false),
    }
}

/// Why bytes did not decode.
fn guess(b: &[u8]) -> &'static str {
    if b.iter().all(|&c| c < 0x80) {
        "malformed escape sequence or cut in the middle of a character"
    } else if std::str::from_utf8(b).is_ok() {
        "the bytes are UTF-8"
    } else if SHIFT_JIS.decode_without_bom_handling_and_without_replacement(b).is_some() {
        "the bytes look like Shift_JIS"
    } else {
        "bytes that are neither UTF-8 nor Shift_JIS"
    }
}

/// Decodes ISO-2022-JP (JIS X 0208 with escape sequences), as SS-MIX2 requires.
pub fn decode_iso2022jp(b: &[u8]) -> Result<Cow<'_, str>, String> {
    if b.iter().all(|&c| c < 0x80 && c != 0x1B) {
        // Pure ASCII needs no decoder (the common case for most segments).
        return Ok(Cow::Borrowed(std::str::from_utf8(b).expect("ASCII")));
    }
    ISO_2022_JP
        .decode_without_bom_handling_and_without_replacement(b)
        .ok_or_else(|| format!("not valid ISO-2022-JP ({})", guess(b)))
}

/// Encodes text as ISO-2022-JP. Half-width katakana become full-width (JIS X 0208 has no
/// half-width forms, and SS-MIX2 forbids them); a character outside JIS X 0208 is an error.
pub fn encode_iso2022jp(s: &str) -> Result<Vec<u8>, char> {
    if s.is_ascii() {
        return Ok(s.as_bytes().to_vec());
    }
    let s = &fullwidth_katakana(s);
    let (out, _, bad) = ISO_2022_JP.encode(s);
    if bad {
        let c = s.chars().find(|c| ISO_2022_JP.encode(c.encode_utf8(&mut [0; 4])).2).expect("some character failed");
        return Err(c);
    }
    Ok(out.into_owned())
}

/// Decodes Shift_JIS (Windows-31J, as receipt files are written).
pub fn decode_sjis(b: &[u8]) -> Result<Cow<'_, str>, String> {
    if b.is_ascii() {
        return Ok(Cow::Borrowed(std::str::from_utf8(b).expect("ASCII")));
    }
    if std::str::from_utf8(b).is_ok() {
        // Shift_JIS Japanese text is almost never valid UTF-8; UTF-8 text often is valid Shift_JIS
        // garbage. So valid UTF-8 with non-ASCII bytes is the wrong encoding, not mojibake to keep.
        return Err("not Shift_JIS: the bytes are UTF-8 (receipt files must be Shift_JIS)".into());
    }
    SHIFT_JIS
        .decode_without_bom_handling_and_without_replacement(b)
        .ok_or_else(|| format!("not valid Shift_JIS ({})", guess(b)))
}

/// Decodes Shift_JIS onto the end of `out`, so a reader can reuse one buffer for every line
/// (the hot path of UKE and DPC files: ASCII lines are copied, not decoded). On failure `out`
/// is left as it was.
pub fn decode_sjis_into(b: &[u8], out: &mut String) -> Result<(), String> {
    if b.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8. Most receipt lines are pure ASCII, and validating
        // them again as UTF-8 (`str::from_utf8`) cost more than decoding the Shift_JIS ones.
        out.push_str(unsafe { std::str::from_utf8_unchecked(b) });
        return Ok(());
    }
    if std::str::from_utf8(b).is_ok() {
        return Err("not Shift_JIS: the bytes are UTF-8 (receipt files must be Shift_JIS)".into());
    }
    let mut d = SHIFT_JIS.new_decoder_without_bom_handling();
    out.reserve(d.max_utf8_buffer_length_without_replacement(b.len()).unwrap_or(b.len() * 3));
    let start = out.len();
    match d.decode_to_string_without_replacement(b, out, true) {
        (encoding_rs::DecoderResult::InputEmpty, _) => Ok(()),
        _ => {
            out.truncate(start);
            Err(format!("not valid Shift_JIS ({})", guess(b)))
        }
    }
}

/// Encodes text as Shift_JIS; a character outside it is an error.
pub fn encode_sjis(s: &str) -> Result<Vec<u8>, char> {
    if s.is_ascii() {
        return Ok(s.as_bytes().to_vec());
    }
    let (out, _, bad) = SHIFT_JIS.encode(s);
    if bad {
        let c = s.chars().find(|c| SHIFT_JIS.encode(c.encode_utf8(&mut [0; 4])).2).expect("some character failed");
        return Err(c);
    }
    Ok(out.into_owned())
}

/// Half-width katakana → full-width, voiced marks composed (ﾀﾞ → ダ): what an ISO-2022-JP round
/// trip does to them.
pub fn fullwidth_katakana(s: &str) -> String {
    if !s.chars().any(|c| ('\u{FF61}'..='\u{FF9F}').contains(&c)) {
        return s.to_owned();
    }
    let (b, _, _) = ISO_2022_JP.encode(s);
    let wide = ISO_2022_JP.decode_without_bom_handling(&b).0.into_owned();
    let mut out: Vec<char> = Vec::with_capacity(wide.len());
    for c in wide.chars() {
        let last = out.last().copied();
        match (c, last) {
            ('\u{309B}', Some(p)) if "カキクケコサシスセソタチツテトハヒフヘホ".contains(p) => {
                *out.last_mut().expect("some") = char::from_u32(p as u32 + 1).unwrap_or(p)
            }
            ('\u{309B}', Some('ウ')) => *out.last_mut().expect("some") = 'ヴ',
            ('\u{309C}', Some(p)) if "ハヒフヘホ".contains(p) => {
                *out.last_mut().expect("some") = char::from_u32(p as u32 + 2).unwrap_or(p)
            }
            _ => out.push(c),
        }
    }
    out.into_iter().collect()
}

/// Splits bytes into lines on CR LF, LF or CR (mixed endings in one file are common after
/// hand edits); the line number is 1-based. The last line may lack an ending.
pub fn lines(b: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut rest = b;
    let mut n = 0u64;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        n += 1;
        match memchr::memchr2(b'\r', b'\n', rest) {
            Some(i) => {
                let line = &rest[..i];
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                rest = &rest[i + skip..];
                Some((n, line))
            }
            None => {
                let line = rest;
                rest = &[];
                Some((n, line))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso2022jp_round_trips_kanji_and_ibm_extensions() {
        for s in ["山田^太郎~ヤマダ^タロウ", "髙橋 﨑", "ASCII only"] {
            let b = encode_iso2022jp(s).unwrap();
            assert!(b.iter().all(|&c| c < 0x80), "7-bit");
            assert_eq!(decode_iso2022jp(&b).unwrap(), s);
        }
        assert_eq!(fullwidth_katakana("ﾔﾏﾀﾞ ﾀﾛｳ"), "ヤマダ タロウ");
    }

    #[test]
    fn wrong_encodings_are_named() {
        assert!(decode_iso2022jp("山田".as_bytes()).unwrap_err().contains("UTF-8"));
        assert!(decode_sjis("山田".as_bytes()).unwrap_err().contains("UTF-8"));
        let sj = encode_sjis("山田").unwrap();
        assert_eq!(decode_sjis(&sj).unwrap(), "山田");
        let mut buf = String::from("RE,");
        decode_sjis_into(&sj, &mut buf).unwrap();
        assert_eq!(buf, "RE,山田");
        assert!(decode_sjis_into(&sj[..3], &mut buf).is_err(), "cut inside a character");
        assert!(decode_sjis_into("山田".as_bytes(), &mut buf).unwrap_err().contains("UTF-8"));
        assert_eq!(buf, "RE,山田", "a failed decode leaves the buffer as it was");
        assert!(decode_iso2022jp(&sj).unwrap_err().contains("Shift_JIS"));
    }

    #[test]
    fn lines_split_mixed_endings() {
        let v: Vec<_> = lines(b"a\r\nb\nc\rd").map(|(n, l)| (n, l.to_vec())).collect();
        assert_eq!(v, vec![(1, b"a".to_vec()), (2, b"b".to_vec()), (3, b"c".to_vec()), (4, b"d".to_vec())]);
    }
}
