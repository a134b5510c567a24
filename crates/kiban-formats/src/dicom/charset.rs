//! Specific Character Set (0008,0005): decoding and re-encoding of SH, LO, ST, LT, UT, PN and UC values,
//! including the ISO 2022 code extensions Japanese files use (PS3.3 C.12.1.1.2, PS3.5 §6.1.2.5).
//!
//! Japanese: `ISO 2022 IR 87` (JIS X 0208 kanji, G0 after `ESC $ B`), `ISO 2022 IR 159` (JIS X 0212,
//! `ESC $ ( D`), `ISO 2022 IR 13` / `ISO_IR 13` (JIS X 0201: romaji in G0 after `ESC ( J`, half-width
//! katakana in G1 after `ESC ) I`) and `ISO_IR 192` (UTF-8). The code element state returns to the
//! initial one at every value, component (`^`, `=`), multi-value (`\`) and line delimiter, so the
//! encoder switches back before each of them, exactly as the standard's examples do.

use encoding_rs::{EUC_JP, EUC_KR, Encoding};

/// A character repertoire that can sit in G0 or G1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    Ascii,
    /// JIS X 0201 Roman (ISO-IR 14), read as ASCII.
    JisRoman,
    /// JIS X 0201 katakana (ISO-IR 13) in G1: 0xA1–0xDF.
    JisKatakana,
    /// JIS X 0208 (ISO-IR 87), two bytes in G0.
    Jis0208,
    /// JIS X 0212 (ISO-IR 159), two bytes in G0.
    Jis0212,
    /// KS X 1001 (ISO-IR 149), two bytes in G1.
    Ksx1001,
    /// A single-byte G1 set decoded by an 8-bit encoding (Latin-1 and friends).
    Single(&'static Encoding),
    /// No G1 set designated.
    None,
}

/// The decoded Specific Character Set of a data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharacterSet {
    terms: Vec<String>,
    utf8: bool,
    iso2022: bool,
    initial_g0: Set,
    initial_g1: Set,
    /// Non-ISO-2022 single-byte or multibyte whole-value encoding (ISO_IR 100, GB18030 …).
    whole: Option<&'static Encoding>,
}

impl Default for CharacterSet {
    fn default() -> Self {
        CharacterSet::parse("")
    }
}

fn single_byte(term: &str) -> Option<&'static Encoding> {
    Some(match term {
        "ISO_IR 100" | "ISO 2022 IR 100" => encoding_rs::WINDOWS_1252,
        "ISO_IR 101" | "ISO 2022 IR 101" => encoding_rs::ISO_8859_2,
        "ISO_IR 109" | "ISO 2022 IR 109" => encoding_rs::ISO_8859_3,
        "ISO_IR 110" | "ISO 2022 IR 110" => encoding_rs::ISO_8859_4,
        "ISO_IR 144" | "ISO 2022 IR 144" => encoding_rs::ISO_8859_5,
        "ISO_IR 127" | "ISO 2022 IR 127" => encoding_rs::ISO_8859_6,
        "ISO_IR 126" | "ISO 2022 IR 126" => encoding_rs::ISO_8859_7,
        "ISO_IR 138" | "ISO 2022 IR 138" => encoding_rs::ISO_8859_8,
        "ISO_IR 148" | "ISO 2022 IR 148" => encoding_rs::WINDOWS_1254,
        "ISO_IR 166" | "ISO 2022 IR 166" => encoding_rs::WINDOWS_874,
        "ISO_IR 203" | "ISO 2022 IR 203" => encoding_rs::ISO_8859_15,
        _ => return None,
    })
}

impl CharacterSet {
    /// Parses the raw value of (0008,0005) (backslash-separated terms; an empty first term is ASCII).
    pub fn parse(value: &str) -> CharacterSet {
        let terms: Vec<String> = value.split('\\').map(|t| t.trim().to_owned()).collect();
        let first = terms.first().map(String::as_str).unwrap_or("");
        let utf8 = terms.iter().any(|t| t == "ISO_IR 192");
        let iso2022 = terms.iter().any(|t| t.starts_with("ISO 2022"));
        let (initial_g0, initial_g1) = match first {
            "ISO_IR 13" | "ISO 2022 IR 13" => (Set::JisRoman, Set::JisKatakana),
            t => (Set::Ascii, single_byte(t).map(Set::Single).unwrap_or(Set::None)),
        };
        let whole = match first {
            "GB18030" | "GBK" => Some(encoding_rs::GB18030),
            t if !iso2022 => single_byte(t),
            _ => None,
        };
        CharacterSet { terms, utf8, iso2022, initial_g0, initial_g1, whole }
    }

    /// The terms as written in the file.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// True if this repertoire includes Japanese (JIS X 0208, 0212 or 0201).
    pub fn is_japanese(&self) -> bool {
        self.terms
            .iter()
            .any(|t| matches!(t.as_str(), "ISO 2022 IR 87" | "ISO 2022 IR 159" | "ISO 2022 IR 13" | "ISO_IR 13"))
    }

    /// Decodes one value's bytes (padding trimmed). Undecodable bytes become U+FFFD, never dropped.
    pub fn decode(&self, bytes: &[u8]) -> String {
        let bytes = trim_pad(bytes);
        if self.utf8 && !self.iso2022 {
            return String::from_utf8_lossy(bytes).into_owned();
        }
        if !self.iso2022 {
            if let Some(enc) = self.whole {
                return enc.decode_without_bom_handling(bytes).0.into_owned();
            }
            if self.initial_g0 == Set::JisRoman {
                return self.decode_2022(bytes);
            }
            return String::from_utf8_lossy(bytes).into_owned();
        }
        self.decode_2022(bytes)
    }

    fn decode_2022(&self, b: &[u8]) -> String {
        let mut out = String::with_capacity(b.len());
        let (mut g0, mut g1) = (self.initial_g0, self.initial_g1);
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == 0x1B {
                let rest = &b[i + 1..];
                let (set, is_g1, n) = match rest {
                    [b'(', b'B', ..] => (Set::Ascii, false, 2),
                    [b'(', b'J', ..] => (Set::JisRoman, false, 2),
                    [b')', b'I', ..] => (Set::JisKatakana, true, 2),
                    [b'$', b'B', ..] | [b'$', b'@', ..] => (Set::Jis0208, false, 2),
                    [b'$', b'(', b'D', ..] => (Set::Jis0212, false, 3),
                    [b'$', b')', b'C', ..] => (Set::Ksx1001, true, 3),
                    [b'-', f, ..] => match iso_ir_by_final(*f) {
                        Some(e) => (Set::Single(e), true, 2),
                        None => {
                            out.push('\u{FFFD}');
                            i += 1;
                            continue;
                        }
                    },
                    _ => {
                        out.push('\u{FFFD}');
                        i += 1;
                        continue;
                    }
                };
                if is_g1 {
                    g1 = set
                } else {
                    g0 = set
                }
                i += 1 + n;
                continue;
            }
            if c < 0x80 {
                match g0 {
                    Set::Jis0208 | Set::Jis0212
                        if c > 0x20 && i + 1 < b.len() && b[i + 1] > 0x20 && b[i + 1] < 0x80 =>
                    {
                        let euc: Vec<u8> = if g0 == Set::Jis0212 {
                            vec![0x8F, c | 0x80, b[i + 1] | 0x80]
                        } else {
                            vec![c | 0x80, b[i + 1] | 0x80]
                        };
                        out.push_str(&EUC_JP.decode_without_bom_handling(&euc).0);
                        i += 2;
                        continue;
                    }
                    _ => {}
                }
                if is_delimiter(c) {
                    g0 = self.initial_g0;
                    g1 = self.initial_g1;
                }
                // JIS X 0201 Roman differs from ASCII only at 0x5C and 0x7E; like pydicom (and because 0x5C
                // stays the value delimiter) both are read as ASCII.
                out.push(c as char);
                i += 1;
                continue;
            }
            match g1 {
                Set::JisKatakana if (0xA1..=0xDF).contains(&c) => {
                    out.push(char::from_u32(0xFF61 + (c as u32 - 0xA1)).unwrap_or('\u{FFFD}'));
                    i += 1;
                }
                Set::Ksx1001 if i + 1 < b.len() && b[i + 1] >= 0xA1 => {
                    out.push_str(&EUC_KR.decode_without_bom_handling(&b[i..i + 2]).0);
                    i += 2;
                }
                Set::Single(e) => {
                    out.push_str(&e.decode_without_bom_handling(&b[i..i + 1]).0);
                    i += 1;
                }
                _ => {
                    out.push('\u{FFFD}');
                    i += 1;
                }
            }
        }
        out
    }

    /// Encodes `text` in this character set; `None` if a character is outside its repertoire (the caller
    /// then moves the data set to UTF-8 rather than lose it).
    pub fn encode(&self, text: &str) -> Option<Vec<u8>> {
        if self.utf8 && !self.iso2022 {
            return Some(text.as_bytes().to_vec());
        }
        if !self.iso2022 && self.initial_g0 != Set::JisRoman {
            if let Some(enc) = self.whole {
                let (b, _, bad) = enc.encode(text);
                return (!bad).then(|| b.into_owned());
            }
            return text.is_ascii().then(|| text.as_bytes().to_vec());
        }
        let has = |t: &str| self.terms.iter().any(|x| x == t);
        let kanji = has("ISO 2022 IR 87");
        let hojo = has("ISO 2022 IR 159");
        let kana = self.initial_g1 == Set::JisKatakana || has("ISO 2022 IR 13");
        let mut out = Vec::with_capacity(text.len() * 2);
        let (mut g0, mut g1) = (self.initial_g0, self.initial_g1);
        let designate = |out: &mut Vec<u8>, g: &mut Set, want: Set| {
            if *g != want {
                out.extend_from_slice(match want {
                    Set::Ascii => b"\x1b(B".as_slice(),
                    Set::JisRoman => b"\x1b(J",
                    Set::Jis0208 => b"\x1b$B",
                    Set::Jis0212 => b"\x1b$(D",
                    Set::JisKatakana => b"\x1b)I",
                    _ => b"",
                });
                *g = want;
            }
        };
        for ch in text.chars() {
            let u = ch as u32;
            if ch.is_ascii() {
                let c = u as u8;
                if is_delimiter(c) {
                    designate(&mut out, &mut g0, self.initial_g0);
                    g1 = self.initial_g1;
                } else if !matches!(g0, Set::Ascii | Set::JisRoman) {
                    designate(&mut out, &mut g0, self.initial_g0);
                }
                out.push(c);
            } else if (0xFF61..=0xFF9F).contains(&u) && kana {
                if g1 != Set::JisKatakana {
                    designate(&mut out, &mut g1, Set::JisKatakana);
                }
                out.push((u - 0xFF61 + 0xA1) as u8);
            } else {
                let mut buf = [0u8; 4];
                let (b, _, bad) = EUC_JP.encode(ch.encode_utf8(&mut buf));
                match (&b[..], bad) {
                    ([a, c], false) if kanji && *a >= 0xA1 => {
                        designate(&mut out, &mut g0, Set::Jis0208);
                        out.extend_from_slice(&[a & 0x7F, c & 0x7F]);
                    }
                    ([0x8F, a, c], false) if hojo => {
                        designate(&mut out, &mut g0, Set::Jis0212);
                        out.extend_from_slice(&[a & 0x7F, c & 0x7F]);
                    }
                    _ => return None,
                }
            }
        }
        designate(&mut out, &mut g0, self.initial_g0);
        Some(out)
    }
}

fn is_delimiter(c: u8) -> bool {
    matches!(c, b'\\' | b'^' | b'=' | b'\r' | b'\n' | b'\t' | 0x0C)
}

fn iso_ir_by_final(f: u8) -> Option<&'static Encoding> {
    Some(match f {
        b'A' => encoding_rs::WINDOWS_1252,
        b'B' => encoding_rs::ISO_8859_2,
        b'C' => encoding_rs::ISO_8859_3,
        b'D' => encoding_rs::ISO_8859_4,
        b'L' => encoding_rs::ISO_8859_5,
        b'G' => encoding_rs::ISO_8859_6,
        b'F' => encoding_rs::ISO_8859_7,
        b'H' => encoding_rs::ISO_8859_8,
        b'M' => encoding_rs::WINDOWS_1254,
        b'T' => encoding_rs::WINDOWS_874,
        _ => return None,
    })
}

fn trim_pad(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && (b[end - 1] == b' ' || b[end - 1] == 0) {
        end -= 1;
    }
    &b[..end]
}
