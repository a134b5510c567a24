//! Japanese free-text de-identification (S5): finds the descriptions that identify a person in
//! clinical notes — person names (with and without honorifics), addresses down to street numbers,
//! postal codes, phone and fax numbers, e-mail and URLs, dates (Western, 和暦, `R5.4.1`, month-day,
//! relative), ages, patient/insurer/card ids, My Number, bank and card details, hospitals — and
//! replaces them by a tag, a surrogate consistent within the document, or (dates) a shifted date
//! that keeps intervals.
//!
//! The detector is dictionary-light and needs nothing installed: family and given names come from
//! kiban-model's embedded `names.tsv`, prefectures and 市区町村 from `municipalities.tsv`; the rest
//! is character-class segmentation (kanji/katakana runs), honorific and label context, and number
//! patterns with check digits (Luhn, My Number). Text is first normalized (full-width ASCII and
//! half-width katakana folded) with an offset map, so spans always refer to the original text.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, MatchKind};
use chrono::{Datelike, Duration, NaiveDate};
use regex::Regex;
use serde::{Deserialize, Serialize};

const NAMES_TSV: &str = include_str!("../../kiban-model/data/names.tsv");
const MUNICIPALITIES_TSV: &str = include_str!("../../kiban-model/data/municipalities.tsv");
/// Surnames and given names of IPADIC (`scripts/ipadic-names.sh`; notice in `data/IPADIC-NOTICE`).
const IPADIC_NAMES_TSV: &str = include_str!("../data/ipadic_names.tsv");

/// What a span is (NTCIR MedNLP de-identification tags plus ids, phones, contacts, finance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tag {
    /// A person's name (patient, family, doctor, nurse).
    Person,
    /// An address, place name or postal code.
    Location,
    /// A hospital, clinic or other care facility (with its department).
    Hospital,
    /// A date, time or relative time expression.
    Time,
    /// An age.
    Age,
    /// A sex.
    Sex,
    /// A phone or fax number.
    Phone,
    /// An e-mail address or URL.
    Contact,
    /// A patient id, insurer or card number, My Number.
    Id,
    /// A credit card number, bank and account.
    Financial,
}

impl Tag {
    /// All tags, in table order.
    pub const ALL: [Tag; 10] = [
        Tag::Person,
        Tag::Location,
        Tag::Hospital,
        Tag::Time,
        Tag::Age,
        Tag::Sex,
        Tag::Phone,
        Tag::Contact,
        Tag::Id,
        Tag::Financial,
    ];
    /// Lower-case name (as in MedNLP).
    pub fn name(self) -> &'static str {
        match self {
            Tag::Person => "person",
            Tag::Location => "location",
            Tag::Hospital => "hospital",
            Tag::Time => "time",
            Tag::Age => "age",
            Tag::Sex => "sex",
            Tag::Phone => "phone",
            Tag::Contact => "contact",
            Tag::Id => "id",
            Tag::Financial => "financial",
        }
    }
    /// The replacement tag written into the text.
    pub fn label(self) -> &'static str {
        match self {
            Tag::Person => "［氏名］",
            Tag::Location => "［住所］",
            Tag::Hospital => "［施設］",
            Tag::Time => "［日付］",
            Tag::Age => "［年齢］",
            Tag::Sex => "［性別］",
            Tag::Phone => "［電話］",
            Tag::Contact => "［連絡先］",
            Tag::Id => "［ID］",
            Tag::Financial => "［金融］",
        }
    }
}

/// A detected (or gold) span: byte offsets into the original text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Start byte.
    pub start: usize,
    /// End byte (exclusive).
    pub end: usize,
    /// What it is.
    pub tag: Tag,
}

/// How one tag is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replace {
    /// Replaced by the tag label (`［氏名］`).
    Tag,
    /// Replaced by a surrogate of the same kind, the same for the same original within a document.
    Surrogate,
    /// Dates moved by the document's offset (intervals kept); other tags fall back to the label.
    Shift,
    /// Ages of 90 and over become `90歳以上`; younger ages are kept. Other tags: kept.
    TopCode,
    /// Kept as written.
    Keep,
}

/// Replacement per tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextConfig {
    /// Replacement per tag; tags not listed are replaced by their label.
    pub replace: HashMap<Tag, Replace>,
}

impl Default for TextConfig {
    /// Everything tagged (the S5 default for a release).
    fn default() -> Self {
        TextConfig { replace: HashMap::new() }
    }
}

impl TextConfig {
    /// The pseudonymization default: names and contacts tagged, dates shifted, ages of 90+ top-coded,
    /// sex kept (a clinical value).
    pub fn pseudonymization() -> Self {
        let mut replace = HashMap::new();
        replace.insert(Tag::Time, Replace::Shift);
        replace.insert(Tag::Age, Replace::TopCode);
        replace.insert(Tag::Sex, Replace::Keep);
        TextConfig { replace }
    }
    fn mode(&self, t: Tag) -> Replace {
        self.replace.get(&t).copied().unwrap_or(Replace::Tag)
    }
}

/// Per-document context: the date offset (days) and the surrogate seed. Neither is stored anywhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct DocContext {
    /// Days every date of this document (person) is moved by.
    pub date_offset_days: i64,
    /// Seed of surrogate choice within the document.
    pub surrogate_seed: u64,
}

// ---------------------------------------------------------------- normalization

/// The text with full-width ASCII and half-width katakana folded, and a map back to original bytes.
struct Normalized {
    text: String,
    /// `map[i]` = original byte offset of normalized byte `i`; `map[len]` = original length.
    map: Vec<usize>,
}

const HALF_KANA: &str = "ｦｧｨｩｪｫｬｭｮｯｰｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓﾔﾕﾖﾗﾘﾙﾚﾛﾜﾝ";
const FULL_KANA: &str =
    "ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン";

fn half_kana(c: char) -> Option<char> {
    HALF_KANA.chars().position(|h| h == c).and_then(|p| FULL_KANA.chars().nth(p))
}

fn normalize(s: &str) -> Normalized {
    let mut text = String::with_capacity(s.len());
    let mut map = Vec::with_capacity(s.len() + 1);
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let mut out = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{FF61}' => '。',
            '\u{FF64}' => '、',
            '\u{FF65}' => '・',
            'ｰ' => 'ー',
            '−' | '‐' => '-',
            '\u{FF66}'..='\u{FF9D}' => half_kana(c).unwrap_or(c),
            _ => c,
        };
        if c != out && ('\u{FF66}'..='\u{FF9D}').contains(&c) {
            // Voiced and semi-voiced marks fold into the preceding kana.
            if let Some(&(_, m)) = it.peek() {
                if m == 'ﾞ' {
                    if let Some(v) = char::from_u32(out as u32 + 1)
                        .filter(|_| "カキクケコサシスセソタチツテトハヒフヘホ".contains(out))
                    {
                        out = v;
                        it.next();
                    } else if out == 'ウ' {
                        out = 'ヴ';
                        it.next();
                    }
                } else if m == 'ﾟ' && "ハヒフヘホ".contains(out) {
                    out = char::from_u32(out as u32 + 2).unwrap_or(out);
                    it.next();
                }
            }
        }
        for _ in 0..out.len_utf8() {
            map.push(i);
        }
        text.push(out);
    }
    map.push(s.len());
    Normalized { text, map }
}

// ---------------------------------------------------------------- dictionaries

struct Dicts {
    family: HashSet<String>,
    given: HashSet<String>,
    family_kana: HashSet<String>,
    given_kana: HashSet<String>,
    surname_chars: HashSet<char>,
    places: AhoCorasick,
    place_names: Vec<String>,
    re: Res,
}

struct Res {
    email: Regex,
    url: Regex,
    phone: Regex,
    digits: Regex,
    postal: Regex,
    labeled_id: Regex,
    bank: Regex,
    bank_name: Regex,
    date: Regex,
    time_word: Regex,
    age: Regex,
    sex: Regex,
    hospital: Regex,
    addr_tail: Regex,
    muni_tail: Regex,
    station: Regex,
    dr: Regex,
    card_pair: Regex,
    street: Regex,
    romaji: Regex,
    romaji_labeled: Regex,
    care_home: Regex,
    family_clinic: Regex,
}

const EXTRA_FAMILY: &str = "佐藤 鈴木 高橋 田中 伊藤 渡辺 山本 中村 小林 加藤 吉田 山田 佐々木 山口 松本 井上 木村 林 斎藤 清水 \
山崎 森 池田 橋本 阿部 石川 山下 中島 石井 小川 前田 岡田 長谷川 藤田 後藤 近藤 村上 遠藤 青木 坂本 斉藤 福田 太田 西村 藤井 \
金子 岡本 藤原 中野 三浦 原田 中川 松田 竹内 小野 田村 中山 和田 石田 森田 上田 原 内田 柴田 酒井 宮崎 横山 高木 安藤 宮本 \
大野 小島 工藤 谷口 今井 高田 増田 丸山 杉山 村田 大塚 新井 小山 平野 藤本 河野 上野 野口 武田 松井 千葉 岩崎 菅原 木下 久保 \
佐野 野村 松尾 市川 菊地 杉本 古川 大西 島田 水野 桜井 高野 渡部 吉川 山内 西田 飯田 菊池 西川 小松 北村 安田 五十嵐 川口 \
平田 関 中田 久保田 服部 東 岩田 土屋 川崎 福島 本田 辻 樋口 秋山 田口 永井 山中 中西 吉村 川上 石原 大橋 松岡 馬場 浜田 森本 \
星野 矢野 浅野 大久保 松下 吉岡 小池 野田 荒木 大谷 内藤 松浦 熊谷 黒田 尾崎 永田 川村 望月 田辺 松村 荒井 堀 大島 平井 早川 \
菅野 栗原 西山 広瀬 横田 石橋 萩原 岩本 片山 関口 宮田 大石 高山 本間 吉野 須藤 岡崎 小田 伊東 鎌田 上原 篠原 小西 松原 福井 \
古賀 大森 成田 南 奥村 内山 沢田 川島 桑原 三宅 片岡 富田 杉浦 岡 八木 奥田 小沢 松永 北川 関根 河合 平山 牧野 白石 今村 寺田 \
青山 中尾 小倉 渋谷 上村 小野寺 大山 足立 岡村 坂口 天野 多田 佐久間 根本 豊田 田島 飯塚 角田 村山 武藤 西 白井 宇野 酒井 \
北野 泉 宮内 中谷 金井 比嘉 金城 宮城 大城 新垣 玉城 上原 島袋 照屋 仲宗根 東海林 勅使河原 一二三 小鳥遊 四月一日 月見里 \
九十九 五月女 御手洗 鬼塚 猪股 蛭田 薬師寺 百目鬼";

/// IPADIC surnames that are far more often clinical or everyday words in notes.
const NOT_FAMILY: [&str; 24] = [
    "日", "月", "年", "時", "分", "後", "前", "内", "外", "上", "下", "中", "左", "右", "本", "当", "同", "各", "全",
    "主", "新", "旧", "心", "血",
];
/// IPADIC given names that are far more often clinical or everyday words in notes.
const NOT_GIVEN: [&str; 30] = [
    "部", "痛", "熱", "薬", "食", "便", "尿", "血", "液", "量", "時", "日", "月", "年", "回", "後", "前", "中", "内",
    "外", "様", "殿", "氏", "君", "院", "科", "室", "棟", "者", "人",
];

const HONORIFICS: [&str; 23] = [
    "Ns",
    "NS",
    "さん",
    "様",
    "さま",
    "氏",
    "先生",
    "君",
    "くん",
    "ちゃん",
    "医師",
    "殿",
    "Dr",
    "院長",
    "部長",
    "医長",
    "看護師",
    "薬剤師",
    "夫妻",
    "婦長",
    "師長",
    "技師",
    "副院長",
];

const NOT_NAMES: [&str; 46] = [
    "患者",
    "家族",
    "本人",
    "皆",
    "母",
    "父",
    "妻",
    "夫",
    "娘",
    "息子",
    "兄",
    "弟",
    "姉",
    "妹",
    "祖母",
    "祖父",
    "主治医",
    "担当医",
    "当院",
    "医",
    "先",
    "同",
    "奥",
    "お子",
    "御",
    "相手",
    "友人",
    "近所",
    "看護",
    "担当",
    "主治",
    "各",
    "他",
    "前医",
    "紹介医",
    "在宅医",
    "薬局",
    "受付",
    "医療",
    "事務",
    "皆様",
    "利用者",
    "御本人",
    "嫁",
    "孫",
    "長男",
];

const NOT_NAMES_KANA: [&str; 12] = [
    "ナース",
    "ヘルパー",
    "ドクター",
    "ケアマネ",
    "ケアマネージャー",
    "スタッフ",
    "パパ",
    "ママ",
    "ボランティア",
    "セラピスト",
    "リハビリ",
    "ケースワーカー",
];

/// Relations written before a family member's name (長女（恵子さん）): a name after them must still
/// be backed by the name dictionaries.
const REL_LABELS: [&str; 20] = [
    "長女",
    "長男",
    "次女",
    "次男",
    "三男",
    "三女",
    "妻",
    "夫",
    "姪",
    "甥",
    "義娘",
    "義息子",
    "娘",
    "息子",
    "孫",
    "嫁",
    "兄",
    "姉",
    "弟",
    "妹",
];

const NAME_LABELS: [&str; 40] = [
    "文責",
    "通訳",
    "通訳者",
    "付き添い",
    "付添者",
    "同席者",
    "介護者",
    "保護者",
    "記載",
    "依頼医",
    "診断医",
    "病理医",
    "報告者",
    "報告医",
    "確認者",
    "面会者",
    "同室者",
    "患者",
    "主治医",
    "担当医",
    "記載医",
    "記載者",
    "執刀医",
    "紹介医",
    "指導医",
    "研修医",
    "看護師",
    "担当看護師",
    "薬剤師",
    "氏名",
    "患者名",
    "患者氏名",
    "名前",
    "フリガナ",
    "ふりがな",
    "キーパーソン",
    "紹介者",
    "署名",
    "医師",
    "担当",
];

const COUNTRIES: &str = "アメリカ 米国 中国 韓国 台湾 タイ ベトナム フィリピン インドネシア インド ブラジル ペルー ハワイ グアム \
オーストラリア イギリス 英国 フランス ドイツ イタリア スペイン カナダ メキシコ ロシア シンガポール マレーシア ネパール \
ミャンマー カンボジア モンゴル ケニア エジプト アフリカ ヨーロッパ 東南アジア 沖縄本島";

fn dicts() -> &'static Dicts {
    static D: OnceLock<Dicts> = OnceLock::new();
    D.get_or_init(|| {
        let mut family = HashSet::new();
        let mut given = HashSet::new();
        let mut family_kana = HashSet::new();
        let mut given_kana = HashSet::new();
        for line in NAMES_TSV.lines().skip(1) {
            let mut f = line.split('\t');
            let (kind, kanji, kana) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or(""));
            match kind {
                "L" => {
                    family.insert(kanji.to_owned());
                    family_kana.insert(kana.to_owned());
                }
                "M" | "F" => {
                    given.insert(kanji.to_owned());
                    given_kana.insert(kana.to_owned());
                }
                _ => {}
            }
        }
        for line in IPADIC_NAMES_TSV.lines().skip(1) {
            let mut f = line.split('\t');
            let (kind, kanji, kana) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or(""));
            // Kanji-only entries feed the kanji dictionaries; kana entries only the readings.
            let kanji_ok = kanji.chars().all(is_kanji);
            match kind {
                "L" => {
                    if kanji_ok && !NOT_FAMILY.contains(&kanji) {
                        family.insert(kanji.to_owned());
                    }
                    if kana.chars().count() >= 2 {
                        family_kana.insert(kana.to_owned());
                    }
                }
                "G" => {
                    if kanji_ok && !NOT_GIVEN.contains(&kanji) {
                        given.insert(kanji.to_owned());
                    }
                    if kana.chars().count() >= 2 {
                        given_kana.insert(kana.to_owned());
                    }
                }
                _ => {}
            }
        }
        for f in EXTRA_FAMILY.split_whitespace() {
            family.insert(f.to_owned());
        }
        // Old kanji forms written on cards and in legacy systems (澤, 嶋, 﨑, 邊 …).
        const OLD: [(char, char); 12] = [
            ('辺', '邊'),
            ('辺', '邉'),
            ('高', '髙'),
            ('崎', '﨑'),
            ('沢', '澤'),
            ('浜', '濱'),
            ('斉', '齋'),
            ('斎', '齋'),
            ('広', '廣'),
            ('島', '嶋'),
            ('国', '國'),
            ('竜', '龍'),
        ];
        let variants: Vec<String> = family
            .iter()
            .flat_map(|f| OLD.iter().filter(|(n, _)| f.contains(*n)).map(|(n, o)| f.replace(*n, &o.to_string())))
            .collect();
        family.extend(variants);
        let surname_chars: HashSet<char> = family.iter().filter(|f| f.chars().count() >= 2).flat_map(|f| f.chars()).collect();
        let mut place_names: Vec<String> = Vec::new();
        let mut prefs = HashSet::new();
        for line in MUNICIPALITIES_TSV.lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 5 {
                continue;
            }
            if prefs.insert(f[1].to_owned()) {
                place_names.push(f[1].to_owned());
                let bare = f[1].trim_end_matches(['都', '府', '県']);
                if bare != f[1] && bare.chars().count() >= 2 && f[1] != "京都府" {
                    place_names.push(format!("{bare}市"));
                }
            }
            place_names.push(f[3].to_owned());
            // 札幌市中央区 → also 中央区 after 札幌市 is matched by the tail rule; the city alone:
            if let Some(p) = f[3].find('市')
                && p + '市'.len_utf8() < f[3].len()
            {
                place_names.push(f[3][..p + '市'.len_utf8()].to_owned());
            }
            if let Some(p) = f[3].find('郡')
                && p + '郡'.len_utf8() < f[3].len()
            {
                place_names.push(f[3][p + '郡'.len_utf8()..].to_owned());
            }
        }
        for c in ["東京", "大阪", "京都", "北海道", "横浜", "名古屋", "札幌", "福岡", "神戸", "沖縄"] {
            place_names.push(c.to_owned());
        }
        for c in COUNTRIES.split_whitespace() {
            place_names.push(c.to_owned());
        }
        place_names.sort();
        place_names.dedup();
        let places = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&place_names)
            .expect("place names build an automaton");
        let re = |s: &str| Regex::new(s).expect("built-in pattern compiles");
        let res = Res {
            email: re(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"),
            url: re(r"(?:https?://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'*+,;=%]+"),
            phone: re(r"0\d{1,4}-\d{1,4}-\d{3,4}|0\d{1,4}\(\d{1,4}\)\d{3,4}|\(0\d{1,4}\)\s?\d{1,4}-\d{3,4}|0[5789]0\d{8}|0\d{9}|0[5789]0\s\d{4}\s\d{4}|0\d{1,4}\s\d{1,4}\s\d{4}"),
            digits: re(r"\d(?:[\d]|[\- ](?:\d)){5,22}"),
            postal: re(r"〒\s?\d{3}-?\d{4}|\d{3}-\d{4}"),
            labeled_id: re(
                r"(?:患者ID|患者番号|患者No\.?|ID|カルテ番号|カルテNo\.?|診察券番号|診察券No\.?|保険者番号|被保険者番号|被保険者証番号|記号番号|記号|受給者番号|公費負担者番号|負担者番号|個人番号|マイナンバー|登録番号|検体番号|入院番号|No\.|番号)\s*[:：]?\s*((?:[A-Za-z]{0,3}[\-]?)?\d[\d\-]{2,}[A-Za-z]?)",
            ),
            bank: re(
                r"(?:普通|当座|貯蓄)(?:預金)?\s*(?:口座)?\s*(?:番号)?\s*[:：]?\s*(\d{6,8})|口座番号\s*[:：]?\s*(\d{6,8})",
            ),
            bank_name: re(
                r"[\p{Han}\p{Katakana}\p{Hiragana}ー]{1,10}?(?:銀行|信用金庫|信金|信用組合|農協)(?:[\p{Han}\p{Katakana}ー]{1,8}?(?:支店|営業部|出張所))?",
            ),
            date: re(concat!(
                r"(?:令和|平成|昭和|大正|明治)\s*(?:元|\d{1,2})\s*年(?:\s*\d{1,2}\s*月(?:\s*\d{1,2}\s*日)?)?",
                r"|(?:令和|平成|昭和|大正|明治)(?:元|[一二三四五六七八九十]{1,3})年(?:[一二三四五六七八九十]{1,2}月(?:[一二三四五六七八九十]{1,3}日)?)?",
                r"|[一二三四五六七八九十]{1,2}月[一二三四五六七八九十]{1,3}日",
                r"|[RHSTMrhs]\s?(?:元|\d{1,2})[./\-]\d{1,2}[./\-]\d{1,2}",
                r"|[RHS](?:元|\d{1,2})年(?:\d{1,2}月(?:\d{1,2}日)?)?",
                r"|\d{4}\s*[/.\-]\s*\d{1,2}\s*[/.\-]\s*\d{1,2}(?:\s*\d{1,2}:\d{2})?",
                r"|\d{4}\s*年(?:\s*\d{1,2}\s*月(?:\s*\d{1,2}\s*日)?)?",
                r"|\d{4}/\d{1,2}",
                r"|\d{1,2}\s*月\s*\d{1,2}\s*日(?:\s*\d{1,2}\s*時(?:\s*\d{1,2}\s*分)?)?",
                r"|\d{1,2}\s*月(?:上旬|中旬|下旬|初旬|初め|末|頃|ごろ)",
                r"|\d{1,2}\s*月(?:[^\d日間\s]|$)",
                r"|\d{1,2}/\d{1,2}",
                r"|\d{1,2}\s*時\s*\d{1,2}\s*分|\d{1,2}\s*時(?:頃|ごろ|過ぎ)?|\d{1,2}:\d{2}",
                r"|(?:\d+|[一二三四五六七八九十数半]+)\s*(?:日|週間|週|か月|ヶ月|カ月|ケ月|箇月|年|時間)\s*(?:前|後|目|ぶり)",
                r"|(?:\d+|[一二三四五六七八九十数]+)\s*(?:POD|病日)",
                r"|POD\s*\d+",
            )),
            time_word: re(
                r"一昨日|昨日|本日|今朝|今晩|昨夜|昨晩|同日|翌日|前日|当日|翌朝|翌週|先週|今週|来週|先月|今月|来月|翌月|昨年|今年|本年|同年|翌年|前年|来年|一昨年|明朝|深夜|未明|早朝|夕方|正午|週末|年末|年始|年明け|午前|午後|連休明け",
            ),
            age: re(r"[一二三四五六七八九十百]{1,4}(?:歳|才)|\d{1,3}\s*(?:歳|才)(?:代(?:前半|後半)?|以上|時|頃)?|\d0\s*代(?:前半|後半)?|\d{1,2}\s*(?:か月|ヶ月|カ月)児|(?:年齢|Age|age)\s*[:：]?\s*\d{1,3}"),
            sex: re(r"男性|女性|男児|女児|男子|女子|(?:歳|才|代)[\s・、/，,]?(?:男|女)性?|性別\s*[:：]?\s*(?:男|女)性?|(?:\d\s?(?:歳|才)\s?)(?:M|F)(?-u:\b)"),
            hospital: re(concat!(
                r"[\p{Han}\p{Katakana}\p{Hiragana}ーA-Za-z0-9・&]{0,20}?",
                r"(?:大学医学部附属病院|大学附属病院|大学病院|総合病院|記念病院|中央病院|市民病院|医療センター|循環器病センター|がんセンター|研究センター|病院|クリニック|医院|診療所|センター|保健所|訪問看護ステーション|調剤薬局|薬局|歯科)",
                r"(?:\s?[\p{Han}]{1,6}科|外来|病棟)?",
            )),
            addr_tail: re(concat!(
                r"^\s?(?:[\p{Han}\p{Katakana}ーヶケノのが]{1,10}?)?",
                r"(?:\d+|[一二三四五六七八九十]+)\s*(?:丁目|番地|番|号|条|線|-|の)",
                r"(?:\s*[東西南北]?\d+\s*(?:丁目|番地|番|号|条|線|-|の)?){0,4}",
                r"(?:\s*[\p{Han}\p{Katakana}ーA-Za-z]{0,12}?\s*\d+\s*号室|\s+[\p{Katakana}ー][\p{Han}\p{Katakana}ーA-Za-z]{1,14}\s?\d{2,4}(?:号室)?)?",
            )),
            muni_tail: re(r"^[\p{Han}\p{Katakana}ヶ]{1,6}?(?:市|区|郡|町|村)"),
            station: re(r"[\p{Han}\p{Katakana}ー]{1,8}駅"),
            dr: re(r"(?:Dr|DR|Ｄｒ|Ns|NS)\.?[ 　]?([\p{Han}]{1,4}|[A-Z][A-Za-z]+(?:\s[A-Z][a-z]+)?|[\p{Katakana}ー]{2,8})"),
            street: re(concat!(
                r"[\p{Han}\p{Katakana}ヶケ][\p{Han}\p{Katakana}ヶケがノの]{0,7}?",
                r"(?:(?:\d+|[一二三四五六七八九十]+)\s?丁目(?:\s?\d+\s?(?:番地?|-)?(?:\s?\d+\s?号?)?)?",
                r"|\d+\s?番地(?:\s?の?\s?\d+(?:\s?号)?)?",
                r"|\d{1,4}-\d{1,4}(?:-\d{1,4})?)",
            )),
            card_pair: re(r"記号\s*[:：]?\s*([0-9A-Za-z\-]{1,10})\s*[・、,]?\s*番号\s*[:：]?\s*([0-9\-]{1,12})"),
            romaji: re(r"(?-u:\b)(?:[A-Z][A-Z]{1,11}[AEIOUN] [A-Z][a-z]{1,11}[aeioun]|[A-Z][a-z]{1,11}[aeioun] [A-Z]{2,11}[AEIOUN])"),
            romaji_labeled: re(r"^([A-Z][A-Za-z]{1,11}(?: [A-Z][A-Za-z]{1,11})?)"),
            care_home: re(r"訪問看護ステーション\s?[\p{Han}\p{Hiragana}\p{Katakana}ー]{2,10}|(?:介護老人保健施設|特別養護老人ホーム|有料老人ホーム|サービス付き高齢者向け住宅|グループホーム|老健|特養)\s?[\p{Han}\p{Hiragana}\p{Katakana}ー]{1,10}?(?:苑|園|荘|の里|の家|ホーム|ハウス)"),
            family_clinic: re(r"[\p{Han}]{1,4}?(?:内科|外科|皮膚科|眼科|整形外科|小児科|耳鼻咽喉科|耳鼻科|婦人科|産婦人科|泌尿器科|胃腸科|形成外科|精神科|心療内科|歯科)(?:医院|クリニック)?"),
        };
        Dicts { family, given, family_kana, given_kana, surname_chars, places, place_names, re: res }
    })
}

fn is_kanji(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' | '々' | '〆' | '\u{20000}'..='\u{2FFFF}')
}
fn is_katakana(c: char) -> bool {
    matches!(c, '\u{30A1}'..='\u{30FA}' | 'ー')
}

// ---------------------------------------------------------------- detection

struct Cand {
    start: usize,
    end: usize,
    tag: Tag,
    prio: u8,
}

fn digit_boundary(t: &str, s: usize, e: usize) -> bool {
    let before = t[..s].chars().next_back();
    let after = t[e..].chars().next();
    !before.is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '/' || c == '.')
        && !after.is_some_and(|c| {
            c.is_ascii_digit() || c == '-' || (c == '/' && t[e + 1..].starts_with(|d: char| d.is_ascii_digit()))
        })
}

/// Luhn check of a card number's digits.
pub fn luhn(digits: &[u8]) -> bool {
    if digits.len() < 12 {
        return false;
    }
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = d as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Check digit of a 12-digit individual number (マイナンバー) from its first 11 digits.
pub fn my_number_check_digit(first11: &[u8]) -> u8 {
    let mut sum = 0u32;
    for n in 1..=11usize {
        let p = first11[11 - n] as u32;
        let q = if n <= 6 { n as u32 + 1 } else { n as u32 - 5 };
        sum += p * q;
    }
    let r = sum % 11;
    if r <= 1 { 0 } else { (11 - r) as u8 }
}

/// Whether 12 digits are a valid My Number.
pub fn is_my_number(digits: &[u8]) -> bool {
    digits.len() == 12 && my_number_check_digit(&digits[..11]) == digits[11]
}

fn digits_of(s: &str) -> Vec<u8> {
    s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect()
}

/// Financial or identification code found in a value of any column (S2, S3): card numbers passing
/// Luhn, My Numbers passing their check digit, bank account phrases. Returns byte spans.
pub fn find_financial(value: &str) -> Vec<Span> {
    detect(value)
        .into_iter()
        .filter(|s| s.tag == Tag::Financial || s.tag == Tag::Id && is_my_number(&digits_of(&value[s.start..s.end])))
        .collect()
}

// ---------------------------------------------------------------- the record's own identity

/// The identity of the record being processed, from the identity vault: its own name (kanji and
/// kana), address and phone. The processing knows whose record it is, so these are caught in the
/// record's text whatever their context — names in no list, with no honorific, in any script.
#[derive(Debug, Clone, Default)]
pub struct KnownIdentity {
    /// Name forms (normalized, katakana folded): full names and parts, each with whether it may
    /// stand alone anywhere (false: only next to a non-name character).
    names: Vec<(String, bool)>,
    /// Address forms (normalized, without spaces).
    addresses: Vec<String>,
    /// Phone numbers as digits.
    phones: Vec<Vec<u8>>,
}

/// Text normalized for matching a known identity: full-width ASCII and half-width kana folded,
/// hiragana turned into katakana, spaces and middle dots between name parts dropped.
fn fold_known(s: &str) -> String {
    normalize(s)
        .text
        .chars()
        .filter(|c| !matches!(c, ' ' | '　' | '・' | '\t'))
        .map(|c| if ('\u{3041}'..='\u{3096}').contains(&c) { char::from_u32(c as u32 + 0x60).unwrap_or(c) } else { c })
        .collect()
}

/// Splits a name into family and given parts: at a space (or middle dot), else after the longest
/// known family name (kanji or kana) that leaves a given name.
fn split_name(d: &Dicts, name: &str) -> Option<(String, String)> {
    let n = normalize(name.trim()).text;
    if let Some((f, g)) = n.split_once([' ', '　', '・']) {
        let (f, g) = (fold_known(f), fold_known(g));
        return (!f.is_empty() && !g.is_empty()).then_some((f, g));
    }
    let k = fold_known(&n);
    let idx: Vec<usize> = k.char_indices().map(|(i, _)| i).chain([k.len()]).collect();
    (1..idx.len().saturating_sub(1))
        .rev()
        .map(|l| (&k[..idx[l]], &k[idx[l]..]))
        .find(|(f, _)| d.family.contains(*f) || d.family_kana.contains(*f))
        .map(|(f, g)| (f.to_owned(), g.to_owned()))
}

impl KnownIdentity {
    /// The record's identity from its vault fields (any may be empty): kanji name, kana name
    /// (katakana, half-width or hiragana, with or without a space), address and phone.
    pub fn new(name_kanji: &str, name_kana: &str, address: &str, phone: &str) -> Self {
        let d = dicts();
        let mut names: Vec<(String, bool)> = Vec::new();
        for n in [name_kanji, name_kana] {
            let full = fold_known(n);
            if full.chars().count() >= 2 {
                names.push((full, true));
            }
            if let Some((f, g)) = split_name(d, n) {
                // Given name first: "太郎 山田" in romanized order, or family name after the given.
                names.push((format!("{g}{f}"), true));
                for part in [f, g] {
                    // A part of two or more characters is caught anywhere; one character only alone.
                    let alone = part.chars().count() >= 2;
                    names.push((part, alone));
                }
            }
        }
        names.retain(|(n, _)| !n.is_empty() && !NOT_NAMES.contains(&n.as_str()));
        // Longest first: the full name wins over its parts.
        names.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
        names.dedup_by(|a, b| a.0 == b.0);
        let mut addresses = Vec::new();
        let a = fold_known(address);
        let a =
            a.strip_prefix('〒').map_or(a.as_str(), |r| r.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-'));
        if a.chars().count() >= 4 {
            addresses.push(a.to_owned());
            // Without the prefecture, and the town and street number after the municipality.
            for (pref, _) in crate::pseudo::prefectures() {
                if let Some(rest) = a.strip_prefix(pref.as_str())
                    && rest.chars().count() >= 4
                {
                    addresses.push(rest.to_owned());
                }
            }
            if let Some(p) = a.rfind(['市', '区', '町', '村', '郡'])
                && a[p..].chars().count() > 4
            {
                addresses.push(a[p + '市'.len_utf8()..].to_owned());
            }
        }
        let ph = digits_of(&normalize(phone).text);
        let phones = if ph.len() >= 7 { vec![ph] } else { Vec::new() };
        KnownIdentity { names, addresses, phones }
    }

    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.addresses.is_empty() && self.phones.is_empty()
    }

    /// Spans of the normalized text `t` holding this identity.
    fn find(&self, t: &str, push: &mut impl FnMut(usize, usize, Tag, u8)) {
        if self.is_empty() {
            return;
        }
        // Fold the text the same way, keeping a map from folded bytes back to `t`.
        let mut folded = String::with_capacity(t.len());
        let mut map: Vec<usize> = Vec::with_capacity(t.len() + 1);
        for (i, c) in t.char_indices() {
            if matches!(c, ' ' | '　' | '・' | '\t') {
                continue;
            }
            let c =
                if ('\u{3041}'..='\u{3096}').contains(&c) { char::from_u32(c as u32 + 0x60).unwrap_or(c) } else { c };
            for _ in 0..c.len_utf8() {
                map.push(i);
            }
            folded.push(c);
        }
        map.push(t.len());
        // The end in `t` of folded byte `e` (exclusive): after the last character of the match.
        let end_of = |e: usize| -> usize {
            if e == 0 {
                return 0;
            }
            let s = map[e - 1];
            s + t[s..].chars().next().map_or(0, char::len_utf8)
        };
        let name_char = |c: Option<char>| c.is_some_and(|c| is_kanji(c) || is_katakana(c));
        for (n, alone) in &self.names {
            for (i, _) in folded.match_indices(n.as_str()) {
                let e = i + n.len();
                if !alone
                    && (name_char(folded[..i].chars().next_back()) || name_char(folded[e..].chars().next()))
                    && honorific_at(&folded, e).is_none()
                {
                    continue;
                }
                push(map[i], end_of(e), Tag::Person, 97);
            }
        }
        for a in &self.addresses {
            for (i, _) in folded.match_indices(a.as_str()) {
                push(map[i], end_of(i + a.len()), Tag::Location, 97);
            }
        }
        if !self.phones.is_empty() {
            // Runs of digits and phone separators whose digits are the phone's.
            let b = folded.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if !b[i].is_ascii_digit() {
                    i += 1;
                    continue;
                }
                let mut e = i;
                while e < b.len() && (b[e].is_ascii_digit() || matches!(b[e], b'-' | b'(' | b')')) {
                    e += 1;
                }
                let run = &folded[i..e];
                let ds = digits_of(run.trim_end_matches(['-', '(']));
                if self.phones.iter().any(|p| ds.ends_with(p) || p.ends_with(&ds) && ds.len() >= 7) {
                    push(map[i], end_of(i + run.trim_end_matches(['-', '(']).len()), Tag::Phone, 97);
                }
                i = e;
            }
        }
    }
}

/// Finds the identifying spans of `text`, sorted and non-overlapping, as byte offsets of `text`.
pub fn detect(text: &str) -> Vec<Span> {
    detect_with(text, None)
}

/// [`detect`] knowing whose record the text belongs to: the record's own name, address and phone
/// (from the identity vault) are always caught.
pub fn detect_with(text: &str, known: Option<&KnownIdentity>) -> Vec<Span> {
    let n = normalize(text);
    let t = n.text.as_str();
    let d = dicts();
    let r = &d.re;
    let mut c: Vec<Cand> = Vec::new();
    let mut push = |start: usize, end: usize, tag: Tag, prio: u8| {
        if end > start {
            c.push(Cand { start, end, tag, prio });
        }
    };
    for m in r.email.find_iter(t) {
        push(m.start(), m.end(), Tag::Contact, 95);
    }
    for m in r.url.find_iter(t) {
        push(m.start(), m.end().min(t.len()), Tag::Contact, 95);
    }
    for m in r.bank.captures_iter(t) {
        if let Some(g) = m.get(1).or_else(|| m.get(2)) {
            push(g.start(), g.end(), Tag::Financial, 92);
        }
    }
    for m in r.bank_name.find_iter(t) {
        let s = m.as_str();
        let si = ["銀行", "信用金庫", "信金", "信用組合", "農協"].iter().filter_map(|x| s.find(x)).min().unwrap_or(0);
        let p = strip_hospital_prefix(&s[..si]);
        if !p.is_empty() {
            push(m.start() + si - p.len(), m.end(), Tag::Financial, 92);
        }
    }
    for m in r.digits.find_iter(t) {
        let s = m.as_str().trim_end_matches(['-', ' ']);
        let (st, en) = (m.start(), m.start() + s.len());
        if !digit_boundary(t, st, en) {
            continue;
        }
        let ds = digits_of(s);
        if (13..=19).contains(&ds.len()) && luhn(&ds) {
            push(st, en, Tag::Financial, 94);
        } else if ds.len() == 12 && is_my_number(&ds) {
            push(st, en, Tag::Id, 93);
        } else if ds.len() >= 7 && !s.contains(' ') && !(ds[0] == 0 && (10..=11).contains(&ds.len())) {
            push(st, en, Tag::Id, 40);
        }
    }
    for m in r.labeled_id.captures_iter(t) {
        if let Some(g) = m.get(1) {
            let v = g.as_str().trim_end_matches('-');
            push(g.start(), g.start() + v.len(), Tag::Id, 91);
        }
    }
    // 記号 12 番号 345 on an insurance card: both parts, however short.
    for m in r.card_pair.captures_iter(t) {
        for g in [m.get(1), m.get(2)].into_iter().flatten() {
            push(g.start(), g.end(), Tag::Id, 91);
        }
    }
    for m in r.phone.find_iter(t) {
        // tel.(06)6123-4567: a dot after a label is no digit boundary.
        let label_dot =
            t[..m.start()].strip_suffix('.').is_some_and(|p| p.ends_with(|c: char| c.is_ascii_alphabetic()));
        if digit_boundary(t, m.start(), m.end()) || t[..m.start()].ends_with('(') || label_dot {
            push(m.start(), m.end(), Tag::Phone, 90);
        }
    }
    for m in r.postal.find_iter(t) {
        let pre = &t[..m.start()];
        if m.as_str().starts_with('〒') || (digit_boundary(t, m.start(), m.end()) && !pre.ends_with(['(', '（'])) {
            push(m.start(), m.end(), Tag::Location, 89);
        }
    }
    for m in r.date.find_iter(t) {
        let s = m.as_str();
        if !valid_date_token(s) {
            continue;
        }
        let (st, en) = (m.start(), m.end());
        let before = t[..st].chars().next_back();
        if before
            .is_some_and(|c| c.is_ascii_digit() || (c.is_ascii_alphabetic() && !s.starts_with(char::is_alphabetic)))
        {
            continue;
        }
        if (s.contains(':') || s.contains('/')) && !digit_boundary(t, st, en) {
            continue;
        }
        if t[en..].starts_with('間') && s.ends_with('時') {
            continue;
        }
        // Ratios and scores written like a month/day (リンパ節転移 2/15, NRS 3/10).
        let pre = t[..st].trim_end_matches([' ', '　', ':', '：']);
        if s.contains('/') && s.len() <= 5 && RATIO_CUES.iter().any(|c| pre.ends_with(c)) {
            continue;
        }
        // `6月に`: the month alone is matched with the character after it, which is not the date's.
        let en = match s.char_indices().next_back() {
            Some((i, c))
                if s[..i].strip_suffix('月').is_some_and(|p| p.ends_with(|d: char| d.is_ascii_digit()))
                    && !"日旬末頃".contains(c) =>
            {
                st + i
            }
            _ => en,
        };
        push(st, en, Tag::Time, 70);
    }
    for m in r.time_word.find_iter(t) {
        push(m.start(), m.end(), Tag::Time, 60);
    }
    for m in r.age.find_iter(t) {
        let before = t[..m.start()].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_digit() || c == '.') {
            continue;
        }
        push(m.start(), m.end(), Tag::Age, 72);
    }
    for m in r.sex.find_iter(t) {
        let s = m.as_str();
        let off = s.char_indices().find(|(_, ch)| matches!(ch, '男' | '女' | 'M' | 'F')).map_or(0, |(i, _)| i);
        let st = if s.starts_with("男") || s.starts_with("女") { m.start() } else { m.start() + off };
        push(st, m.end(), Tag::Sex, 50);
    }
    hospitals(t, &mut push);
    locations(t, d, &mut push);
    persons(t, d, &mut push);
    if let Some(k) = known {
        k.find(t, &mut push);
    }

    // Resolve overlaps: longer first, then priority.
    let mut chosen: Vec<Cand> = Vec::new();
    let mut taken = vec![false; t.len() + 1];
    // Structural matches (numbers, contacts) win over dictionary matches they overlap.
    c.sort_by(|a, b| {
        let ka = (a.prio >= 89) as u8;
        let kb = (b.prio >= 89) as u8;
        (kb, b.end - b.start, b.prio).cmp(&(ka, a.end - a.start, a.prio))
    });
    for x in c {
        if taken[x.start..x.end].iter().any(|&b| b) {
            continue;
        }
        taken[x.start..x.end].iter_mut().for_each(|b| *b = true);
        chosen.push(x);
    }
    chosen.sort_by_key(|x| x.start);
    chosen.into_iter().map(|x| Span { start: n.map[x.start], end: n.map[x.end], tag: x.tag }).collect()
}

fn valid_date_token(s: &str) -> bool {
    let nums: Vec<u32> =
        s.split(|c: char| !c.is_ascii_digit()).filter(|x| !x.is_empty()).filter_map(|x| x.parse().ok()).collect();
    if s.contains('/') && !s.contains(':') && nums.len() == 2 && !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        let (a, b) = (nums[0], nums[1]);
        if a >= 1000 {
            return (1..=12).contains(&b);
        }
        return (1..=12).contains(&a) && (1..=31).contains(&b);
    }
    if s.contains(':') && !s.contains('/') && !s.contains('-') && nums.len() == 2 {
        return nums[0] <= 24 && nums[1] < 60;
    }
    if s.contains('月') {
        let mut it = s.split('月');
        let m: Option<u32> = it.next().and_then(|x| x.rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok());
        if m.is_some_and(|m| !(1..=12).contains(&m)) {
            return false;
        }
    }
    if s.ends_with('時') || s.contains("時頃") {
        return nums.first().is_some_and(|&h| h <= 24);
    }
    true
}

/// Town names usually end so (栄町, 桜台, 緑が丘, 大通, 北一条, 字北山).
const TOWN_SUFFIXES: [char; 14] = ['町', '丁', '台', '丘', '通', '条', '野', '原', '山', '川', '田', '島', '谷', '沢'];
/// Kanji words before a number that make it something other than an address.
const ADDRESS_STOP: [&str; 16] =
    ["番号", "記号", "電話", "携帯", "内線", "検体", "病理", "第", "約", "計", "図", "表", "症例", "番", "号", "ID"];

/// Cuts label words before a town name (住所：, 自宅は, 在住の).
fn strip_address_prefix(p: &str) -> &str {
    let mut p = p;
    // が stays: 緑が丘, 光が丘.
    if let Some((i, ch)) = p.char_indices().rev().find(|(_, c)| "のはでへとにを".contains(*c)) {
        p = &p[i + ch.len_utf8()..];
    }
    for s in ["現住所", "住所", "自宅", "実家", "転居先", "在住", "所在地", "旧住所"] {
        if let Some(r) = p.strip_prefix(s) {
            p = r;
        }
    }
    p
}

/// Words before `a/b` that make it a ratio or score, not a date.
const RATIO_CUES: [&str; 12] =
    ["転移", "NRS", "VAS", "score", "スコア", "陽性", "比", "個中", "本中", "分画", "GCS", "MMT"];

const HOSP_STOP_PREFIX: [&str; 29] = [
    "受診",
    "紹介",
    "転院",
    "入院",
    "通院",
    "搬送",
    "同日",
    "翌日",
    "前日",
    "当日",
    "本日",
    "先日",
    "近医",
    "前医",
    "当院",
    "他院",
    "初診",
    "元",
    "同",
    "当",
    "近く",
    "近",
    "前",
    "他",
    "かかりつけ",
    "地域",
    "救急",
    "専門",
    "総合",
];
const GENERIC_HOSP: [&str; 16] = [
    "療養",
    "一般",
    "急性期",
    "慢性期",
    "精神科",
    "専門",
    "地域",
    "大きな",
    "基幹",
    "総合",
    "大学",
    "市中",
    "民間",
    "公立",
    "近隣",
    "回復期リハビリテーション",
];
const CENTER_STOP: [&str; 14] = [
    "救命救急",
    "救急",
    "透析",
    "健診",
    "検診",
    "内視鏡",
    "相談",
    "支援",
    "連携",
    "地域医療連携",
    "患者支援",
    "地域包括支援",
    "治験",
    "外来化学療法",
];

fn strip_hospital_prefix(p: &str) -> &str {
    let mut p = p;
    // Cut at the last particle-like hiragana: names rarely contain them.
    if let Some((i, ch)) = p.char_indices().rev().find(|(_, c)| "のにをはがでへと".contains(*c)) {
        p = &p[i + ch.len_utf8()..];
    }
    loop {
        let before = p;
        for s in HOSP_STOP_PREFIX {
            if p.starts_with(s) && p.len() > s.len() && !p[s.len()..].starts_with(['病', '医', 'ク']) {
                p = &p[s.len()..];
            }
        }
        p = p.trim_start_matches(|c: char| c.is_ascii_digit() || c == '・');
        if p == before {
            return p;
        }
    }
}

/// Start of `医療法人社団X会 ` right before `i`, or `i`.
fn corporation_before(t: &str, i: usize) -> usize {
    let pre = t[..i].trim_end_matches([' ', '　']);
    if !pre.ends_with('会') {
        return i;
    }
    for corp in ["医療法人社団", "医療法人財団", "社会医療法人", "医療法人"] {
        if let Some(p) = pre.rfind(corp)
            && pre.len() - p <= corp.len() + 8 * 3 + 3
            && pre[p + corp.len()..].chars().all(is_kanji)
        {
            return p;
        }
    }
    i
}

/// End of ` 消化器内科` (a department after one space) right after `i`, or `i`.
fn department_after(t: &str, i: usize) -> usize {
    let Some(rest) = t[i..].strip_prefix([' ', '　']) else {
        return i;
    };
    let run = run_at(rest, 0, is_kanji);
    let w = &rest[..run];
    if (2..=7).contains(&w.chars().count()) && w.ends_with('科') {
        return i + (t[i..].len() - rest.len()) + run;
    }
    i
}

fn hospitals(t: &str, push: &mut impl FnMut(usize, usize, Tag, u8)) {
    let d = dicts();
    for m in d.re.hospital.find_iter(t) {
        let s = m.as_str();
        // Find where the generic suffix starts.
        let sufs = [
            "大学医学部附属病院",
            "大学附属病院",
            "大学病院",
            "総合病院",
            "記念病院",
            "中央病院",
            "市民病院",
            "医療センター",
            "循環器病センター",
            "がんセンター",
            "研究センター",
            "訪問看護ステーション",
            "調剤薬局",
            "病院",
            "クリニック",
            "医院",
            "診療所",
            "センター",
            "保健所",
            "薬局",
            "歯科",
        ];
        let Some((si, suf)) =
            sufs.iter().filter_map(|x| s.find(x).map(|i| (i, *x))).min_by_key(|(i, x)| (*i, usize::MAX - x.len()))
        else {
            continue;
        };
        let prefix = strip_hospital_prefix(&s[..si]);
        let pstart = m.start() + si - prefix.len();
        let proper = prefix.trim();
        if proper.is_empty() || proper.chars().all(|c| "のにをはがでへと".contains(c)) {
            continue;
        }
        if matches!(suf, "センター") && (CENTER_STOP.iter().any(|x| proper.ends_with(x)) || proper.chars().count() < 2)
        {
            continue;
        }
        if matches!(suf, "歯科" | "薬局") && proper.chars().count() < 2 {
            continue;
        }
        if ["当", "同", "前", "他", "本", "自", "各", "新", "旧", "元", "貴", "御", "大"].contains(&proper)
            || GENERIC_HOSP.iter().any(|g| proper == *g || proper.ends_with('型'))
        {
            continue;
        }
        // 東京医科歯科大学病院: a department-like suffix inside a longer facility name.
        let mut end = m.end();
        let run_end = run_at(t, end, |c| is_kanji(c) || is_katakana(c));
        if run_end > end && t[end..run_end].chars().count() <= 12 {
            for strong in ["大学病院", "病院", "医院", "診療所", "センター"] {
                if t[end..run_end].ends_with(strong) {
                    end = run_end;
                    break;
                }
            }
        }
        // 医療法人社団緑風会 みどり病院: the corporation belongs to the name.
        let pstart = corporation_before(t, pstart);
        let end = department_after(t, end);
        push(pstart, end, Tag::Hospital, 80);
    }
    for m in d.re.care_home.find_iter(t) {
        push(m.start(), department_after(t, m.end()), Tag::Hospital, 81);
    }
    // Clinics named after the doctor's family (蓮見皮膚科, 笠井内科医院): the prefix must be a surname.
    for m in d.re.family_clinic.find_iter(t) {
        let s = m.as_str();
        let Some(p) =
            ["整形外科", "耳鼻咽喉科", "産婦人科", "心療内科", "形成外科", "泌尿器科", "内科", "外科", "皮膚科"]
                .iter()
                .chain(["眼科", "小児科", "耳鼻科", "婦人科", "胃腸科", "精神科", "歯科"].iter())
                .filter_map(|x| s.find(x))
                .min()
        else {
            continue;
        };
        let fam = &s[..p];
        if !fam.is_empty() && d.family.contains(fam) && !t[..m.start()].ends_with(is_kanji) {
            push(corporation_before(t, m.start()), department_after(t, m.end()), Tag::Hospital, 79);
        }
    }
}

fn locations(t: &str, d: &Dicts, push: &mut impl FnMut(usize, usize, Tag, u8)) {
    for m in d.places.find_iter(t) {
        let name = &d.place_names[m.pattern().as_usize()];
        let (st, mut en) = (m.start(), m.end());
        let first_char_kana = name.starts_with(is_katakana);
        let before = t[..st].chars().next_back();
        let after = t[en..].chars().next();
        if first_char_kana {
            // Country names must be whole katakana words.
            if before.is_some_and(is_katakana) || after.is_some_and(is_katakana) {
                continue;
            }
        } else if !name.ends_with(['都', '道', '府', '県', '市', '区', '町', '村', '郡']) {
            // Bare city names (東京, 横浜): not inside a longer kanji word, and not a person (さん).
            if after.is_some_and(is_kanji) && !t[en..].starts_with(['都', '府', '市', '駅', '在', '出', '内', '県'])
            {
                continue;
            }
            if before.is_some_and(is_kanji) {
                continue;
            }
        } else if name.ends_with(['町', '村']) && before.is_some_and(is_kanji) && name.chars().count() <= 2 {
            continue;
        }
        // Extend over municipality, town and street number.
        for _ in 0..3 {
            // 石川県 白山市 錦6丁目: one space may separate the parts.
            let sp = if t[en..].starts_with(' ') || t[en..].starts_with('　') {
                t[en..].chars().next().map_or(0, char::len_utf8)
            } else {
                0
            };
            let rest = &t[en + sp..];
            if let Some(m2) = d.places.find(rest).filter(|m2| m2.start() == 0) {
                en += sp + m2.end();
                continue;
            }
            if name.ends_with(['都', '道', '府', '県', '郡', '市'])
                && let Some(m2) = d.re.muni_tail.find(rest)
            {
                en += sp + m2.end();
                continue;
            }
            break;
        }
        let sp = if t[en..].starts_with([' ', '　']) { t[en..].chars().next().map_or(0, char::len_utf8) } else { 0 };
        if let Some(m3) = d.re.addr_tail.find(&t[en + sp..]).or_else(|| d.re.addr_tail.find(&t[en..])) {
            let base = if d.re.addr_tail.find(&t[en + sp..]).is_some() { sp } else { 0 };
            let s = m3.as_str().trim_end_matches(['-', 'の']).trim_end();
            en += base + s.len();
        } else {
            // A town name without number: kanji ending in 町/丁/字 right after the municipality.
            let rest = &t[en..];
            let run: String = rest.chars().take_while(|&c| is_kanji(c) || c == 'ヶ').take(8).collect();
            if run.ends_with(['町', '丁']) && run.chars().count() >= 2 {
                en += run.len();
            }
        }
        push(st, en, Tag::Location, 75);
    }
    // A street address without its municipality (本町3丁目4-5, 字北山1584番地, 若葉1-26-29).
    for m in d.re.street.find_iter(t) {
        let s = m.as_str();
        let num_at = s.find(|c: char| c.is_ascii_digit() || "一二三四五六七八九十".contains(c)).unwrap_or(0);
        let town = strip_address_prefix(&s[..num_at]);
        let tail = &s[num_at..];
        if town.is_empty() || t[m.end()..].starts_with(|c: char| c.is_ascii_digit() || c == '-') {
            continue;
        }
        let hyphen_only = !tail.contains(['丁', '番']);
        if hyphen_only {
            let parts: Vec<&str> = tail.split('-').collect();
            let looks_date =
                parts[0].len() == 4 && parts.get(1).and_then(|x| x.parse::<u32>().ok()).is_some_and(|m| m <= 12);
            let townish = town.ends_with(TOWN_SUFFIXES) || d.place_names.binary_search(&town.to_owned()).is_ok();
            if looks_date || ADDRESS_STOP.iter().any(|x| town.ends_with(x)) || !(parts.len() == 3 || townish) {
                continue;
            }
        }
        let end = m.end() - (s.len() - s.trim_end().len());
        push(m.end() - tail.len() - town.len(), end, Tag::Location, 73);
    }
    for m in d.re.station.find_iter(t) {
        let s = m.as_str();
        let core = s.trim_end_matches('駅');
        let core = strip_hospital_prefix(core);
        if core.chars().count() >= 2 && !["最寄", "最寄り", "近く", "近"].contains(&core) {
            push(m.end() - core.len() - "駅".len(), m.end(), Tag::Location, 74);
        }
    }
}

fn run_at(t: &str, i: usize, pred: fn(char) -> bool) -> usize {
    t[i..].char_indices().find(|&(_, c)| !pred(c)).map_or(t.len(), |(k, _)| i + k)
}

fn honorific_at(t: &str, i: usize) -> Option<&'static str> {
    let rest = &t[i..];
    if let Some(h) = HONORIFICS.iter().copied().find(|h| rest.starts_with(h)) {
        return Some(h);
    }
    // One space before 先生/様/さん/医師 (山田 先生).
    let rest = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('　'))?;
    let h = ["先生", "様", "さん", "医師", "殿", "Dr", "Ns", "NS", "御机下", "御侍史", "机下", "侍史", "拝"]
        .into_iter()
        .find(|h| rest.starts_with(h))?;
    // "X Dr." is a signature; "X Dr.Y" introduces Y.
    if h.is_ascii() {
        let after = rest[h.len()..].trim_start_matches(['.', ' ']);
        let letter_to_honor = ["御机下", "御侍史", "机下", "侍史", "先生", "殿"].iter().any(|x| after.starts_with(x));
        if after.starts_with(|c: char| c.is_alphanumeric()) && !letter_to_honor {
            return None;
        }
    }
    Some(h)
}

fn hiragana_given(d: &Dicts, t: &str, i: usize) -> Option<usize> {
    let end = run_at(t, i, |c| ('\u{3041}'..='\u{3096}').contains(&c));
    let run = &t[i..end];
    let n = run.chars().count();
    if !(2..=5).contains(&n) {
        return None;
    }
    // Try the longest prefix that is a known given name read in kana.
    let idx: Vec<usize> = run.char_indices().map(|(k, _)| k).chain([run.len()]).collect();
    for l in (2..=n).rev() {
        let kata: String = run[..idx[l]].chars().map(|c| char::from_u32(c as u32 + 0x60).unwrap_or(c)).collect();
        if d.given_kana.contains(&kata) {
            return Some(i + idx[l]);
        }
    }
    None
}

fn label_before(t: &str, i: usize) -> bool {
    // Table cells too: `| 氏名 | X |`, `氏名｜X`.
    let pre = t[..i].trim_end_matches([' ', '　', ':', '：', '\t', '|', '｜', '│']);
    NAME_LABELS.iter().any(|l| pre.ends_with(l))
}

fn after_facility(t: &str, i: usize) -> bool {
    let Some(pre) = t[..i].strip_suffix(['　', ' ']) else {
        return false;
    };
    ["病院", "クリニック", "医院", "診療所", "センター", "科", "苑", "園", "荘", "ホーム", "薬局"]
        .iter()
        .any(|s| pre.ends_with(s))
}

/// A foreign name written in katakana with middle dots (マリア・サントス, グエン・ティ・ラン): the
/// span `i..end` of one part widened over the parts joined to it by `・`.
fn kana_name_extent(t: &str, i: usize, end: usize) -> (usize, usize) {
    let mut s = i;
    while let Some(p) = t[..s].strip_suffix('・') {
        let b = p.char_indices().rev().take_while(|&(_, c)| is_katakana(c)).last().map_or(p.len(), |(k, _)| k);
        if p[b..].chars().count() < 2 {
            break;
        }
        s = b;
    }
    let mut e = end;
    while t[e..].starts_with('・') {
        let g0 = e + '・'.len_utf8();
        let ge = run_at(t, g0, is_katakana);
        if ge == g0 {
            break;
        }
        e = ge;
    }
    (s, e)
}

fn rel_before(t: &str, i: usize) -> bool {
    let pre = t[..i].trim_end_matches([' ', '　', ':', '：', '（', '(', 'の', '・']);
    REL_LABELS.iter().any(|l| pre.ends_with(l))
}

fn persons(t: &str, d: &Dicts, outer: &mut impl FnMut(usize, usize, Tag, u8)) {
    // Relation and role words are never names themselves (長男, 主治医).
    let mut push = |s: usize, e: usize, tag: Tag, prio: u8| {
        let w = &t[s..e];
        if !NOT_NAMES.contains(&w)
            && !NOT_NAMES_KANA.contains(&w)
            && !REL_LABELS.contains(&w)
            && !NAME_LABELS.contains(&w)
        {
            outer(s, e, tag, prio);
        }
    };
    let push = &mut push;
    // Romaji names: SURNAME Given / Given SURNAME, and romaji after a name label.
    for m in d.re.romaji.find_iter(t) {
        if !t[m.end()..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            push(m.start(), m.end(), Tag::Person, 60);
        }
    }
    for (i, _) in t.match_indices(|c: char| c.is_ascii_uppercase()) {
        if (i > 0 && t.as_bytes()[i - 1].is_ascii_alphanumeric()) || !label_before(t, i) {
            continue;
        }
        if let Some(m) = d.re.romaji_labeled.captures(&t[i..]).and_then(|c| c.get(1))
            && m.start() == 0
            && m.as_str().len() >= 3
        {
            push(i, i + m.end(), Tag::Person, 60);
        }
    }
    // Kanji runs.
    let mut i = 0;
    while i < t.len() {
        let c = t[i..].chars().next().expect("in bounds");
        if !is_kanji(c) {
            i += c.len_utf8();
            continue;
        }
        let end = run_at(t, i, is_kanji);
        person_in_run(t, d, i, end, push);
        i = end;
    }
    // Katakana runs: family + given in the kana dictionaries, or a word before an honorific.
    let mut i = 0;
    while i < t.len() {
        let c = t[i..].chars().next().expect("in bounds");
        if !is_katakana(c) || c == 'ー' {
            i += c.len_utf8();
            continue;
        }
        let end = run_at(t, i, is_katakana);
        let w = &t[i..end];
        let mut after = &t[end..];
        let sep = after.starts_with([' ', '　', '・']);
        if sep {
            after = &after[after.chars().next().map_or(0, char::len_utf8)..];
        }
        let e2 = end + (t.len() - end - after.len());
        let next_end = run_at(t, e2, is_katakana);
        let next = &t[e2..next_end];
        if d.family_kana.contains(w) && !next.is_empty() && (d.given_kana.contains(next) || label_before(t, i)) {
            push(i, next_end, Tag::Person, 62);
        } else if d.family_kana.contains(w) && d.given_kana.contains(w) && label_before(t, i) {
            push(i, end, Tag::Person, 62);
        } else if w.chars().count() >= 2 && honorific_at(t, end).is_some() && !NOT_NAMES_KANA.contains(&w) {
            let (s, _) = kana_name_extent(t, i, end);
            push(s, end, Tag::Person, 61);
        } else if label_before(t, i) && w.chars().count() >= 2 {
            let (_, e) = kana_name_extent(t, i, end);
            push(
                i,
                if e > end {
                    e
                } else if sep && !next.is_empty() {
                    next_end
                } else {
                    end
                },
                Tag::Person,
                60,
            );
        }
        i = end.max(i + c.len_utf8());
    }
    for m in d.re.dr.captures_iter(t) {
        if let Some(g) = m.get(1)
            && !g.as_str().starts_with("先生")
            && !NOT_NAMES.iter().any(|x| g.as_str().starts_with(x))
        {
            push(g.start(), g.end(), Tag::Person, 63);
        }
    }
}

fn given_len(d: &Dicts, t: &str, j: usize, end: usize) -> Option<usize> {
    let chars: Vec<(usize, char)> = t[j..end].char_indices().take(4).collect();
    for g in (1..=chars.len().min(4)).rev() {
        let e = if g == chars.len() { end.min(j + t[j..end].len()) } else { j + chars[g].0 };
        let e = if g == chars.len() { j + chars[g - 1].0 + chars[g - 1].1.len_utf8() } else { e };
        if d.given.contains(&t[j..e]) {
            return Some(e);
        }
    }
    None
}

fn person_in_run(t: &str, d: &Dicts, start: usize, end: usize, push: &mut impl FnMut(usize, usize, Tag, u8)) {
    let idx: Vec<usize> = t[start..end].char_indices().map(|(k, _)| start + k).chain([end]).collect();
    let n = idx.len() - 1;
    let honor_end = honorific_at(t, end).is_some();
    // An honorific written in kanji ends the run (勘解由小路様より): the name is the run before it.
    for h in ["様", "氏", "殿", "君", "先生", "医師"] {
        if let Some(p) = t[start..end].strip_suffix(h)
            && !p.is_empty()
            && !t[end..].starts_with(is_kanji)
        {
            return person_in_run(t, d, start, start + p.len(), push);
        }
    }
    // A rare surname ending in a known one (薬袋 ⊃ 袋): one surname-like character before the known
    // family name at the start of a short run, in a name context, belongs to the name.
    let widen = |k: usize, honored: bool| -> usize {
        let pre = &t[start..idx[k]];
        if (1..=3).contains(&k)
            && n <= 6
            && pre.chars().all(|c| is_kanji(c) && !"故元前現新旧対各両計約全和同本当今昨来毎".contains(c))
            && (k == 1 && pre.chars().all(|c| d.surname_chars.contains(&c)) || honored)
            && !pre.chars().any(|c| NOT_FAMILY.iter().any(|x| x.starts_with(c)))
            && !NAME_LABELS.iter().chain(REL_LABELS.iter()).chain(NOT_NAMES.iter()).any(|x| pre.ends_with(x))
            && (label_before(t, start) || rel_before(t, start) || honored)
        {
            start
        } else {
            idx[k]
        }
    };
    let mut k = 0;
    let mut found = false;
    while k < n {
        let mut matched = false;
        for l in (1..=4.min(n - k)).rev() {
            let fam = &t[idx[k]..idx[k + l]];
            if !d.family.contains(fam) {
                continue;
            }
            let fe = idx[k + l];
            let pre_label = label_before(t, idx[k])
                || rel_before(t, idx[k])
                || (k > 0
                    && (NAME_LABELS.iter().any(|x| t[start..idx[k]].ends_with(x))
                        || REL_LABELS.iter().any(|x| t[start..idx[k]].ends_with(x))));
            // honorific right after the family name (inside the run, e.g. 山田氏, 山田医師, 山田先生)
            let honor_in = fe < end && honorific_at(t, fe).is_some();
            // Family + given in the same run.
            if fe < end
                && let Some(ge) = given_len(d, t, fe, end)
            {
                let next_kanji = t[ge..].starts_with(is_kanji);
                let ok = ge == end
                    || honorific_at(t, ge).is_some()
                    || pre_label
                    || (l >= 2 && !next_kanji && ge - idx[k] >= 9);
                if ok && !t[ge..].starts_with(['県', '市', '区', '町', '村', '郡']) {
                    push(idx[k], ge, Tag::Person, 65);
                    k += t[idx[k]..ge].chars().count();
                    matched = true;
                    break;
                }
            }
            // Family + space + given run.
            if fe == end && t[end..].starts_with([' ', '　']) {
                let g0 = end + t[end..].chars().next().map_or(0, char::len_utf8);
                let mut gend = run_at(t, g0, is_kanji);
                // 佐々木 健一様: the honorific is not part of the name.
                for h in ["御机下", "御侍史", "机下", "侍史", "様", "殿", "氏", "君", "先生", "医師"]
                {
                    if t[g0..gend].ends_with(h) {
                        gend -= h.len();
                        break;
                    }
                }
                let glen = t[g0..gend].chars().count();
                if (1..=4).contains(&glen)
                    && (given_len(d, t, g0, gend) == Some(gend)
                        || pre_label
                        || honorific_at(t, gend).is_some()
                        || (l >= 2 && glen <= 3))
                {
                    push(widen(k, honorific_at(t, gend).is_some()), gend, Tag::Person, 65);
                    matched = true;
                    k = n;
                    break;
                }
            }
            // Family + space + a given name in katakana (相良 ウメ).
            if fe == end && t[end..].starts_with([' ', '　']) {
                let g0 = end + t[end..].chars().next().map_or(0, char::len_utf8);
                let gend = run_at(t, g0, is_katakana);
                let glen = t[g0..gend].chars().count();
                if (2..=6).contains(&glen) && (d.given_kana.contains(&t[g0..gend]) || pre_label) {
                    push(widen(k, honorific_at(t, gend).is_some()), gend, Tag::Person, 65);
                    matched = true;
                    k = n;
                    break;
                }
            }
            if fe == end
                && !honor_end
                && l >= 2
                && let Some(he) = hiragana_given(d, t, end)
            {
                push(idx[k], he, Tag::Person, 65);
                matched = true;
                k = n;
                break;
            }
            if (fe == end && (honor_end || pre_label)) || honor_in {
                push(widen(k, honor_end || honor_in), fe, Tag::Person, 64);
                k += l;
                matched = true;
                break;
            }
            // Family name followed directly by a given name we do not know, before an honorific.
            if fe < end && honor_end && l >= 2 && n - k - l <= 3 {
                push(idx[k], end, Tag::Person, 63);
                k = n;
                matched = true;
                break;
            }
        }
        found |= matched;
        if !matched {
            k += 1;
        }
    }
    if found {
        return;
    }
    // An unknown surname, a space and a short given name before an honorific or 拝 (百目鬼 真澄 拝).
    if (1..=5).contains(&n)
        && let Some(sp) = t[end..].chars().next().filter(|&c| c == ' ' || c == '　')
    {
        let g0 = end + sp.len_utf8();
        let ge = run_at(t, g0, is_kanji);
        if (1..=3).contains(&t[g0..ge].chars().count())
            && honorific_at(t, ge).is_some()
            && !NOT_NAMES.contains(&&t[start..end])
            && !NAME_LABELS.contains(&&t[start..end])
        {
            push(start, ge, Tag::Person, 58);
            return;
        }
    }
    // A run before an honorific whose family name we do not know (rare surnames): strip label words.
    if honor_end && n <= 6 {
        let mut s = start;
        for l in NAME_LABELS.iter().chain(NOT_NAMES.iter()) {
            if t[s..end].starts_with(l) && s + l.len() < end {
                s += l.len();
            }
        }
        let w = &t[s..end];
        let hon = honorific_at(t, end).unwrap_or("");
        let cnt = w.chars().count();
        let one_ok = cnt == 1 && (d.given.contains(w) || d.family.contains(w) || rel_before(t, s));
        if !(NOT_NAMES.contains(&w) || hon == "さん" && cnt == 1 && !one_ok) && (1..=5).contains(&cnt) {
            push(s, end, Tag::Person, 58);
        }
        return;
    }
    // A signature after a facility name (〇〇病院 内科　山田): a known surname (+ given) ending the line.
    if after_facility(t, start)
        && t[end..].starts_with(['\n', '\r', '（', '(', '　', ' '])
        && (1..=4).any(|l| l <= n && d.family.contains(&t[start..idx[l]]))
    {
        push(start, end, Tag::Person, 57);
        return;
    }
    // Labelled name (主治医：X, 氏名 X), with a short given name after a space (| 氏名 | 一尺八寸 環 |).
    if label_before(t, start) && (2..=6).contains(&n) {
        let mut e = end;
        let run = &t[start..end];
        let word = NAME_LABELS.contains(&run) || NOT_NAMES.contains(&run) || REL_LABELS.contains(&run);
        if let Some(sp) = t[end..].chars().next().filter(|&c| !word && (c == ' ' || c == '　')) {
            let g0 = end + sp.len_utf8();
            let ge = run_at(t, g0, is_kanji);
            if (1..=3).contains(&t[g0..ge].chars().count()) && !NOT_NAMES.contains(&&t[g0..ge]) {
                e = ge;
            }
        }
        push(start, e, Tag::Person, 57);
        return;
    }
    // After a relation (長女（X）): a known given name, or surname-like kanji + a known given name.
    if rel_before(t, start) && (1..=6).contains(&n) {
        let close = t[end..].starts_with(['）', ')', 'さ', '様', 'は', 'が', '、']);
        if close && (d.given.contains(&t[start..end]) || (1..n).any(|f| given_len(d, t, idx[f], end) == Some(end))) {
            push(start, end, Tag::Person, 57);
            return;
        }
    }
    // Surname-like kanji + known given name, the whole run (rare surname written with common kanji).
    if (3..=5).contains(&n) {
        for fl in [2usize, 3] {
            if fl >= n {
                continue;
            }
            let fam = &t[idx[0]..idx[fl]];
            if fam.chars().all(|c| d.surname_chars.contains(&c))
                && given_len(d, t, idx[fl], end) == Some(end)
                && n - fl >= 2
            {
                let next = t[end..].chars().next();
                if next.is_some_and(|c| "はがのにをと、。）)".contains(c) || c == ' ' || c == '　') {
                    push(start, end, Tag::Person, 55);
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------- replacement

fn surrogate_name(seed: u64, orig: &str, family_only: bool) -> String {
    let d = dicts();
    let h = fnv(seed, orig);
    let mut fam: Vec<&String> = d.family.iter().collect();
    fam.sort();
    let mut giv: Vec<&String> = d.given.iter().collect();
    giv.sort();
    let f = fam[(h % fam.len() as u64) as usize];
    if family_only {
        return f.clone();
    }
    format!("{}{}", f, giv[((h >> 20) % giv.len() as u64) as usize])
}

fn fnv(seed: u64, s: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

/// A parsed date in a note, with how it was written.
#[derive(Debug, Clone, Copy)]
enum DateForm {
    Wareki,
    WarekiShort(char),
    Slash,
    Kanji,
    MonthDay,
    MonthDaySlash,
}

fn parse_date(s: &str, ref_year: i32) -> Option<(NaiveDate, DateForm)> {
    let nums: Vec<i32> =
        s.split(|c: char| !c.is_ascii_digit()).filter(|x| !x.is_empty()).filter_map(|x| x.parse().ok()).collect();
    let era_base = |c: &str| match c {
        "令和" | "R" | "r" => Some(2018),
        "平成" | "H" | "h" => Some(1988),
        "昭和" | "S" | "s" => Some(1925),
        "大正" | "T" => Some(1911),
        "明治" | "M" => Some(1867),
        _ => None,
    };
    let gan = s.contains('元');
    for era in ["令和", "平成", "昭和", "大正", "明治"] {
        if let Some(rest) = s.strip_prefix(era) {
            let base = era_base(era)?;
            let (y, m, d) =
                if gan { (1, *nums.first()?, *nums.get(1)?) } else { (*nums.first()?, *nums.get(1)?, *nums.get(2)?) };
            let _ = rest;
            return NaiveDate::from_ymd_opt(base + y, m as u32, d as u32).map(|x| (x, DateForm::Wareki));
        }
    }
    let first = s.chars().next()?;
    if first.is_ascii_alphabetic() {
        let base = era_base(&first.to_string())?;
        let (y, m, d) =
            if gan { (1, *nums.first()?, *nums.get(1)?) } else { (*nums.first()?, *nums.get(1)?, *nums.get(2)?) };
        return NaiveDate::from_ymd_opt(base + y, m as u32, d as u32).map(|x| (x, DateForm::WarekiShort(first)));
    }
    match nums.as_slice() {
        [y, m, d, ..] if *y >= 1000 => NaiveDate::from_ymd_opt(*y, *m as u32, *d as u32)
            .map(|x| (x, if s.contains('年') { DateForm::Kanji } else { DateForm::Slash })),
        [m, d] if s.contains('月') && s.contains('日') => {
            NaiveDate::from_ymd_opt(ref_year, *m as u32, *d as u32).map(|x| (x, DateForm::MonthDay))
        }
        [m, d] if s.contains('/') && *m <= 12 => {
            NaiveDate::from_ymd_opt(ref_year, *m as u32, *d as u32).map(|x| (x, DateForm::MonthDaySlash))
        }
        _ => None,
    }
}

fn format_date(d: NaiveDate, f: DateForm) -> String {
    match f {
        DateForm::Wareki | DateForm::WarekiShort(_) => match kiban_model::wareki::WarekiDate::from_date(d) {
            Ok(w) => {
                if let DateForm::WarekiShort(c) = f {
                    let i =
                        if c.is_ascii_lowercase() { w.era().initial().to_ascii_lowercase() } else { w.era().initial() };
                    format!("{}{}.{}.{}", i, w.era_year(), d.month(), d.day())
                } else {
                    format!("{}{}年{}月{}日", w.era().kanji(), w.era_year(), d.month(), d.day())
                }
            }
            Err(_) => d.format("%Y/%m/%d").to_string(),
        },
        DateForm::Slash => format!("{}/{}/{}", d.year(), d.month(), d.day()),
        DateForm::Kanji => format!("{}年{}月{}日", d.year(), d.month(), d.day()),
        DateForm::MonthDay => format!("{}月{}日", d.month(), d.day()),
        DateForm::MonthDaySlash => format!("{}/{}", d.month(), d.day()),
    }
}

/// The value of a kanji numeral up to 999 (九十五 → 95, 百二 → 102) at the start of `s`.
fn kanji_number(s: &str) -> Option<u32> {
    let (mut total, mut cur, mut any) = (0u32, 0u32, false);
    for c in s.chars() {
        let d = "〇一二三四五六七八九".chars().position(|k| k == c);
        match (c, d) {
            (_, Some(d)) => cur = d as u32,
            ('十', _) => {
                total += cur.max(1) * 10;
                cur = 0;
            }
            ('百', _) => {
                total += cur.max(1) * 100;
                cur = 0;
            }
            _ => break,
        }
        any = true;
    }
    any.then_some(total + cur)
}

/// The result of de-identifying one text.
#[derive(Debug, Clone)]
pub struct Deidentified {
    /// The de-identified text.
    pub text: String,
    /// What was found (offsets into the input).
    pub spans: Vec<Span>,
}

/// De-identifies `text`: detects and replaces per `cfg` (surrogates consistent within the document).
pub fn deidentify(text: &str, cfg: &TextConfig, ctx: &DocContext) -> Deidentified {
    deidentify_with(text, cfg, ctx, None)
}

/// [`deidentify`] knowing whose record the text belongs to (see [`detect_with`]).
pub fn deidentify_with(text: &str, cfg: &TextConfig, ctx: &DocContext, known: Option<&KnownIdentity>) -> Deidentified {
    let spans = detect_with(text, known);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut surrogates: HashMap<(Tag, String), String> = HashMap::new();
    let mut ref_year = 2024;
    for s in &spans {
        out.push_str(&text[last..s.start]);
        let orig = &text[s.start..s.end];
        let norm = normalize(orig).text;
        let rep = match (cfg.mode(s.tag), s.tag) {
            (Replace::Keep, _) => orig.to_owned(),
            (Replace::TopCode, Tag::Age) => {
                let n: Option<u32> = if digits_of(&norm).is_empty() {
                    kanji_number(&norm)
                } else {
                    digits_of(&norm).iter().try_fold(0u32, |a, &d| a.checked_mul(10)?.checked_add(d as u32))
                };
                match n {
                    Some(n) if n >= 90 && !norm.contains('月') => "90歳以上".to_owned(),
                    _ => orig.to_owned(),
                }
            }
            (Replace::TopCode, _) => orig.to_owned(),
            (Replace::Shift, Tag::Time) => match parse_date(norm.trim(), ref_year) {
                Some((d, f)) => {
                    if !matches!(f, DateForm::MonthDay | DateForm::MonthDaySlash) {
                        ref_year = d.year();
                    }
                    format_date(d + Duration::days(ctx.date_offset_days), f)
                }
                // Relative forms keep intervals as they are; partial dates (year only) are tagged.
                None if norm.chars().any(|c| c.is_ascii_digit())
                    && (norm.contains('年') || norm.contains('/'))
                    && !norm.contains(['前', '後', '目']) =>
                {
                    Tag::Time.label().to_owned()
                }
                None => orig.to_owned(),
            },
            (Replace::Surrogate, Tag::Person) => surrogates
                .entry((s.tag, norm.clone()))
                .or_insert_with(|| {
                    let fam_only = norm.chars().count() <= 2 && dicts().family.contains(&norm);
                    surrogate_name(ctx.surrogate_seed, &norm, fam_only)
                })
                .clone(),
            (Replace::Surrogate, tag) => {
                let next = surrogates.len();
                surrogates
                    .entry((tag, norm.clone()))
                    .or_insert_with(|| {
                        format!("{}{}", tag.label().trim_end_matches('］'), (b'A' + (next % 26) as u8) as char) + "］"
                    })
                    .clone()
            }
            (_, tag) => tag.label().to_owned(),
        };
        out.push_str(&rep);
        last = s.end;
    }
    out.push_str(&text[last..]);
    Deidentified { text: out, spans }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<(String, Tag)> {
        detect(s).into_iter().map(|x| (s[x.start..x.end].to_owned(), x.tag)).collect()
    }

    #[test]
    fn normalization_maps_back_to_original_offsets() {
        let s = "ﾔﾏﾀﾞ ﾀﾛｳさん ＴＥＬ０３－１２３４－５６７８";
        let f = tags(s);
        assert!(f.iter().any(|(x, t)| x == "０３－１２３４－５６７８" && *t == Tag::Phone), "{f:?}");
        assert!(f.iter().any(|(x, t)| x.starts_with("ﾔﾏﾀﾞ") && *t == Tag::Person), "{f:?}");
    }
}
