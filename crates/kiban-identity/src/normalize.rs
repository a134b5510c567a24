//! The canonical form of identity fields (version [`NORMALIZATION_VERSION`]), built once at the
//! boundary: every comparison, every linkage key and every vault lookup runs on these types.
//!
//! The published test vectors are `tests/data/normalization.tsv` (input, canonical output, rule);
//! the rules, in the order they apply:
//! - **kana**: hiragana → katakana; half-width katakana → full-width; a voiced or semi-voiced mark
//!   (half-width `ﾞﾟ`, spacing `゛゜` or combining U+3099/U+309A) joins the kana before it into the
//!   precomposed letter; small kana (ァィゥェォッャュョヮヵヶ) stay small, never enlarged; long-vowel
//!   variants (ー ｰ − ‐ － ― — – 〜 ～ -) become `ー`; spaces (half/full width), middle dots (・ ･ ·)
//!   and commas between family and given name become one ASCII space; `●`, `〓` and `?` become the
//!   unknown mark `〓`, which matches nothing by itself and blocks linkage keys.
//! - **kanji**: full-width ASCII → ASCII (letters upper-cased); half-width katakana → full-width;
//!   separators as for kana; old and variant kanji fold to the common form (渡邊/渡邉 → 渡辺, 髙 → 高,
//!   﨑 → 崎 …, see [`fold_variant`]); then every character must be in JIS X 0208 (or ASCII).
//! - **numbers**: full-width digits → ASCII; spaces and hyphens dropped; insurer numbers padded with
//!   leading zeros to 6 (国保) or 8 digits and their check digit verified; card numbers lose leading
//!   zeros; branch numbers are two digits.
//! - **birth dates**: ISO (`1980-04-01`, `1980/4/1`, `19800401`), `1980年4月1日`, and every 和暦 form
//!   of [`kiban_model::wareki::WarekiDate`] → a calendar date; impossible days are errors.

use std::sync::OnceLock;

use chrono::NaiveDate;
use kiban_model::insurer::InsurerNumber;
use kiban_model::wareki::WarekiDate;

/// Version of the canonical form; bumped whenever a rule changes, and stored with vault records.
pub const NORMALIZATION_VERSION: u32 = 1;

/// The canonical mark for a character the source could not represent (● 〓 ? in the input).
pub const UNKNOWN: char = '〓';

/// A field that did not parse, naming the field, the rule id and the rule in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule} [{rule_id}] (got {value:?})")]
pub struct FieldError {
    /// The field, e.g. `name_kana`.
    pub field: &'static str,
    /// Stable rule id, e.g. `N-KANA-CHAR`.
    pub rule_id: &'static str,
    /// The rule in plain words.
    pub rule: String,
    /// The offending input, truncated to 40 characters.
    pub value: String,
}

impl FieldError {
    /// Builds an error, truncating the value.
    pub fn new(field: &'static str, rule_id: &'static str, rule: impl Into<String>, value: &str) -> Self {
        FieldError { field, rule_id, rule: rule.into(), value: value.chars().take(40).collect() }
    }
}

const HALF_KANA: &str = "ｦｧｨｩｪｫｬｭｮｯｰｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓﾔﾕﾖﾗﾘﾙﾚﾛﾜﾝ";
const FULL_KANA: &str =
    "ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン";
const VOICE_BASE: &str = "カキクケコサシスセソタチツテトハヒフヘホウワヲヽ";
const VOICED: &str = "ガギグゲゴザジズゼゾダヂヅデドバビブベボヴヷヺヾ";
const SEMI_BASE: &str = "ハヒフヘホ";
const SEMI_VOICED: &str = "パピプペポ";

fn half_to_full(c: char) -> Option<char> {
    let i = HALF_KANA.chars().position(|h| h == c)?;
    FULL_KANA.chars().nth(i)
}

fn voiced(c: char, semi: bool) -> Option<char> {
    let (base, out) = if semi { (SEMI_BASE, SEMI_VOICED) } else { (VOICE_BASE, VOICED) };
    let i = base.chars().position(|b| b == c)?;
    out.chars().nth(i)
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\u{3000}' | '\t' | '・' | '･' | '·' | ',' | '、' | '，')
}

/// Trims trailing separators and refuses a name that holds nothing readable.
fn finish_name(
    mut out: String,
    field: &'static str,
    rule_id: &'static str,
    rule: &str,
    input: &str,
) -> Result<String, FieldError> {
    while out.ends_with(' ') {
        out.pop();
    }
    if out.chars().all(|c| c == ' ' || c == UNKNOWN) {
        return Err(FieldError::new(field, rule_id, rule, input));
    }
    Ok(out)
}

fn is_unknown_mark(c: char) -> bool {
    matches!(c, '●' | '〓' | '?' | '？')
}

fn is_long_vowel(c: char) -> bool {
    matches!(c, 'ー' | 'ｰ' | '−' | '‐' | '－' | '―' | '—' | '–' | '〜' | '～' | '-')
}

fn voice_mark(c: char) -> Option<bool> {
    match c {
        'ﾞ' | '゛' | '\u{3099}' => Some(false),
        'ﾟ' | '゜' | '\u{309A}' => Some(true),
        _ => None,
    }
}

/// Joins runs of separators into one ASCII space and trims both ends.
fn push_sep(out: &mut String) {
    if !out.is_empty() && !out.ends_with(' ') {
        out.push(' ');
    }
}

/// A name in canonical katakana, family and given name separated by one space when the source
/// separated them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KanaName(String);

impl KanaName {
    /// Parses any kana spelling into the canonical form; `field` names the field in errors.
    pub fn parse(field: &'static str, input: &str) -> Result<Self, FieldError> {
        let mut out = String::with_capacity(input.len());
        for c in input.chars() {
            if is_separator(c) {
                push_sep(&mut out);
                continue;
            }
            if let Some(semi) = voice_mark(c) {
                let prev = out.pop().filter(|p| *p != ' ');
                match prev.and_then(|p| voiced(p, semi)) {
                    Some(v) => out.push(v),
                    None => {
                        return Err(FieldError::new(
                            field,
                            "N-KANA-VOICE",
                            "a voiced/semi-voiced mark must follow a kana that takes it",
                            input,
                        ));
                    }
                }
                continue;
            }
            let k = if let Some(f) = half_to_full(c) {
                f
            } else if ('\u{3041}'..='\u{3096}').contains(&c) || c == 'ゝ' || c == 'ゞ' {
                char::from_u32(c as u32 + 0x60).expect("katakana block")
            } else if is_long_vowel(c) {
                'ー'
            } else if is_unknown_mark(c) {
                UNKNOWN
            } else if ('\u{30A1}'..='\u{30FA}').contains(&c) || c == 'ヽ' || c == 'ヾ' {
                c
            } else {
                return Err(FieldError::new(field, "N-KANA-CHAR", format!("{c:?} is not kana"), input));
            };
            out.push(k);
        }
        Ok(KanaName(finish_name(out, field, "N-KANA-EMPTY", "kana name is empty or only unknown marks", input)?))
    }

    /// The canonical text (`ヤマダ タロウ`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Without the separator (`ヤマダタロウ`), for sources that do not separate family and given.
    pub fn joined(&self) -> String {
        self.0.chars().filter(|c| *c != ' ').collect()
    }
    /// Family part (all of it when there is no separator).
    pub fn family(&self) -> &str {
        self.0.split(' ').next().unwrap_or_default()
    }
    /// Given part (empty when there is no separator).
    pub fn given(&self) -> &str {
        self.0.split_once(' ').map_or("", |(_, g)| g)
    }
    /// True when a character was unreadable in the source.
    pub fn has_unknown(&self) -> bool {
        self.0.contains(UNKNOWN)
    }
}

impl std::fmt::Display for KanaName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Old and variant kanji folded to the common form for matching (the card may keep the old one).
const VARIANTS: &[(char, char)] = &[
    ('邊', '辺'),
    ('邉', '辺'),
    ('髙', '高'),
    ('﨑', '崎'),
    ('嵜', '崎'),
    ('碕', '崎'),
    ('澤', '沢'),
    ('濱', '浜'),
    ('齋', '斉'),
    ('齊', '斉'),
    ('斎', '斉'),
    ('廣', '広'),
    ('嶋', '島'),
    ('嶌', '島'),
    ('國', '国'),
    ('龍', '竜'),
    ('櫻', '桜'),
    ('德', '徳'),
    ('槇', '槙'),
    ('塚', '塚'),
    ('瀨', '瀬'),
    ('眞', '真'),
    ('惠', '恵'),
    ('榮', '栄'),
    ('冨', '富'),
    ('藏', '蔵'),
    ('實', '実'),
    ('壽', '寿'),
    ('曾', '曽'),
    ('條', '条'),
    ('萬', '万'),
    ('與', '与'),
    ('禮', '礼'),
    ('豐', '豊'),
    ('鐵', '鉄'),
    ('學', '学'),
    ('淺', '浅'),
    ('黑', '黒'),
    ('兒', '児'),
    ('增', '増'),
    ('隆', '隆'),
    ('舘', '館'),
    ('圓', '円'),
    ('驒', '騨'),
    ('傳', '伝'),
    ('團', '団'),
];

/// Folds an old or variant kanji to its common form (identity for everything else).
pub fn fold_variant(c: char) -> char {
    VARIANTS.iter().find(|(v, _)| *v == c).map_or(c, |(_, n)| *n)
}

/// The set of characters in JIS X 0208 (rows 1–84 less the NEC row 13), from the EUC-JP decoder.
fn jis0208() -> &'static [u64] {
    static SET: OnceLock<Vec<u64>> = OnceLock::new();
    SET.get_or_init(|| {
        let mut bits = vec![0u64; 65536 / 64];
        let mut dec = encoding_rs::EUC_JP.new_decoder_without_bom_handling();
        for lead in 0xA1u8..=0xF4 {
            if lead == 0xAD {
                continue; // row 13: NEC special characters, not JIS X 0208
            }
            for trail in 0xA1u8..=0xFE {
                let mut s = String::with_capacity(8);
                let (_, _, had_err) = dec.decode_to_string(&[lead, trail], &mut s, false);
                if let (false, Some(c)) = (had_err, s.chars().next())
                    && (c as u32) < 65536
                {
                    bits[c as usize / 64] |= 1 << (c as usize % 64);
                }
            }
        }
        bits
    })
}

/// True for a character of JIS X 0208.
pub fn in_jis0208(c: char) -> bool {
    (c as u32) < 65536 && jis0208()[c as usize / 64] & (1 << (c as usize % 64)) != 0
}

/// A name in kanji (or any JIS X 0208 script), canonical for matching: variants folded, widths
/// unified, one space between family and given name when the source separated them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KanjiName(String);

impl KanjiName {
    /// Parses a written name; characters outside JIS X 0208 after folding are errors.
    pub fn parse(field: &'static str, input: &str) -> Result<Self, FieldError> {
        let mut out = String::with_capacity(input.len());
        for c in input.chars() {
            if is_separator(c) {
                push_sep(&mut out);
                continue;
            }
            if let Some(semi) = voice_mark(c) {
                let prev = out.pop();
                match prev.and_then(|p| voiced(p, semi)) {
                    Some(v) => out.push(v),
                    None => {
                        return Err(FieldError::new(field, "N-KANA-VOICE", "stray voiced mark", input));
                    }
                }
                continue;
            }
            let c = match c {
                '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).expect("ASCII").to_ascii_uppercase(),
                c if c.is_ascii_lowercase() => c.to_ascii_uppercase(),
                c if is_unknown_mark(c) => UNKNOWN,
                c => half_to_full(c).unwrap_or_else(|| fold_variant(c)),
            };
            if !(c.is_ascii_alphanumeric() || in_jis0208(c)) {
                return Err(FieldError::new(
                    field,
                    "N-JIS0208",
                    format!("{c:?} (U+{:04X}) is outside JIS X 0208", c as u32),
                    input,
                ));
            }
            out.push(c);
        }
        Ok(KanjiName(finish_name(out, field, "N-KANJI-EMPTY", "name is empty or only unknown marks", input)?))
    }
    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Without the separator.
    pub fn joined(&self) -> String {
        self.0.chars().filter(|c| *c != ' ').collect()
    }
    /// True when a character was unreadable in the source.
    pub fn has_unknown(&self) -> bool {
        self.0.contains(UNKNOWN)
    }
}

impl std::fmt::Display for KanjiName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Full-width ASCII → ASCII, full-width space → space.
fn fold_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        })
        .collect()
}

/// Full-width digits and letters → ASCII; drops spaces and hyphens.
fn ascii_compact(s: &str) -> String {
    fold_width(s).chars().filter(|c| !(c.is_whitespace() || is_long_vowel(*c) || *c == '\u{3000}')).collect()
}

/// Parses an insurer number as written: widths unified, leading zeros restored, check digit verified.
pub fn insurer_number(input: &str) -> Result<InsurerNumber, FieldError> {
    let s = ascii_compact(input);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::new("insurer_number", "N-INSURER-DIGITS", "must be digits only", input));
    }
    // Legacy systems store the number as an integer, dropping the leading zero of 法別番号 01–09
    // or of 国保 prefecture codes 01–09; no real number loses more than one zero that way.
    let padded = match s.len() {
        5 => format!("0{s}"),
        7 => format!("0{s}"),
        6 | 8 => s,
        _ => {
            return Err(FieldError::new(
                "insurer_number",
                "N-INSURER-LEN",
                "must be 6 or 8 digits (one dropped leading zero is restored)",
                input,
            ));
        }
    };
    InsurerNumber::parse(&padded).map_err(|_| {
        FieldError::new("insurer_number", "N-INSURER-CHECK", "check digit (検証番号) does not match", input)
    })
}

/// A card symbol (記号) in canonical form: ASCII digits and letters, kanji kept, spaces dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardSymbol(String);

impl CardSymbol {
    /// Parses a symbol as written (may be empty: many cards have none).
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let s: String = ascii_compact(input).chars().map(|c| c.to_ascii_uppercase()).collect();
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || in_jis0208(*c))) {
            return Err(FieldError::new("card_symbol", "N-JIS0208", format!("{c:?} is outside JIS X 0208"), input));
        }
        Ok(CardSymbol(s))
    }
    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A card number (番号) in canonical form: digits without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardNumber(String);

impl CardNumber {
    /// Parses a number as written; padding zeros are not significant.
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let s = ascii_compact(input);
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldError::new("card_number", "N-CARD-DIGITS", "must be 1–20 digits", input));
        }
        let t = s.trim_start_matches('0');
        Ok(CardNumber(if t.is_empty() { "0".into() } else { t.into() }))
    }
    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A branch number (枝番): two digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Branch(u8);

impl Branch {
    /// Parses `0`–`99`, padded or not.
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let s = ascii_compact(input);
        match s.parse::<u8>() {
            Ok(n) if s.len() <= 2 && n < 100 => Ok(Branch(n)),
            _ => Err(FieldError::new("card_branch", "N-BRANCH", "must be 2 digits 00–99", input)),
        }
    }
    /// The two-digit form.
    pub fn as_str(&self) -> String {
        format!("{:02}", self.0)
    }
}

/// Parses a birth date in Western or 和暦 form.
pub fn birth_date(input: &str) -> Result<NaiveDate, FieldError> {
    let s = fold_width(input).trim().to_owned();
    let err = |rule_id, rule: &str| FieldError::new("birth_date", rule_id, rule, input);
    if s.starts_with(|c: char| c.is_ascii_digit()) && !(s.len() == 7 && s.bytes().all(|b| b.is_ascii_digit())) {
        let nums: Vec<u32> =
            s.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).filter_map(|p| p.parse().ok()).collect();
        let (y, m, d) = match nums.as_slice() {
            [ymd] if s.len() == 8 => (ymd / 10000, ymd / 100 % 100, ymd % 100),
            [y, m, d] => (*y, *m, *d),
            _ => return Err(err("N-DATE-FORM", "expected YYYY-MM-DD, YYYYMMDD, YYYY年M月D日 or a 和暦 date")),
        };
        if !(1873..=2200).contains(&y) {
            return Err(err("N-DATE-YEAR", "year must be 1873 or later"));
        }
        return NaiveDate::from_ymd_opt(y as i32, m, d).ok_or_else(|| err("N-DATE-DAY", "no such day in the calendar"));
    }
    WarekiDate::parse(&s).map(|w| w.date()).map_err(|e| match e {
        kiban_model::ModelError::Invalid { rule, .. } => FieldError::new("birth_date", "N-DATE-WAREKI", rule, input),
    })
}

/// The canonical form of one field, as the test vectors show it (`kind` names the field type).
pub fn canonical(kind: &str, input: &str) -> Result<String, FieldError> {
    Ok(match kind {
        "kana" => KanaName::parse("name_kana", input)?.0,
        "kanji" => KanjiName::parse("name_kanji", input)?.0,
        "birth" => birth_date(input)?.format("%Y-%m-%d").to_string(),
        "insurer" => insurer_number(input)?.as_str().to_owned(),
        "symbol" => CardSymbol::parse(input)?.0,
        "number" => CardNumber::parse(input)?.0,
        "branch" => Branch::parse(input)?.as_str(),
        other => return Err(FieldError::new("kind", "N-KIND", "unknown field kind", other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_kana_are_never_enlarged() {
        let k = KanaName::parse("name_kana", "ｷｬｯｼｭ ｼｮｳｺ").unwrap();
        assert_eq!(k.as_str(), "キャッシュ ショウコ");
        assert_ne!(KanaName::parse("k", "キヤ").unwrap(), KanaName::parse("k", "キャ").unwrap());
    }

    #[test]
    fn jis0208_table_has_the_expected_membership() {
        for c in ['亜', '熙', '凜', '辺', '高', '崎', 'ア', '〓', '々'] {
            assert!(in_jis0208(c), "{c}");
        }
        for c in ['髙', '﨑', '①', '𠮷', 'ｱ', '€'] {
            assert!(!in_jis0208(c), "{c}");
        }
    }

    #[test]
    fn l2_synthetic_provider_spellings_share_one_canonical_form() {
        use kiban_model::synth::*;
        let cfg = SynthConfig::default();
        let provs = providers(&cfg);
        for i in 0..300 {
            let p = person(&cfg, i);
            if p.maiden.is_some() || p.previous_insurer.is_some() {
                continue;
            }
            let forms: Vec<_> = (0..provs.len())
                .map(|pi| {
                    let id = provider_identity(&cfg, &p, pi, provs[pi].style);
                    (
                        KanaName::parse("name_kana", &id.name_kana).unwrap(),
                        KanjiName::parse("name_kanji", &id.name_kanji).unwrap().joined(),
                        birth_date(&id.birth_date).unwrap(),
                        insurer_number(&id.insurer_number).unwrap(),
                        CardSymbol::parse(&id.card_symbol).unwrap(),
                    )
                })
                .collect();
            assert!(forms.windows(2).all(|w| w[0] == w[1]), "person {i}: {forms:?}");
            assert_eq!(forms[0].2, p.birth);
        }
    }

    proptest! {
        #[test]
        fn kana_normalization_is_idempotent(s in "[ぁ-ゖァ-ヺｦ-ﾟ ・ー]{1,12}") {
            if let Ok(k) = KanaName::parse("k", &s) {
                prop_assert_eq!(KanaName::parse("k", k.as_str()).unwrap(), k);
            }
        }

        #[test]
        fn kanji_normalization_is_idempotent(s in "[亜-熙ぁ-んｦ-ﾝ　 ・Ａ-Ｚ0-9邊髙﨑]{1,10}") {
            if let Ok(k) = KanjiName::parse("k", &s) {
                prop_assert_eq!(KanjiName::parse("k", k.as_str()).unwrap(), k);
            }
        }

        #[test]
        fn hiragana_katakana_and_half_width_agree(s in "[ア-ヺ]{1,10}") {
            let hira = kiban_model::synth::to_hiragana(&s);
            let half = kiban_model::synth::to_halfwidth_katakana(&s);
            let canon = KanaName::parse("k", &s);
            // ヷヺ have no hiragana; everything else must agree across scripts and widths.
            if let (Ok(c), Ok(h)) = (&canon, KanaName::parse("k", &hira)) {
                prop_assert_eq!(c, &h);
            }
            if let (Ok(c), Ok(h)) = (&canon, KanaName::parse("k", &half)) {
                prop_assert_eq!(c, &h);
            }
        }
    }
}
