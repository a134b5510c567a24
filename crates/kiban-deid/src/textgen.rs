//! Evaluation set for the free-text de-identifier (S5): synthetic Japanese clinical notes
//! (discharge summaries, progress notes, referral letters) with gold annotations (byte spans and
//! MedNLP-style tags), and an evaluator printing precision, recall and F1 per tag with throughput.
//!
//! Every note is synthetic: names from kiban-model's name lists (incl. rare readings), real 市区町村
//! names with made-up streets and numbers, made-up phone, id, card (Luhn-valid) and My Number
//! (check-digit-valid) values. Distractors are seeded on purpose: surnames that are common words
//! (林の中を散歩, 原因, 森林浴), lab values and doses that look like dates or ids.

use std::time::Instant;

use rand::{Rng, RngExt, SeedableRng};

use crate::text::{DocContext, Span, Tag, TextConfig, deidentify, detect, is_my_number, luhn};

pub(crate) type Rng8 = rand_chacha::ChaCha8Rng;

const NAMES_TSV: &str = include_str!("../../kiban-model/data/names.tsv");
const MUNICIPALITIES_TSV: &str = include_str!("../../kiban-model/data/municipalities.tsv");
const TOWNS_TSV: &str = include_str!("../../kiban-model/data/towns.tsv");

/// One synthetic note with its gold spans.
#[derive(Debug, Clone)]
pub struct Note {
    /// The note text.
    pub text: String,
    /// Gold spans (byte offsets), sorted.
    pub gold: Vec<Span>,
}

pub(crate) struct B {
    pub(crate) text: String,
    pub(crate) gold: Vec<Span>,
}

impl B {
    pub(crate) fn s(&mut self, x: &str) -> &mut Self {
        self.text.push_str(x);
        self
    }
    pub(crate) fn t(&mut self, x: &str, tag: Tag) -> &mut Self {
        let start = self.text.len();
        self.text.push_str(x);
        self.gold.push(Span { start, end: self.text.len(), tag });
        self
    }
}

pub(crate) struct Pools {
    pub(crate) family: Vec<(String, String)>,
    pub(crate) given: Vec<(String, String)>,
    pub(crate) munis: Vec<(String, String)>,
    pub(crate) towns: Vec<String>,
}

pub(crate) fn pools() -> Pools {
    let mut p = Pools { family: vec![], given: vec![], munis: vec![], towns: vec![] };
    for line in NAMES_TSV.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 3 {
            continue;
        }
        let e = (f[1].to_owned(), f[2].to_owned());
        if f[0] == "L" { p.family.push(e) } else { p.given.push(e) }
    }
    for line in MUNICIPALITIES_TSV.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() >= 5 {
            p.munis.push((f[1].to_owned(), f[3].to_owned()));
        }
    }
    for line in TOWNS_TSV.lines().skip(1) {
        if let Some(t) = line.split('\t').next()
            && !t.is_empty()
        {
            p.towns.push(t.to_owned());
        }
    }
    p
}

fn pick<'a, T>(r: &mut Rng8, v: &'a [T]) -> &'a T {
    &v[r.random_range(0..v.len())]
}

pub(crate) fn half_kana(s: &str) -> String {
    kiban_model::synth::to_halfwidth_katakana(s)
}

pub(crate) fn fullwidth(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() { char::from_u32(c as u32 + 0xFEE0).unwrap_or(c) } else { c }).collect()
}

pub(crate) fn luhn_number(r: &mut Rng8) -> String {
    loop {
        let mut d: Vec<u8> = vec![4];
        for _ in 0..15 {
            d.push(r.random_range(0..10));
        }
        if luhn(&d) {
            let s: String = d.iter().map(|x| (b'0' + x) as char).collect();
            return match r.random_range(0..3) {
                0 => format!("{}-{}-{}-{}", &s[0..4], &s[4..8], &s[8..12], &s[12..16]),
                1 => format!("{} {} {} {}", &s[0..4], &s[4..8], &s[8..12], &s[12..16]),
                _ => s,
            };
        }
    }
}

pub(crate) fn my_number(r: &mut Rng8) -> String {
    loop {
        let d: Vec<u8> = (0..12).map(|_| r.random_range(0..10)).collect();
        if is_my_number(&d) {
            let s: String = d.iter().map(|x| (b'0' + x) as char).collect();
            return if r.random_bool(0.5) { format!("{} {} {}", &s[0..4], &s[4..8], &s[8..12]) } else { s };
        }
    }
}

const HONOR: [&str; 8] = ["さん", "様", "氏", "さん", "様", "さん", "君", "ちゃん"];
const ERAS: [(&str, char, i32); 3] = [("令和", 'R', 2018), ("平成", 'H', 1988), ("昭和", 'S', 1925)];
const DEPTS: [&str; 8] =
    ["内科", "循環器内科", "消化器内科", "整形外科", "脳神経外科", "呼吸器内科", "腎臓内科", "外科"];
const HOSP_SUF: [&str; 9] =
    ["総合病院", "市民病院", "中央病院", "クリニック", "医院", "診療所", "医療センター", "病院", "記念病院"];
const KANA_HOSP: [&str; 6] = ["さくら", "ひまわり", "あおば", "みどり", "すずらん", "けやき"];
const DX: [&str; 10] = [
    "2型糖尿病",
    "本態性高血圧症",
    "慢性心不全",
    "誤嚥性肺炎",
    "大腿骨頚部骨折",
    "脳梗塞",
    "胃癌",
    "慢性腎臓病",
    "心房細動",
    "COPD",
];
const FILLER: [&str; 16] = [
    "BP 132/78 mmHg、HR 82/分、SpO2 96%（室内気）。",
    "HbA1c 7.2%、LDL 142mg/dL、eGFR 48.3。",
    "WBC 8500/μL、CRP 2.35mg/dL、Plt 21.3万/μL。",
    "アムロジピン錠5mg 1日1回朝食後 28日分を処方。",
    "メトホルミン250mg 1日2回 14日分。",
    "原因は不明であるが、経過観察とした。",
    "自宅近くの林の中を散歩中に転倒した。",
    "趣味は森林浴と庭いじり。",
    "胸部X線で右下肺野に浸潤影を認めた。",
    "リハビリを継続し、ADLは自立。",
    "体温37.8℃、呼吸数18回/分。",
    "食事摂取量は7割程度。",
    "両下肢に軽度の浮腫あり、利尿薬を増量した。",
    "家族の希望もあり、療養型病院への転院を検討中。",
    "近医への紹介状を作成した。",
    "当院外来にて経過をみる方針。",
];

struct Ctx<'a> {
    p: &'a Pools,
    r: Rng8,
    year: i32,
}

impl Ctx<'_> {
    fn family(&mut self) -> (String, String) {
        pick(&mut self.r, &self.p.family).clone()
    }
    fn given(&mut self) -> (String, String) {
        pick(&mut self.r, &self.p.given).clone()
    }
    fn person(&mut self, b: &mut B) {
        let (f, fk) = self.family();
        let (g, gk) = self.given();
        match self.r.random_range(0..10) {
            0 => {
                b.t(&format!("{f}　{g}"), Tag::Person);
            }
            1 => {
                b.t(&format!("{f} {g}"), Tag::Person);
            }
            2 => {
                b.t(&format!("{fk}　{gk}"), Tag::Person);
            }
            3 => {
                b.t(&half_kana(&format!("{fk} {gk}")), Tag::Person);
            }
            4 | 5 => {
                b.t(&f, Tag::Person).s(HONOR[self.r.random_range(0..HONOR.len())]);
            }
            _ => {
                b.t(&format!("{f}{g}"), Tag::Person);
            }
        }
    }
    fn doctor(&mut self, b: &mut B) {
        let (f, _) = self.family();
        match self.r.random_range(0..5) {
            0 => {
                b.s("Dr.").t(&f, Tag::Person);
            }
            1 => {
                b.t(&f, Tag::Person).s("医師");
            }
            2 => {
                b.t(&f, Tag::Person).s("先生");
            }
            3 => {
                let (g, _) = self.given();
                b.t(&format!("{f}{g}"), Tag::Person);
            }
            _ => {
                b.t(&f, Tag::Person).s("Dr");
            }
        }
    }
    fn date(&mut self, b: &mut B) {
        let y = self.year;
        let m = self.r.random_range(1..=12);
        let d = self.r.random_range(1..=28);
        let s = match self.r.random_range(0..8) {
            0 => {
                let (e, _, base) = ERAS[0];
                format!("{e}{}年{m}月{d}日", y - base)
            }
            1 => format!("R{}.{m}.{d}", y - 2018),
            2 => format!("{y}/{m}/{d}"),
            3 => format!("{y}年{m}月{d}日"),
            4 | 5 => format!("{m}月{d}日"),
            6 => format!("{m}/{d}"),
            _ => fullwidth(&format!("{y}/{m:02}/{d:02}")),
        };
        b.t(&s, Tag::Time);
    }
    fn rel(&mut self, b: &mut B) {
        let s = match self.r.random_range(0..8) {
            0 => format!("{}日前", self.r.random_range(2..10)),
            1 => "翌日".to_owned(),
            2 => format!("{}週間前", self.r.random_range(1..5)),
            3 => "昨日".to_owned(),
            4 => format!("術後{}日目", self.r.random_range(1..14)),
            5 => "同日".to_owned(),
            6 => format!("{}か月前", self.r.random_range(1..12)),
            _ => "本日".to_owned(),
        };
        if let Some(rest) = s.strip_prefix("術後") {
            b.s("術後").t(rest, Tag::Time);
        } else {
            b.t(&s, Tag::Time);
        }
    }
    fn birth(&mut self, b: &mut B) {
        let (e, c, base) = ERAS[self.r.random_range(1..3)];
        let y = self.r.random_range(1..=30);
        let (m, d) = (self.r.random_range(1..=12), self.r.random_range(1..=28));
        let s = if self.r.random_bool(0.6) { format!("{e}{y}年{m}月{d}日") } else { format!("{c}{y}.{m}.{d}") };
        let _ = base;
        b.t(&s, Tag::Time);
    }
    fn age(&mut self, b: &mut B) -> u32 {
        let a = if self.r.random_bool(0.1) { self.r.random_range(90..105) } else { self.r.random_range(18..90) };
        b.t(&format!("{a}歳"), Tag::Age);
        a
    }
    fn address(&mut self, b: &mut B) {
        let (pref, muni) = pick(&mut self.r, &self.p.munis).clone();
        let town = pick(&mut self.r, &self.p.towns).clone();
        let (c, n, g) = (self.r.random_range(1..6), self.r.random_range(1..30), self.r.random_range(1..25));
        let s = match self.r.random_range(0..4) {
            0 => format!("{pref}{muni}{town}{c}丁目{n}番{g}号"),
            1 => format!("{pref}{muni}{town}{c}-{n}-{g}"),
            2 => format!("{muni}{town}{c}丁目{n}-{g}"),
            _ => fullwidth(&format!("{pref}{muni}{town}{c}-{n}-{g}")),
        };
        b.t(&s, Tag::Location);
    }
    fn muni(&mut self, b: &mut B) {
        let (pref, muni) = pick(&mut self.r, &self.p.munis).clone();
        if self.r.random_bool(0.5) {
            b.t(&muni, Tag::Location);
        } else {
            b.t(&format!("{pref}{muni}"), Tag::Location);
        }
    }
    fn postal(&mut self, b: &mut B) {
        let s = format!("{:03}-{:04}", self.r.random_range(1..1000), self.r.random_range(0..10_000));
        if self.r.random_bool(0.5) {
            b.s("〒").t(&s, Tag::Location);
        } else {
            b.t(&format!("〒{s}"), Tag::Location);
        }
    }
    fn phone(&mut self, b: &mut B) {
        let s = if self.r.random_bool(0.5) {
            format!(
                "0{}0-{:04}-{:04}",
                [7, 8, 9][self.r.random_range(0..3)],
                self.r.random_range(0..10_000),
                self.r.random_range(0..10_000)
            )
        } else {
            format!(
                "0{}-{:04}-{:04}",
                self.r.random_range(3..100),
                self.r.random_range(1000..10_000),
                self.r.random_range(0..10_000)
            )
        };
        let s = if self.r.random_bool(0.15) { fullwidth(&s) } else { s };
        b.t(&s, Tag::Phone);
    }
    fn hospital(&mut self, b: &mut B) {
        let (_, muni) = pick(&mut self.r, &self.p.munis).clone();
        let stem: String = muni.trim_end_matches(['市', '区', '町', '村']).to_owned();
        let name = match self.r.random_range(0..5) {
            0 => format!("{}{}", KANA_HOSP[self.r.random_range(0..KANA_HOSP.len())], "クリニック"),
            1 => {
                let (f, _) = self.family();
                format!("{f}{}", ["医院", "クリニック", "内科クリニック", "整形外科医院"][self.r.random_range(0..4)])
            }
            _ => format!("{stem}{}", HOSP_SUF[self.r.random_range(0..HOSP_SUF.len())]),
        };
        let name = if self.r.random_bool(0.3) {
            format!("{name}{}", DEPTS[self.r.random_range(0..DEPTS.len())])
        } else {
            name
        };
        b.t(&name, Tag::Hospital);
    }
    fn sex(&mut self, b: &mut B) {
        b.t(if self.r.random_bool(0.5) { "男性" } else { "女性" }, Tag::Sex);
    }
    fn id(&mut self, b: &mut B) {
        match self.r.random_range(0..4) {
            0 => {
                b.s("患者ID：").t(&format!("{:08}", self.r.random_range(0..100_000_000u32)), Tag::Id);
            }
            1 => {
                b.s("カルテ番号 ").t(
                    &format!(
                        "{}-{:06}",
                        ["A", "K", "M"][self.r.random_range(0..3)],
                        self.r.random_range(0..1_000_000u32)
                    ),
                    Tag::Id,
                );
            }
            2 => {
                let ins = kiban_model::insurer::InsurerNumber::from_body(&format!(
                    "{:02}{:02}{:03}",
                    [1, 6, 31][self.r.random_range(0..3)],
                    self.r.random_range(1..48),
                    self.r.random_range(1..999)
                ))
                .map(|x| x.as_str().to_owned())
                .unwrap_or_else(|_| "06130012".to_owned());
                b.s("保険者番号 ").t(&ins, Tag::Id);
            }
            _ => {
                let m = my_number(&mut self.r);
                b.s("個人番号（マイナンバー）").t(&m, Tag::Id);
            }
        }
    }
    fn finance(&mut self, b: &mut B) {
        if self.r.random_bool(0.5) {
            let c = luhn_number(&mut self.r);
            b.s("クレジットカード番号 ").t(&c, Tag::Financial).s(" で支払い。");
        } else {
            let (_, muni) = pick(&mut self.r, &self.p.munis).clone();
            let stem: String = muni.trim_end_matches(['市', '区', '町', '村']).to_owned();
            b.s("引落口座：").t(
                &format!("{stem}銀行{}支店", ["本店営業部", "駅前", "中央"][self.r.random_range(0..3)])
                    .replace("本店営業部支店", "本店営業部"),
                Tag::Financial,
            );
            b.s(" 普通 ").t(&format!("{:07}", self.r.random_range(0..10_000_000u32)), Tag::Financial).s("。");
        }
    }
    fn contact(&mut self, b: &mut B) {
        let (_, fk) = self.family();
        let user: String = fk.chars().take(3).map(|c| (b'a' + (c as u32 % 26) as u8) as char).collect();
        if self.r.random_bool(0.6) {
            b.s("メール：").t(&format!("{user}{}@example.jp", self.r.random_range(1..99)), Tag::Contact);
        } else {
            b.s("詳細は ").t(&format!("https://www.{user}-clinic.example.jp/info"), Tag::Contact).s(" を参照。");
        }
    }
    fn filler(&mut self, b: &mut B) {
        b.s(FILLER[self.r.random_range(0..FILLER.len())]);
    }
}

fn discharge(c: &mut Ctx, b: &mut B) {
    b.s("【退院時サマリー】\n患者氏名：");
    c.person(b);
    b.s("　");
    c.id(b);
    b.s("\n生年月日：");
    c.birth(b);
    b.s("（");
    let _ = c.age(b);
    b.s("）　性別：");
    c.sex(b);
    b.s("\n住所：〒");
    let s = format!("{:03}-{:04}", c.r.random_range(1..1000), c.r.random_range(0..10_000));
    b.t(&s, Tag::Location).s(" ");
    c.address(b);
    b.s("\n電話：");
    c.phone(b);
    b.s("\n入院日：");
    c.date(b);
    b.s("　退院日：");
    c.date(b);
    b.s("\n主治医：");
    c.doctor(b);
    b.s("\n【診断名】").s(DX[c.r.random_range(0..DX.len())]).s("\n【現病歴】");
    let _ = c.age(b);
    c.sex(b);
    b.s("。");
    c.rel(b);
    b.s("より労作時呼吸困難が出現し、");
    c.hospital(b);
    b.s("を受診。");
    c.date(b);
    b.s("に当院紹介となり入院した。");
    c.filler(b);
    b.s("\n【経過】");
    c.rel(b);
    b.s("に症状改善。");
    c.filler(b);
    c.filler(b);
    b.s("妻の");
    c.person(b);
    b.s("（キーパーソン、連絡先 ");
    c.phone(b);
    b.s("）と面談し、");
    c.muni(b);
    b.s("の自宅へ退院とした。");
    if c.r.random_bool(0.4) {
        c.finance(b);
    }
    if c.r.random_bool(0.4) {
        c.contact(b);
    }
    b.s("\n紹介元：");
    c.hospital(b);
    b.s(" ");
    let (f, _) = c.family();
    b.t(&f, Tag::Person).s("先生御侍史\n");
}

fn progress(c: &mut Ctx, b: &mut B) {
    b.s("【経過記録】");
    c.date(b);
    b.s(" ");
    let h = c.r.random_range(6..22);
    b.t(&format!("{h}:{:02}", c.r.random_range(0..60)), Tag::Time);
    b.s("\nS）");
    c.person(b);
    b.s("より「夜間眠れない」との訴え。");
    c.filler(b);
    b.s("\nO）");
    c.filler(b);
    c.filler(b);
    b.s("\nA/P）");
    c.rel(b);
    b.s("と比較し改善傾向。");
    if c.r.random_bool(0.5) {
        b.s("長男（");
        c.muni(b);
        b.s("在住）に電話連絡（");
        c.phone(b);
        b.s("）。");
    }
    if c.r.random_bool(0.3) {
        c.id(b);
        b.s("。");
    }
    if c.r.random_bool(0.2) {
        b.s("転居先：");
        c.postal(b);
        b.s(" ");
        c.address(b);
        b.s("。");
    }
    c.filler(b);
    b.s("\n記載者：");
    c.doctor(b);
    b.s("\n");
}

fn referral(c: &mut Ctx, b: &mut B) {
    c.hospital(b);
    b.s("\n");
    let (f, _) = c.family();
    let (g, _) = c.given();
    if c.r.random_bool(0.5) {
        b.t(&format!("{f}　{g}"), Tag::Person);
    } else {
        b.t(&f, Tag::Person);
    }
    b.s(" 先生\n平素より大変お世話になっております。");
    c.person(b);
    b.s("（");
    let _ = c.age(b);
    b.s("、");
    c.sex(b);
    b.s("、");
    c.address(b);
    b.s("在住）について御紹介申し上げます。");
    c.birth(b);
    b.s("生まれ。");
    c.date(b);
    b.s("より当院にて加療中です。");
    c.filler(b);
    b.t("昨年", Tag::Time).s("は");
    c.muni(b);
    b.s("の");
    c.hospital(b);
    b.s("に入院歴あり。");
    if c.r.random_bool(0.5) {
        c.finance(b);
    }
    c.filler(b);
    b.s("ご不明な点は");
    c.phone(b);
    b.s("までご連絡ください。\n");
}

/// Generates `n` notes deterministically from `seed`.
pub fn generate(seed: u64, n: usize) -> Vec<Note> {
    let p = pools();
    let mut c = Ctx { p: &p, r: Rng8::seed_from_u64(seed), year: 2024 };
    (0..n)
        .map(|i| {
            c.year = 2019 + (i % 7) as i32;
            let mut b = B { text: String::new(), gold: Vec::new() };
            match c.r.random_range(0..3) {
                0 => discharge(&mut c, &mut b),
                1 => progress(&mut c, &mut b),
                _ => referral(&mut c, &mut b),
            }
            let _ = c.r.next_u32();
            b.gold.sort_by_key(|s| s.start);
            Note { text: b.text, gold: b.gold }
        })
        .collect()
}

/// Counts of one tag.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Gold spans.
    pub gold: u64,
    /// Predicted spans.
    pub pred: u64,
    /// Gold spans overlapped by a prediction of the same tag (lenient recall).
    pub gold_hit: u64,
    /// Predictions overlapping a gold span of the same tag (lenient precision).
    pub pred_hit: u64,
    /// Exact matches (start, end and tag).
    pub exact: u64,
}

impl Counts {
    /// Lenient precision.
    pub fn precision(&self) -> f64 {
        if self.pred == 0 { 1.0 } else { self.pred_hit as f64 / self.pred as f64 }
    }
    /// Lenient recall.
    pub fn recall(&self) -> f64 {
        if self.gold == 0 { 1.0 } else { self.gold_hit as f64 / self.gold as f64 }
    }
    /// Lenient F1.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
    /// Strict (exact-span) F1.
    pub fn strict_f1(&self) -> f64 {
        let p = if self.pred == 0 { 1.0 } else { self.exact as f64 / self.pred as f64 };
        let r = if self.gold == 0 { 1.0 } else { self.exact as f64 / self.gold as f64 };
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
}

/// The evaluation result.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Counts per tag in [`Tag::ALL`] order.
    pub per_tag: Vec<(Tag, Counts)>,
    /// Bytes of text processed.
    pub bytes: u64,
    /// Seconds spent detecting and replacing.
    pub seconds: f64,
    /// Name of the system evaluated.
    pub system: String,
}

impl Evaluation {
    /// Throughput in MB/s (one thread).
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
    /// Micro-averaged counts over all tags.
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for (_, c) in &self.per_tag {
            t.gold += c.gold;
            t.pred += c.pred;
            t.gold_hit += c.gold_hit;
            t.pred_hit += c.pred_hit;
            t.exact += c.exact;
        }
        t
    }
    /// A Markdown table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "system: {}\n| tag | gold | pred | precision | recall | F1 | strict F1 |\n|---|---:|---:|---:|---:|---:|---:|\n",
            self.system
        );
        let mut rows = self.per_tag.clone();
        rows.push((Tag::Person, self.total()));
        let n = rows.len();
        for (i, (t, c)) in rows.iter().enumerate() {
            let name = if i + 1 == n { "all (micro)" } else { t.name() };
            s.push_str(&format!(
                "| {name} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                c.gold,
                c.pred,
                c.precision(),
                c.recall(),
                c.f1(),
                c.strict_f1()
            ));
        }
        s.push_str(&format!(
            "throughput: {:.2} MB/s per core ({} bytes in {:.3} s of one thread's CPU time)\n",
            self.mb_per_s(),
            self.bytes,
            self.seconds
        ));
        s
    }
}

/// Scores predicted spans against gold spans.
pub fn score(notes: &[Note], preds: &[Vec<Span>], system: &str, seconds: f64) -> Evaluation {
    let mut per: Vec<(Tag, Counts)> = Tag::ALL.iter().map(|&t| (t, Counts::default())).collect();
    let idx = |t: Tag| Tag::ALL.iter().position(|&x| x == t).expect("tag in ALL");
    let ov = |a: &Span, b: &Span| a.start < b.end && b.start < a.end && a.tag == b.tag;
    for (n, p) in notes.iter().zip(preds) {
        for g in &n.gold {
            let c = &mut per[idx(g.tag)].1;
            c.gold += 1;
            if p.iter().any(|x| ov(x, g)) {
                c.gold_hit += 1;
            }
            if p.iter().any(|x| x == g) {
                c.exact += 1;
            }
        }
        for x in p {
            let c = &mut per[idx(x.tag)].1;
            c.pred += 1;
            if n.gold.iter().any(|g| ov(x, g)) {
                c.pred_hit += 1;
            }
        }
    }
    Evaluation {
        per_tag: per,
        bytes: notes.iter().map(|n| n.text.len() as u64).sum(),
        seconds,
        system: system.to_owned(),
    }
}

/// CPU time of the calling thread in seconds (Linux `schedstat`): per-core throughput that other
/// processes on a shared machine do not distort. `None` where the kernel does not offer it.
pub fn thread_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// Runs kiban's detector (and replacement) on `notes` and scores it (time: the thread's CPU time).
pub fn evaluate(notes: &[Note]) -> Evaluation {
    let started = Instant::now();
    let cpu0 = thread_cpu_seconds();
    let cfg = TextConfig::default();
    let preds: Vec<Vec<Span>> = notes
        .iter()
        .map(|n| {
            let d = deidentify(&n.text, &cfg, &DocContext::default());
            std::hint::black_box(&d.text);
            d.spans
        })
        .collect();
    let secs = match (cpu0, thread_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => started.elapsed().as_secs_f64(),
    };
    score(notes, &preds, "kiban-deid text", secs)
}

/// Side-by-side table of kiban and a peer on the same notes: F1 per tag, throughput and their ratios.
pub fn compare(kiban: &Evaluation, peer: &Evaluation) -> String {
    let mut s = format!(
        "| tag | kiban P | kiban R | kiban F1 | {p} P | {p} R | {p} F1 | F1 ratio kiban/{p} |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        p = "presidio"
    );
    let mut rows: Vec<(String, Counts, Counts)> =
        kiban.per_tag.iter().zip(&peer.per_tag).map(|((t, a), (_, b))| (t.name().to_owned(), *a, *b)).collect();
    rows.push(("all (micro)".to_owned(), kiban.total(), peer.total()));
    for (name, a, b) in rows {
        let ratio = if b.f1() > 0.0 { format!("{:.1}×", a.f1() / b.f1()) } else { "∞ (peer finds none)".to_owned() };
        s.push_str(&format!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {ratio} |\n",
            a.precision(),
            a.recall(),
            a.f1(),
            b.precision(),
            b.recall(),
            b.f1()
        ));
    }
    s.push_str(&format!(
        "throughput per core: kiban {:.2} MB/s, presidio {:.2} MB/s, ratio {:.1}× (target ≥ 2 MB/s per core)\n",
        kiban.mb_per_s(),
        peer.mb_per_s(),
        kiban.mb_per_s() / peer.mb_per_s().max(1e-9)
    ));
    s
}

/// The peer's Python: `$KIBAN_PRESIDIO_PYTHON`, else the venv `scripts/presidio-venv.sh` makes under the target dir.
pub fn presidio_python() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("KIBAN_PRESIDIO_PYTHON") {
        return Some(p.into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let py = target.join("peers-venv-text/bin/python");
    py.exists().then_some(py)
}

/// The whole text benchmark: kiban on the tuning set and on the held-out set, Presidio on both when
/// its venv is found (or `python` is given), as Markdown.
pub fn bench_report(seed: u64, n: usize, python: Option<&std::path::Path>) -> String {
    let mut out = String::new();
    let py = python.map(std::path::Path::to_path_buf).or_else(presidio_python);
    for (name, notes) in [
        ("tuning set (textgen)", generate(seed, n)),
        ("held-out set (textgen_heldout, other styles and names)", crate::textgen_heldout::generate(seed, n)),
    ] {
        let bytes: usize = notes.iter().map(|x| x.text.len()).sum();
        out.push_str(&format!("\n## {name}: {n} notes, {:.2} MB\n\n", bytes as f64 / 1e6));
        let k = evaluate(&notes);
        out.push_str(&k.table());
        match py.as_deref().map(|p| run_presidio(p, &notes)) {
            Some(Ok(p)) => {
                out.push('\n');
                out.push_str(&p.table());
                out.push('\n');
                out.push_str(&compare(&k, &p));
            }
            Some(Err(e)) => out.push_str(&format!("presidio peer failed: {e}\n")),
            None => out.push_str("presidio peer not run: no venv (scripts/presidio-venv.sh makes one)\n"),
        }
    }
    out
}

/// Errors of the detector on `notes` (for tuning): missed gold spans and spurious predictions.
pub fn errors(notes: &[Note], limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    for n in notes {
        let p = detect(&n.text);
        for g in &n.gold {
            if !p.iter().any(|x| x.start < g.end && g.start < x.end && x.tag == g.tag) {
                let ctx_s = n.text[..g.start].char_indices().rev().nth(8).map_or(0, |(i, _)| i);
                let ctx_e = n.text[g.end..].char_indices().nth(8).map_or(n.text.len(), |(i, _)| g.end + i);
                out.push(format!("MISS {:?} {:?} in …{}…", g.tag, &n.text[g.start..g.end], &n.text[ctx_s..ctx_e]));
            }
        }
        for x in &p {
            if !n.gold.iter().any(|g| x.start < g.end && g.start < x.end && x.tag == g.tag) {
                let ctx_s = n.text[..x.start].char_indices().rev().nth(8).map_or(0, |(i, _)| i);
                let ctx_e = n.text[x.end..].char_indices().nth(8).map_or(n.text.len(), |(i, _)| x.end + i);
                out.push(format!("FP   {:?} {:?} in …{}…", x.tag, &n.text[x.start..x.end], &n.text[ctx_s..ctx_e]));
            }
        }
        if out.len() >= limit {
            break;
        }
    }
    out
}

/// Runs presidio-analyzer's pattern recognizers (the peer) with `python` on the same notes and scores them.
pub fn run_presidio(python: &std::path::Path, notes: &[Note]) -> std::io::Result<Evaluation> {
    use std::io::Write;
    let script = std::env::temp_dir().join(format!("kiban-presidio-peer-{}.py", std::process::id()));
    std::fs::write(&script, include_str!("../benches/presidio_peer.py"))?;
    let started = Instant::now();
    let mut child = std::process::Command::new(python)
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut input = String::new();
    for n in notes {
        input.push_str(&serde_json::json!({"text": n.text}).to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    let _ = std::fs::remove_file(&script);
    if !out.status.success() {
        return Err(std::io::Error::other(format!("peer exited with {}", out.status)));
    }
    let wall = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    // The peer's last line is its own analysis time (interpreter start and imports excluded).
    let secs = lines
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["seconds"].as_f64())
        .unwrap_or(wall);
    let mut preds = Vec::new();
    for (n, line) in notes.iter().zip(lines.iter().copied()) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(std::io::Error::other)?;
        // Character offsets → byte offsets.
        let starts: Vec<usize> = n.text.char_indices().map(|(i, _)| i).chain([n.text.len()]).collect();
        let mut spans = Vec::new();
        for s in v["spans"].as_array().into_iter().flatten() {
            let (a, b) = (s[0].as_u64().unwrap_or(0) as usize, s[1].as_u64().unwrap_or(0) as usize);
            let tag = Tag::ALL.iter().copied().find(|t| Some(t.name()) == s[2].as_str()).unwrap_or(Tag::Id);
            if a < b && b < starts.len() {
                spans.push(Span { start: starts[a], end: starts[b], tag });
            }
        }
        preds.push(spans);
    }
    if preds.len() != notes.len() {
        return Err(std::io::Error::other("peer returned fewer results than notes"));
    }
    Ok(score(notes, &preds, "presidio-analyzer pattern recognizers (peer)", secs))
}
