//! Deterministic synthetic Japanese patient population (`kiban synth`).
//!
//! Every person is drawn from a generator seeded by `(seed, person index)`, so the population is
//! the same whatever the chunking and thread count, and any slice can be regenerated on its own.
//! Providers see the same person through their own habits: half-width kana, old kanji variants,
//! 和暦 birth dates, full-width card symbols, maiden names, an older insurer. Twins, centenarians,
//! deceased persons and rare diseases are seeded on purpose so linkage and anonymization have
//! something to do. Names and municipalities come from the `gimei` crate's lists (MIT, see
//! `data/`); postal codes, phone numbers, card numbers, codes and 二次医療圏 groupings are
//! synthetic and say so.

use std::sync::Arc;
use std::sync::OnceLock;

use arrow::array::{ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::insurer::InsurerNumber;
use crate::person::{Sex, age_on};
use crate::wareki::WarekiDate;

/// Parameters of one synthetic population.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Seed: the same seed and size give the same population, byte for byte.
    pub seed: u64,
    /// Number of distinct persons.
    pub patients: u64,
    /// Number of providers (1–26).
    pub providers: usize,
    /// First day of the care period.
    pub period_start: NaiveDate,
    /// Last day of the care period.
    pub period_end: NaiveDate,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 42,
            patients: 10_000,
            providers: 3,
            period_start: NaiveDate::from_ymd_opt(2023, 4, 1).expect("date"),
            period_end: NaiveDate::from_ymd_opt(2025, 3, 31).expect("date"),
        }
    }
}

/// One synthetic provider.
#[derive(Debug, Clone)]
pub struct SynthProvider {
    /// kiban's id for it, `prov-a` …
    pub id: String,
    /// Display name (synthetic).
    pub name: String,
    /// Prefecture code where it stands; most of its patients live there.
    pub pref_code: u8,
    /// How its system writes identity fields.
    pub style: ProviderStyle,
}

/// The habits of one provider's system, which make the same person look different.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderStyle {
    /// Full-width katakana, ISO dates, full-width space between names.
    Modern,
    /// Half-width katakana, 和暦 birth dates, no space, full-width card symbols.
    Legacy,
    /// Hiragana kana, ISO dates, half-width space, old kanji kept as written on the card.
    Clinic,
}

/// The providers of a configuration, in order.
pub fn providers(cfg: &SynthConfig) -> Vec<SynthProvider> {
    const KINDS: [&str; 3] = ["総合病院", "医療センター", "クリニック"];
    (0..cfg.providers.clamp(1, 26))
        .map(|i| {
            let letter = (b'a' + i as u8) as char;
            let pref_code = providers_pref(i);
            SynthProvider {
                id: format!("prov-{letter}"),
                name: format!("合成{}{}（架空）", lists().prefectures[pref_code as usize - 1].0, KINDS[i % 3]),
                pref_code,
                style: [ProviderStyle::Modern, ProviderStyle::Legacy, ProviderStyle::Clinic][i % 3],
            }
        })
        .collect()
}

struct Lists {
    male: Vec<(String, String)>,
    female: Vec<(String, String)>,
    family: Vec<(String, String)>,
    prefectures: Vec<(String, String)>,
    municipalities: Vec<Vec<(String, String)>>,
    towns: Vec<(String, String)>,
}

fn lists() -> &'static Lists {
    static LISTS: OnceLock<Lists> = OnceLock::new();
    LISTS.get_or_init(|| {
        let mut l = Lists {
            male: vec![],
            female: vec![],
            family: vec![],
            prefectures: vec![],
            municipalities: vec![vec![]; 47],
            towns: vec![],
        };
        for line in include_str!("../data/names.tsv").lines().skip(1) {
            let mut f = line.split('\t');
            let (kind, kanji, kana) = (f.next(), f.next(), f.next());
            let entry = (kanji.unwrap_or_default().to_owned(), kana.unwrap_or_default().to_owned());
            match kind {
                Some("M") => l.male.push(entry),
                Some("F") => l.female.push(entry),
                _ => l.family.push(entry),
            }
        }
        for line in include_str!("../data/municipalities.tsv").lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            let code: usize = f[0].parse().expect("pref code");
            if l.prefectures.len() < code {
                l.prefectures.push((f[1].to_owned(), f[2].to_owned()));
            }
            l.municipalities[code - 1].push((f[3].to_owned(), f[4].to_owned()));
        }
        for line in include_str!("../data/towns.tsv").lines().skip(1) {
            let mut f = line.split('\t');
            l.towns.push((f.next().unwrap_or_default().to_owned(), f.next().unwrap_or_default().to_owned()));
        }
        l
    })
}

/// Prefecture name for a JIS prefecture code 1–47.
pub fn prefecture_name(code: u8) -> &'static str {
    &lists().prefectures[code as usize - 1].0
}

/// The synthetic 二次医療圏 of a municipality: municipalities of a prefecture grouped in runs of
/// eight in list order. Marked synthetic in its name; never an official area.
pub fn secondary_area(pref_code: u8, municipality_index: usize) -> String {
    format!("{:02}{:02}", pref_code, municipality_index / 8 + 1)
}

/// The ground truth of one synthetic person.
#[derive(Debug, Clone)]
pub struct Person {
    /// Index in the population; the ground-truth identity.
    pub truth_id: u64,
    /// Sex.
    pub sex: Sex,
    /// Birth date.
    pub birth: NaiveDate,
    /// Family name (kanji) and its katakana reading.
    pub family: (String, String),
    /// Given name (kanji) and its katakana reading.
    pub given: (String, String),
    /// Family name before marriage, when it changed.
    pub maiden: Option<(String, String)>,
    /// Prefecture code.
    pub pref_code: u8,
    /// Index of the municipality in its prefecture's list.
    pub municipality_index: usize,
    /// Municipality name.
    pub municipality: String,
    /// Town and street number, e.g. `本町2丁目5-13`.
    pub street: String,
    /// Postal code `123-4567` (synthetic).
    pub postal: String,
    /// Phone number (synthetic).
    pub phone: String,
    /// Current insurer.
    pub insurer: InsurerNumber,
    /// Previous insurer, when the person changed insurers during the period.
    pub previous_insurer: Option<InsurerNumber>,
    /// Card symbol (記号), ASCII/kanji as issued.
    pub card_symbol: String,
    /// Card number (番号).
    pub card_number: String,
    /// Branch number (枝番), 2 digits.
    pub branch: String,
    /// Died during the period.
    pub deceased: bool,
    /// Indices of the providers that hold records of this person.
    pub providers: Vec<usize>,
}

impl Person {
    /// The individual insured-person number (個人単位被保険者番号): insurer + symbol + number + branch.
    pub fn individual_number(&self) -> String {
        format!("{}{}{}{}", self.insurer, self.card_symbol, self.card_number, self.branch)
    }
    /// Full address line.
    pub fn address(&self) -> String {
        format!("{}{}{}", prefecture_name(self.pref_code), self.municipality, self.street)
    }
}

fn mix(seed: u64, i: u64) -> u64 {
    // splitmix64: decorrelates neighbouring person indices.
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<'a, T>(rng: &mut impl Rng, v: &'a [T]) -> &'a T {
    &v[rng.random_range(0..v.len())]
}

const POSTAL_PREFIX: [u16; 47] = [
    60, 30, 20, 980, 10, 990, 960, 300, 320, 370, 330, 260, 100, 210, 940, 930, 920, 910, 400, 380, 500, 410, 440, 510,
    520, 600, 530, 650, 630, 640, 680, 690, 700, 720, 740, 770, 760, 790, 780, 800, 840, 850, 860, 870, 880, 890, 900,
];

/// Generates person `i` of the population; the same `(seed, i)` always gives the same person.
pub fn person(cfg: &SynthConfig, i: u64) -> Person {
    // Twins: odd persons at a small rate copy their elder sibling's household.
    let base = mix(cfg.seed, i);
    if i % 2 == 1 && base.is_multiple_of(400) {
        let mut twin = person_alone(cfg, i - 1);
        let mut rng = ChaCha8Rng::seed_from_u64(base);
        twin.truth_id = i;
        twin.given = if twin.sex == Sex::Male {
            pick(&mut rng, &lists().male).clone()
        } else {
            pick(&mut rng, &lists().female).clone()
        };
        twin.branch = format!("{:02}", twin.branch.parse::<u32>().unwrap_or(0) + 1);
        twin.maiden = None;
        twin.deceased = false;
        return twin;
    }
    person_alone(cfg, i)
}

fn person_alone(cfg: &SynthConfig, i: u64) -> Person {
    let l = lists();
    let mut rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed, i));
    let sex = if rng.random_bool(0.51) { Sex::Female } else { Sex::Male };
    // Age at the period start: skewed old like a patient population, with rare centenarians.
    let age_years: i64 = if rng.random_bool(0.0008) {
        rng.random_range(100..=108)
    } else {
        let u: f64 = rng.random();
        (u.sqrt() * 95.0) as i64
    };
    let birth = cfg.period_start - chrono::Duration::days(age_years * 365 + rng.random_range(0..365));
    let family = pick(&mut rng, &l.family).clone();
    let given = if sex == Sex::Male { pick(&mut rng, &l.male).clone() } else { pick(&mut rng, &l.female).clone() };
    let maiden =
        (sex == Sex::Female && age_years >= 20 && rng.random_bool(0.03)).then(|| pick(&mut rng, &l.family).clone());
    let n_prov = cfg.providers.clamp(1, 26);
    let home = rng.random_range(0..n_prov);
    let mut provs = vec![home];
    for p in 0..n_prov {
        if p != home && rng.random_bool(0.3) {
            provs.push(p);
        }
    }
    provs.sort_unstable();
    let home_pref = providers_pref(home);
    let pref_code = if rng.random_bool(0.85) { home_pref } else { rng.random_range(1..=47) };
    let munis = &l.municipalities[pref_code as usize - 1];
    let municipality_index = rng.random_range(0..munis.len());
    let town = &pick(&mut rng, &l.towns).0;
    let street =
        format!("{}{}丁目{}-{}", town, rng.random_range(1..=5), rng.random_range(1..=30), rng.random_range(1..=25));
    let postal_num = POSTAL_PREFIX[pref_code as usize - 1] as u32
        * if POSTAL_PREFIX[pref_code as usize - 1] < 100 { 10 } else { 1 }
        + (municipality_index as u32 % 10);
    let postal = format!(
        "{:03}-{:04}",
        postal_num % 1000,
        mix(pref_code as u64 * 10_000 + municipality_index as u64, town.len() as u64) % 10_000
    );
    let phone = if rng.random_bool(0.6) {
        format!(
            "0{}0-{:04}-{:04}",
            [7, 8, 9][rng.random_range(0..3)],
            rng.random_range(0..10_000),
            rng.random_range(0..10_000)
        )
    } else {
        format!(
            "0{}-{:04}-{:04}",
            rng.random_range(3..=99),
            rng.random_range(1000..10_000),
            rng.random_range(0..10_000)
        )
    };
    let new_insurer = |rng: &mut ChaCha8Rng| {
        if age_years >= 75 {
            // 後期高齢者医療: 法別番号 39
            InsurerNumber::from_body(&format!("39{:02}{:03}", pref_code, rng.random_range(1..200))).expect("7 digits")
        } else if rng.random_bool(0.35) {
            InsurerNumber::from_body(&format!("{:02}{:03}", pref_code, rng.random_range(1..999))).expect("5 digits")
        } else {
            let law = [1u32, 6, 31, 32, 34][rng.random_range(0..5)];
            InsurerNumber::from_body(&format!("{:02}{:02}{:03}", law, pref_code, rng.random_range(1..999)))
                .expect("7 digits")
        }
    };
    let insurer = new_insurer(&mut rng);
    let previous_insurer = rng.random_bool(0.05).then(|| new_insurer(&mut rng));
    let card_symbol = if insurer.is_national_health_insurance() {
        format!(
            "{}市{:02}",
            &l.municipalities[pref_code as usize - 1][municipality_index].0.chars().next().unwrap_or('本'),
            rng.random_range(1..99)
        )
    } else {
        format!("{:04}", rng.random_range(1..10_000))
    };
    Person {
        truth_id: i,
        sex,
        birth,
        family,
        given,
        maiden,
        pref_code,
        municipality_index,
        municipality: munis[municipality_index].0.clone(),
        street,
        postal,
        phone,
        insurer,
        previous_insurer,
        card_symbol,
        card_number: format!("{}", rng.random_range(1..10_000_000u32)),
        branch: format!("{:02}", rng.random_range(0..3)),
        deceased: age_years > 70 && rng.random_bool(0.02),
        providers: provs,
    }
}

/// Prefectures the synthetic providers stand in, in provider order (repeating).
const PROVIDER_PREFS: [u8; 6] = [13, 27, 1, 23, 40, 4];

fn providers_pref(p: usize) -> u8 {
    PROVIDER_PREFS[p % PROVIDER_PREFS.len()]
}

const OLD_KANJI: [(char, char); 10] = [
    ('辺', '邊'),
    ('高', '髙'),
    ('崎', '﨑'),
    ('沢', '澤'),
    ('浜', '濱'),
    ('斉', '齋'),
    ('広', '廣'),
    ('島', '嶋'),
    ('国', '國'),
    ('竜', '龍'),
];

/// Full-width katakana → half-width, splitting voiced marks (ガ → ｶﾞ) as legacy systems store them.
pub fn to_halfwidth_katakana(s: &str) -> String {
    const FULL: &str = "ァアィイゥウェエォオカキクケコサシスセソタチッツテトナニヌネノハヒフヘホマミムメモャヤュユョヨラリルレロワヲンー・　";
    const HALF: &str = "ｧｱｨｲｩｳｪｴｫｵｶｷｸｹｺｻｼｽｾｿﾀﾁｯﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓｬﾔｭﾕｮﾖﾗﾘﾙﾚﾛﾜｦﾝｰ･ ";
    const VOICED: &str = "ガギグゲゴザジズゼゾダヂヅデドバビブベボヴ";
    const VOICED_BASE: &str = "カキクケコサシスセソタチツテトハヒフヘホウ";
    const SEMI: &str = "パピプペポ";
    let full: Vec<char> = FULL.chars().collect();
    let half: Vec<char> = HALF.chars().collect();
    let map = |c: char| full.iter().position(|&f| f == c).map(|p| half[p]);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if let Some(p) = VOICED.chars().position(|v| v == c) {
            out.push(map(VOICED_BASE.chars().nth(p).expect("aligned")).unwrap_or(c));
            out.push('ﾞ');
        } else if let Some(p) = SEMI.chars().position(|v| v == c) {
            out.push(map("ハヒフヘホ".chars().nth(p).expect("aligned")).unwrap_or(c));
            out.push('ﾟ');
        } else {
            out.push(map(c).unwrap_or(c));
        }
    }
    out
}

/// Katakana → hiragana (U+30A1–U+30F6 shift down by 0x60).
pub fn to_hiragana(s: &str) -> String {
    s.chars()
        .map(|c| if ('\u{30A1}'..='\u{30F6}').contains(&c) { char::from_u32(c as u32 - 0x60).unwrap_or(c) } else { c })
        .collect()
}

fn to_fullwidth_ascii(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() { char::from_u32(c as u32 + 0xFEE0).unwrap_or(c) } else { c }).collect()
}

/// The identity record a provider holds for a person: the person as that provider's system writes it.
#[derive(Debug, Clone)]
pub struct ProviderIdentity {
    /// Provider-local patient id.
    pub patient_id: String,
    /// Kanji name as written.
    pub name_kanji: String,
    /// Kana name as written.
    pub name_kana: String,
    /// Birth date as written (ISO or 和暦).
    pub birth_date: String,
    /// Insurer number as written (may lack zero padding).
    pub insurer_number: String,
    /// Card symbol as written (may be full-width).
    pub card_symbol: String,
}

/// How `provider` writes `person`.
pub fn provider_identity(
    cfg: &SynthConfig,
    person: &Person,
    provider: usize,
    style: ProviderStyle,
) -> ProviderIdentity {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed ^ 0x5eed_0001, person.truth_id * 31 + provider as u64));
    // The first provider in the list saw the person before marriage.
    let family = match &person.maiden {
        Some(m) if person.providers.first() == Some(&provider) && person.providers.len() > 1 => m,
        _ => &person.family,
    };
    let mut family_kanji = family.0.clone();
    if style == ProviderStyle::Clinic || rng.random_bool(0.03) {
        family_kanji =
            family_kanji.chars().map(|c| OLD_KANJI.iter().find(|(n, _)| *n == c).map_or(c, |(_, o)| *o)).collect();
    }
    let kana_family = &family.1;
    let kana_given = &person.given.1;
    let (name_kanji, name_kana) = match style {
        ProviderStyle::Modern => {
            (format!("{family_kanji}　{}", person.given.0), format!("{kana_family}　{kana_given}"))
        }
        ProviderStyle::Legacy => {
            (format!("{family_kanji}{}", person.given.0), to_halfwidth_katakana(&format!("{kana_family} {kana_given}")))
        }
        ProviderStyle::Clinic => {
            (format!("{family_kanji} {}", person.given.0), to_hiragana(&format!("{kana_family} {kana_given}")))
        }
    };
    let birth_date = match style {
        ProviderStyle::Legacy => {
            WarekiDate::from_date(person.birth).map(|w| w.to_string()).unwrap_or_else(|_| person.birth.to_string())
        }
        _ => person.birth.format("%Y-%m-%d").to_string(),
    };
    let insurer = match &person.previous_insurer {
        Some(prev) if provider == person.providers[0] && person.providers.len() > 1 => prev,
        _ => &person.insurer,
    };
    let insurer_number = match style {
        ProviderStyle::Legacy => insurer.as_str().trim_start_matches('0').to_owned(),
        _ => insurer.as_str().to_owned(),
    };
    let card_symbol = match style {
        ProviderStyle::Legacy => to_fullwidth_ascii(&person.card_symbol),
        _ => person.card_symbol.clone(),
    };
    ProviderIdentity {
        // An affine map mod 10^8 with a multiplier coprime to 10 is a bijection: ids never repeat
        // within a provider (up to 10^8 persons) yet do not reveal the person's index.
        patient_id: format!(
            "{:08}",
            (person.truth_id.wrapping_mul(48_271) + mix(cfg.seed, provider as u64) % 100_000_000) % 100_000_000
        ),
        name_kanji,
        name_kana,
        birth_date,
        insurer_number,
        card_symbol,
    }
}

// (code, name, weight per 10,000 encounters)
const DIAGNOSES: [(&str, &str, u32); 24] = [
    ("I10", "本態性高血圧症", 1400),
    ("E11.9", "2型糖尿病", 900),
    ("E78.5", "脂質異常症", 900),
    ("J06.9", "急性上気道感染症", 1100),
    ("K21.9", "胃食道逆流症", 500),
    ("M54.5", "腰痛症", 600),
    ("J45.9", "気管支喘息", 400),
    ("F32.9", "うつ病", 300),
    ("I48.9", "心房細動", 250),
    ("N18.9", "慢性腎臓病", 250),
    ("C16.9", "胃の悪性新生物", 120),
    ("C34.9", "肺の悪性新生物", 120),
    ("I63.9", "脳梗塞", 200),
    ("I21.9", "急性心筋梗塞", 80),
    ("J18.9", "肺炎", 300),
    ("K29.7", "胃炎", 600),
    ("H52.1", "近視", 300),
    ("L20.9", "アトピー性皮膚炎", 300),
    ("M81.9", "骨粗鬆症", 350),
    ("S72.0", "大腿骨頚部骨折", 60),
    ("G30.9", "アルツハイマー病", 150),
    ("E03.9", "甲状腺機能低下症", 200),
    ("K80.2", "胆石症", 100),
    ("B18.1", "慢性B型ウイルス肝炎", 60),
];
const RARE_DIAGNOSES: [(&str, &str); 4] = [
    ("E75.2", "ファブリー病"),
    ("G12.2", "筋萎縮性側索硬化症"),
    ("E84.9", "嚢胞性線維症"),
    ("D66", "遺伝性第VIII因子欠乏症"),
];
// (synthetic YJ-shaped code, name, route)
const DRUGS: [(&str, &str, &str); 12] = [
    ("2171022F1901", "アムロジピン錠5mg", "oral"),
    ("3961007F1902", "メトホルミン塩酸塩錠250mg", "oral"),
    ("2189017F1903", "ロスバスタチン錠2.5mg", "oral"),
    ("2325003F1904", "ランソプラゾールOD錠15mg", "oral"),
    ("1149019F1905", "ロキソプロフェンNa錠60mg", "oral"),
    ("2649843S1906", "ロキソプロフェンNaテープ100mg", "external"),
    ("2290800G1907", "ブデソニド吸入剤", "external"),
    ("1179041F1908", "エスシタロプラム錠10mg", "oral"),
    ("3339950F1909", "アピキサバン錠5mg", "oral"),
    ("3969406A1910", "インスリン グラルギン注", "injection"),
    ("6132400A1911", "セファゾリンNa注射用1g", "injection"),
    ("3999411G1912", "アレンドロン酸錠35mg", "oral"),
];
// (synthetic JLAC10-shaped code, name, unit, mean, sd)
const LABS: [(&str, &str, &str, f64, f64); 6] = [
    ("3D046000000", "HbA1c", "%", 6.0, 0.9),
    ("3F077000000", "LDLコレステロール", "mg/dL", 120.0, 30.0),
    ("3C025000000", "eGFR", "mL/min/1.73m2", 70.0, 18.0),
    ("3B035000000", "AST", "U/L", 24.0, 9.0),
    ("3B045000000", "ALT", "U/L", 22.0, 12.0),
    ("5C070000000", "CRP", "mg/dL", 0.3, 0.6),
];
const DEPARTMENTS: [&str; 8] = ["内科", "外科", "整形外科", "小児科", "眼科", "皮膚科", "精神科", "循環器内科"];

/// The tables a synthetic population is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SynthTable {
    /// Ground truth, one row per person (for evaluating linkage; never sent by a provider).
    Truth,
    /// Provider identity records (what a provider sends as patient master).
    Patients,
    /// Encounters (外来・入院).
    Encounters,
    /// Diagnoses (ICD-10).
    Diagnoses,
    /// Prescriptions.
    Prescriptions,
    /// Lab results.
    Labs,
}

impl SynthTable {
    /// All tables, in writing order.
    pub const ALL: [SynthTable; 6] = [
        SynthTable::Truth,
        SynthTable::Patients,
        SynthTable::Encounters,
        SynthTable::Diagnoses,
        SynthTable::Prescriptions,
        SynthTable::Labs,
    ];
    /// File-system name.
    pub fn name(self) -> &'static str {
        match self {
            SynthTable::Truth => "truth",
            SynthTable::Patients => "patients",
            SynthTable::Encounters => "encounters",
            SynthTable::Diagnoses => "diagnoses",
            SynthTable::Prescriptions => "prescriptions",
            SynthTable::Labs => "labs",
        }
    }
    /// Arrow schema.
    pub fn schema(self) -> SchemaRef {
        let s = |n: &str| Field::new(n, DataType::Utf8, false);
        let so = |n: &str| Field::new(n, DataType::Utf8, true);
        let d = |n: &str| Field::new(n, DataType::Date32, false);
        let key = || vec![s("provider_id"), s("patient_id")];
        let fields = match self {
            SynthTable::Truth => vec![
                Field::new("truth_id", DataType::UInt64, false),
                s("sex"),
                d("birth_date"),
                s("family_kanji"),
                s("given_kanji"),
                s("family_kana"),
                s("given_kana"),
                s("prefecture"),
                s("municipality"),
                s("secondary_area"),
                s("street"),
                s("postal_code"),
                s("phone"),
                s("insurer_number"),
                s("card_symbol"),
                s("card_number"),
                s("card_branch"),
                Field::new("deceased", DataType::Boolean, false),
                s("provider_ids"),
                s("provider_patient_ids"),
            ],
            SynthTable::Patients => {
                let mut f = key();
                f.extend([
                    s("name_kanji"),
                    s("name_kana"),
                    s("sex"),
                    s("birth_date"),
                    s("postal_code"),
                    s("address"),
                    s("phone"),
                    s("insurer_number"),
                    s("card_symbol"),
                    s("card_number"),
                    s("card_branch"),
                ]);
                f
            }
            SynthTable::Encounters => {
                let mut f = key();
                f.extend([
                    s("encounter_id"),
                    s("encounter_type"),
                    s("department"),
                    d("admission_date"),
                    Field::new("discharge_date", DataType::Date32, true),
                ]);
                f
            }
            SynthTable::Diagnoses => {
                let mut f = key();
                f.extend([
                    s("encounter_id"),
                    d("diagnosis_date"),
                    s("icd10"),
                    s("diagnosis_name"),
                    Field::new("main", DataType::Boolean, false),
                ]);
                f
            }
            SynthTable::Prescriptions => {
                let mut f = key();
                f.extend([
                    s("encounter_id"),
                    d("prescribed_date"),
                    s("drug_code"),
                    s("drug_name"),
                    s("route"),
                    Field::new("days", DataType::UInt64, false),
                ]);
                f
            }
            SynthTable::Labs => {
                let mut f = key();
                f.extend([
                    s("encounter_id"),
                    d("result_date"),
                    s("test_code"),
                    s("test_name"),
                    Field::new("value", DataType::Float64, false),
                    so("unit"),
                ]);
                f
            }
        };
        Arc::new(Schema::new(fields))
    }
}

fn days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - 719_163 // 1970-01-01
}

#[derive(Default)]
struct Cols {
    s: Vec<StringBuilder>,
    d: Vec<Date32Builder>,
    u: Vec<UInt64Builder>,
    f: Vec<Float64Builder>,
    b: Vec<BooleanBuilder>,
}

/// A slice of the population, as one record batch per table.
pub struct SynthChunk {
    /// Batches in [`SynthTable::ALL`] order.
    pub batches: Vec<(SynthTable, RecordBatch)>,
}

/// Generates persons `range` with all their provider records and clinical rows.
pub fn generate_chunk(cfg: &SynthConfig, range: std::ops::Range<u64>) -> SynthChunk {
    let provs = providers(cfg);
    let mut t = [(); 6].map(|_| Cols::default());
    let builders = |c: &mut Cols, ns, nd, nu, nf, nb| {
        c.s = (0..ns).map(|_| StringBuilder::new()).collect();
        c.d = (0..nd).map(|_| Date32Builder::new()).collect();
        c.u = (0..nu).map(|_| UInt64Builder::new()).collect();
        c.f = (0..nf).map(|_| Float64Builder::new()).collect();
        c.b = (0..nb).map(|_| BooleanBuilder::new()).collect();
    };
    builders(&mut t[0], 18, 1, 1, 0, 1);
    builders(&mut t[1], 13, 0, 0, 0, 0);
    builders(&mut t[2], 5, 2, 0, 0, 0);
    builders(&mut t[3], 5, 1, 0, 0, 1);
    builders(&mut t[4], 6, 1, 1, 0, 0);
    builders(&mut t[5], 6, 1, 0, 1, 0);
    let span = (cfg.period_end - cfg.period_start).num_days().max(1);
    let total_weight: u32 = DIAGNOSES.iter().map(|d| d.2).sum();
    for i in range {
        let p = person(cfg, i);
        let mut rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed ^ 0xc1_1c, i));
        let ids: Vec<ProviderIdentity> =
            p.providers.iter().map(|&pi| provider_identity(cfg, &p, pi, provs[pi].style)).collect();
        let rare = rng.random_bool(0.002).then(|| RARE_DIAGNOSES[rng.random_range(0..RARE_DIAGNOSES.len())]);
        let chronic = DIAGNOSES[rng.random_range(0..DIAGNOSES.len())];
        // truth
        {
            let c = &mut t[0];
            c.u[0].append_value(p.truth_id);
            let vals = [
                p.sex.code(),
                &p.family.0,
                &p.given.0,
                &p.family.1,
                &p.given.1,
                prefecture_name(p.pref_code),
                &p.municipality,
                &secondary_area(p.pref_code, p.municipality_index),
                &p.street,
                &p.postal,
                &p.phone,
                p.insurer.as_str(),
                &p.card_symbol,
                &p.card_number,
                &p.branch,
            ];
            for (k, v) in vals.iter().enumerate() {
                c.s[k].append_value(v);
            }
            c.s[15].append_value(p.providers.iter().map(|&x| provs[x].id.as_str()).collect::<Vec<_>>().join(";"));
            c.s[16].append_value(ids.iter().map(|x| x.patient_id.as_str()).collect::<Vec<_>>().join(";"));
            c.s[17].append_null();
            c.d[0].append_value(days(p.birth));
            c.b[0].append_value(p.deceased);
        }
        for (k, &pi) in p.providers.iter().enumerate() {
            let prov = &provs[pi];
            let id = &ids[k];
            {
                let c = &mut t[1];
                let address = format!("{}{}{}", prefecture_name(p.pref_code), p.municipality, p.street);
                let vals = [
                    prov.id.as_str(),
                    &id.patient_id,
                    &id.name_kanji,
                    &id.name_kana,
                    p.sex.code(),
                    &id.birth_date,
                    &p.postal,
                    &address,
                    &p.phone,
                    &id.insurer_number,
                    &id.card_symbol,
                    &p.card_number,
                    &p.branch,
                ];
                for (j, v) in vals.iter().enumerate() {
                    c.s[j].append_value(v);
                }
            }
            let n_enc = 1 + (rng.random::<f64>().powi(2) * 6.0) as u32;
            for e in 0..n_enc {
                let date = cfg.period_start + chrono::Duration::days(rng.random_range(0..span));
                let inpatient = rng.random_bool(0.08);
                let enc_id = format!("{}-{}", id.patient_id, e + 1);
                {
                    let c = &mut t[2];
                    for (j, v) in [
                        prov.id.as_str(),
                        &id.patient_id,
                        &enc_id,
                        if inpatient { "入院" } else { "外来" },
                        *pick(&mut rng, &DEPARTMENTS),
                    ]
                    .iter()
                    .enumerate()
                    {
                        c.s[j].append_value(v);
                    }
                    c.d[0].append_value(days(date));
                    if inpatient {
                        c.d[1].append_value(days(date) + rng.random_range(1..30));
                    } else {
                        c.d[1].append_null();
                    }
                }
                let n_dx = 1 + rng.random_range(0..3);
                for j in 0..n_dx {
                    let (code, name) = if let Some(r) = rare.filter(|_| j == 0 && e == 0) {
                        (r.0, r.1)
                    } else if j == 0 {
                        (chronic.0, chronic.1)
                    } else {
                        let mut w = rng.random_range(0..total_weight);
                        let mut chosen = DIAGNOSES[0];
                        for dx in DIAGNOSES {
                            if w < dx.2 {
                                chosen = dx;
                                break;
                            }
                            w -= dx.2;
                        }
                        (chosen.0, chosen.1)
                    };
                    let c = &mut t[3];
                    for (k2, v) in [prov.id.as_str(), &id.patient_id, &enc_id, code, name].iter().enumerate() {
                        c.s[k2].append_value(v);
                    }
                    c.d[0].append_value(days(date));
                    c.b[0].append_value(j == 0);
                }
                for _ in 0..rng.random_range(0..3) {
                    let dr = pick(&mut rng, &DRUGS);
                    let c = &mut t[4];
                    for (k2, v) in [prov.id.as_str(), &id.patient_id, &enc_id, dr.0, dr.1, dr.2].iter().enumerate() {
                        c.s[k2].append_value(v);
                    }
                    c.d[0].append_value(days(date));
                    c.u[0].append_value([7, 14, 28, 30, 56, 90][rng.random_range(0..6)]);
                }
                if rng.random_bool(0.5) {
                    let lab = pick(&mut rng, &LABS);
                    // Box–Muller, clipped at zero; an occasional extreme value is an outlier on purpose.
                    let z = (-2.0 * rng.random::<f64>().max(1e-12).ln()).sqrt()
                        * (std::f64::consts::TAU * rng.random::<f64>()).cos();
                    let value = ((lab.3 + z * lab.4).max(0.0) * 10.0).round() / 10.0;
                    let c = &mut t[5];
                    for (k2, v) in [prov.id.as_str(), &id.patient_id, &enc_id, lab.0, lab.1, lab.2].iter().enumerate() {
                        c.s[k2].append_value(v);
                    }
                    c.d[0].append_value(days(date));
                    c.f[0].append_value(value);
                }
            }
        }
    }
    let finish = |table: SynthTable, c: &mut Cols| -> RecordBatch {
        let schema = table.schema();
        let (mut si, mut di, mut ui, mut fi, mut bi) = (0, 0, 0, 0, 0);
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.data_type() {
                    DataType::Utf8 => {
                        si += 1;
                        Arc::new(c.s[si - 1].finish())
                    }
                    DataType::Date32 => {
                        di += 1;
                        Arc::new(c.d[di - 1].finish())
                    }
                    DataType::UInt64 => {
                        ui += 1;
                        Arc::new(c.u[ui - 1].finish())
                    }
                    DataType::Float64 => {
                        fi += 1;
                        Arc::new(c.f[fi - 1].finish())
                    }
                    _ => {
                        bi += 1;
                        Arc::new(c.b[bi - 1].finish())
                    }
                }
            })
            .collect();
        RecordBatch::try_new(schema, cols).expect("builders match the schema")
    };
    SynthChunk { batches: SynthTable::ALL.iter().zip(t.iter_mut()).map(|(&tab, c)| (tab, finish(tab, c))).collect() }
}

/// Schema of [`research_extract`]: one row per encounter with its main diagnosis, the shape of a
/// typical research extract (identifiers still in, for the anonymizer to remove).
pub fn research_extract_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        s("patient_id"),
        s("name_kanji"),
        s("insurer_number"),
        Field::new("age", DataType::UInt64, false),
        s("sex"),
        s("prefecture"),
        s("secondary_area"),
        s("admission_date"),
        s("icd10"),
        s("diagnosis_name"),
        s("encounter_type"),
    ]))
}

/// Joins a chunk's tables into the research extract of [`research_extract_schema`]: age at the
/// encounter and residence come from the ground truth, the rest from the provider's records.
pub fn research_extract(chunk: &SynthChunk) -> RecordBatch {
    use arrow::array::AsArray;
    use arrow::datatypes::Date32Type;
    use std::collections::HashMap;
    let table = |t: SynthTable| &chunk.batches.iter().find(|(k, _)| *k == t).expect("every table generated").1;
    let col = |b: &RecordBatch, name: &str| b.column(b.schema().index_of(name).expect("column in schema")).clone();
    let (truth, patients, encounters, diagnoses) = (
        table(SynthTable::Truth),
        table(SynthTable::Patients),
        table(SynthTable::Encounters),
        table(SynthTable::Diagnoses),
    );
    let t_birth = col(truth, "birth_date");
    let t_birth = t_birth.as_primitive::<Date32Type>();
    let (t_pref, t_area, t_provs, t_pids) = (
        col(truth, "prefecture"),
        col(truth, "secondary_area"),
        col(truth, "provider_ids"),
        col(truth, "provider_patient_ids"),
    );
    let (t_pref, t_area, t_provs, t_pids) =
        (t_pref.as_string::<i32>(), t_area.as_string::<i32>(), t_provs.as_string::<i32>(), t_pids.as_string::<i32>());
    let mut person: HashMap<(String, String), usize> = HashMap::new();
    for i in 0..truth.num_rows() {
        for (p, id) in t_provs.value(i).split(';').zip(t_pids.value(i).split(';')) {
            person.insert((p.to_owned(), id.to_owned()), i);
        }
    }
    let p = |n: &str| col(patients, n);
    let (p_prov, p_id, p_name, p_ins, p_sex) =
        (p("provider_id"), p("patient_id"), p("name_kanji"), p("insurer_number"), p("sex"));
    let mut master: HashMap<(String, String), usize> = HashMap::new();
    for i in 0..patients.num_rows() {
        master.insert((p_prov.as_string::<i32>().value(i).to_owned(), p_id.as_string::<i32>().value(i).to_owned()), i);
    }
    let d_enc = col(diagnoses, "encounter_id");
    let d_main = col(diagnoses, "main");
    let (d_code, d_name) = (col(diagnoses, "icd10"), col(diagnoses, "diagnosis_name"));
    let mut main_dx: HashMap<&str, usize> = HashMap::new();
    for i in 0..diagnoses.num_rows() {
        if d_main.as_boolean().value(i) {
            main_dx.insert(d_enc.as_string::<i32>().value(i), i);
        }
    }
    let e = |n: &str| col(encounters, n);
    let (e_prov, e_pid, e_id, e_type, e_date) =
        (e("provider_id"), e("patient_id"), e("encounter_id"), e("encounter_type"), e("admission_date"));
    let mut b: Vec<StringBuilder> = (0..10).map(|_| StringBuilder::new()).collect();
    let mut age = UInt64Builder::new();
    for i in 0..encounters.num_rows() {
        let key = (e_prov.as_string::<i32>().value(i).to_owned(), e_pid.as_string::<i32>().value(i).to_owned());
        let (Some(&t), Some(&m), Some(&dx)) =
            (person.get(&key), master.get(&key), main_dx.get(e_id.as_string::<i32>().value(i)))
        else {
            continue;
        };
        let day = e_date.as_primitive::<Date32Type>().value(i);
        let to_date = |d: i32| NaiveDate::from_num_days_from_ce_opt(d + 719_163).expect("date in range");
        let years = age_on(to_date(t_birth.value(t)), to_date(day)).max(0) as u64;
        let vals = [
            key.1.as_str(),
            p_name.as_string::<i32>().value(m),
            p_ins.as_string::<i32>().value(m),
            p_sex.as_string::<i32>().value(m),
            t_pref.value(t),
            t_area.value(t),
            &to_date(day).to_string(),
            d_code.as_string::<i32>().value(dx),
            d_name.as_string::<i32>().value(dx),
            e_type.as_string::<i32>().value(i),
        ];
        for (k, v) in vals.iter().enumerate() {
            b[k].append_value(v);
        }
        age.append_value(years);
    }
    let mut cols: Vec<ArrayRef> = b.iter_mut().map(|x| Arc::new(x.finish()) as ArrayRef).collect();
    cols.insert(3, Arc::new(age.finish()));
    RecordBatch::try_new(research_extract_schema(), cols).expect("columns match the schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn research_extract_has_one_row_per_encounter_with_a_plausible_age() {
        let c = cfg(500);
        let chunk = generate_chunk(&c, 0..500);
        let x = research_extract(&chunk);
        let encounters = chunk.batches.iter().find(|(t, _)| *t == SynthTable::Encounters).unwrap().1.num_rows();
        assert_eq!(x.num_rows(), encounters);
        use arrow::array::AsArray;
        let ages = x.column(3).as_primitive::<arrow::datatypes::UInt64Type>();
        assert!(ages.values().iter().all(|&a| a <= 112));
        assert!(ages.values().iter().any(|&a| a < 20) && ages.values().iter().any(|&a| a >= 70));
    }

    fn cfg(n: u64) -> SynthConfig {
        SynthConfig { patients: n, ..Default::default() }
    }

    #[test]
    fn same_seed_gives_the_same_people_whatever_the_chunking() {
        let c = cfg(200);
        let whole = generate_chunk(&c, 0..200);
        let a = generate_chunk(&c, 0..77);
        let b = generate_chunk(&c, 77..200);
        for k in 0..whole.batches.len() {
            let joined =
                arrow::compute::concat_batches(&whole.batches[k].1.schema(), [&a.batches[k].1, &b.batches[k].1])
                    .unwrap();
            assert_eq!(joined, whole.batches[k].1, "table {}", whole.batches[k].0.name());
        }
        let other = generate_chunk(&SynthConfig { seed: 7, ..c }, 0..200);
        assert_ne!(other.batches[0].1, whole.batches[0].1);
    }

    #[test]
    fn population_has_the_messiness_linkage_must_survive() {
        let c = cfg(5000);
        let people: Vec<Person> = (0..5000).map(|i| person(&c, i)).collect();
        assert!(people.iter().all(|p| InsurerNumber::parse(p.insurer.as_str()).is_ok()));
        assert!(people.iter().any(|p| age_on(p.birth, c.period_start) >= 100), "centenarians seeded");
        assert!(people.iter().any(|p| p.maiden.is_some()), "name changes seeded");
        assert!(people.iter().any(|p| p.providers.len() > 1), "overlapping providers");
        let twins = people
            .windows(2)
            .filter(|w| w[0].birth == w[1].birth && w[0].family == w[1].family && w[0].street == w[1].street)
            .count();
        assert!(twins > 0, "twins seeded");
        let provs = providers(&c);
        let ids: std::collections::HashSet<String> = people
            .iter()
            .filter(|p| p.providers.contains(&0))
            .map(|p| provider_identity(&c, p, 0, provs[0].style).patient_id)
            .collect();
        assert_eq!(
            ids.len(),
            people.iter().filter(|p| p.providers.contains(&0)).count(),
            "patient ids unique per provider"
        );
        let legacy = people.iter().find(|p| p.providers.contains(&1)).unwrap();
        let id = provider_identity(&c, legacy, 1, provs[1].style);
        assert!(
            id.name_kana.chars().all(|ch| !('\u{30A1}'..='\u{30F6}').contains(&ch)),
            "legacy kana is half-width: {}",
            id.name_kana
        );
        assert!(id.birth_date.contains('年'), "legacy birth date is 和暦: {}", id.birth_date);
    }

    #[test]
    fn halfwidth_conversion_splits_voiced_marks() {
        assert_eq!(to_halfwidth_katakana("ガッコウ　パン"), "ｶﾞｯｺｳ ﾊﾟﾝ");
        assert_eq!(to_hiragana("ヤマダ"), "やまだ");
    }
}
