//! A second, differently-styled evaluation set for the free-text de-identifier, kept apart from the
//! tuning set of [`crate::textgen`] so that quality is measured on notes the rules were not written
//! against: other note kinds (退院サマリ, 病理報告, 紹介状, 看護記録), other layouts (bulleted fields,
//! `姓 名` with a space, names without honorifics, romaji names), names outside kiban-model's list
//! (a hand-written pool with rare readings and surnames that are common words: 林, 森, 原, 田中),
//! half-width katakana, 和暦 and relative dates, ages including 90+, 〒 codes, rural addresses
//! (郡 町 大字 番地), facility names (医療法人, 赤十字, 老健) and doctor and nurse names.
//!
//! Everything is synthetic. Gold spans follow the same tags as [`crate::textgen`].

use rand::{RngExt, SeedableRng};

use crate::text::Tag;
use crate::textgen::{B, Note, Pools, Rng8, fullwidth, half_kana, luhn_number, my_number, pools};

/// Surnames written here, not drawn from kiban-model's list: rare readings, Okinawan names, and
/// surnames that are also common words.
const FAMILY: [(&str, &str); 48] = [
    ("四十物", "アイモノ"),
    ("小鳥遊", "タカナシ"),
    ("東條", "トウジョウ"),
    ("五百旗頭", "イオキベ"),
    ("我如古", "ガネコ"),
    ("喜屋武", "キャン"),
    ("仲村渠", "ナカンダカリ"),
    ("知念", "チネン"),
    ("砂川", "スナガワ"),
    ("阿久津", "アクツ"),
    ("廿日出", "ハツカデ"),
    ("越智", "オチ"),
    ("乙部", "オトベ"),
    ("桃井", "モモイ"),
    ("蓮見", "ハスミ"),
    ("鷲見", "スミ"),
    ("帯刀", "タテワキ"),
    ("宍戸", "シシド"),
    ("仁科", "ニシナ"),
    ("嵯峨", "サガ"),
    ("曽我部", "ソガベ"),
    ("轟", "トドロキ"),
    ("鶴見", "ツルミ"),
    ("百武", "ヒャクタケ"),
    ("纐纈", "コウケツ"),
    ("栗林", "クリバヤシ"),
    ("海老原", "エビハラ"),
    ("城之内", "ジョウノウチ"),
    ("相良", "サガラ"),
    ("林", "ハヤシ"),
    ("森", "モリ"),
    ("原", "ハラ"),
    ("田中", "タナカ"),
    ("岡", "オカ"),
    ("東", "アズマ"),
    ("関", "セキ"),
    ("堀", "ホリ"),
    ("泉", "イズミ"),
    ("辻", "ツジ"),
    ("星", "ホシ"),
    ("大和", "ヤマト"),
    ("日下部", "クサカベ"),
    ("二階堂", "ニカイドウ"),
    ("漆原", "ウルシバラ"),
    ("鬼頭", "キトウ"),
    ("椎名", "シイナ"),
    ("蒲生", "ガモウ"),
    ("猪瀬", "イノセ"),
];

/// Given names written here: old-style names of people now 90+, modern names, kana names.
const GIVEN: [(&str, &str); 40] = [
    ("陽葵", "ヒマリ"),
    ("心春", "コハル"),
    ("雫", "シズク"),
    ("千代", "チヨ"),
    ("鶴松", "ツルマツ"),
    ("亀吉", "カメキチ"),
    ("寅之助", "トラノスケ"),
    ("徳治", "トクジ"),
    ("勝五郎", "カツゴロウ"),
    ("菊枝", "キクエ"),
    ("嘉代子", "カヨコ"),
    ("實", "ミノル"),
    ("希空", "ノア"),
    ("静香", "シズカ"),
    ("タケ", "タケ"),
    ("キヨ", "キヨ"),
    ("トメ", "トメ"),
    ("ハル", "ハル"),
    ("ウメ", "ウメ"),
    ("翔", "ショウ"),
    ("凛", "リン"),
    ("蓮", "レン"),
    ("湊", "ミナト"),
    ("結愛", "ユア"),
    ("颯真", "ソウマ"),
    ("樹", "イツキ"),
    ("光", "ヒカル"),
    ("薫", "カオル"),
    ("忍", "シノブ"),
    ("渚", "ナギサ"),
    ("茜", "アカネ"),
    ("楓", "カエデ"),
    ("栞", "シオリ"),
    ("八重", "ヤエ"),
    ("悦子", "エツコ"),
    ("澄子", "スミコ"),
    ("稔", "ミノル"),
    ("巌", "イワオ"),
    ("伊織", "イオリ"),
    ("武蔵", "ムサシ"),
];

const ROMAJI: [&str; 12] = [
    "TANAKA",
    "HAYASHI",
    "MORI",
    "SATO",
    "KOBAYASHI",
    "NAKAMURA",
    "ITO",
    "WATANABE",
    "YAMAMOTO",
    "KATO",
    "YOSHIDA",
    "SUZUKI",
];
const ROMAJI_GIVEN: [&str; 8] = ["Taro", "Hanako", "Kenji", "Yuki", "Akira", "Mei", "Haruto", "Sakura"];

const TOWNS: [&str; 14] = [
    "本町",
    "栄町",
    "緑が丘",
    "旭町",
    "桜台",
    "中央",
    "若葉",
    "東町",
    "錦",
    "大手町",
    "駅前",
    "新町",
    "松ケ丘",
    "光が丘",
];
const AZA: [&str; 8] = ["大字上野", "大字中島", "字東原", "大字平田", "字北山", "大字新田", "字前田", "大字小室"];
const DEPT: [&str; 10] = [
    "消化器内科",
    "呼吸器外科",
    "血液内科",
    "神経内科",
    "皮膚科",
    "泌尿器科",
    "産婦人科",
    "眼科",
    "耳鼻咽喉科",
    "精神科",
];
const HOSP_FORMS: [&str; 12] = [
    "赤十字病院",
    "済生会病院",
    "労災病院",
    "厚生病院",
    "県立病院",
    "市立病院",
    "大学病院",
    "整形外科クリニック",
    "眼科医院",
    "レディースクリニック",
    "ファミリークリニック",
    "脳神経外科病院",
];
const CLINICAL: [&str; 14] = [
    "Hb 9.8 g/dL、Alb 2.9 g/dL、Cr 1.42 mg/dL。",
    "血圧 148/86、脈拍 76 整。",
    "フロセミド 20mg 1T1x 朝。",
    "原発巣は胃体下部小弯、腫瘍径 3.2×2.8cm。",
    "林檎とヨーグルトは摂取良好。",
    "森の散策を日課としていたとのこと。",
    "田中央部に圧痛なし。",
    "中等度の貧血あり、輸血 2単位施行。",
    "夜間せん妄あり、離床センサー使用。",
    "褥瘡（仙骨部 d2）の処置継続。",
    "HER2 score 2+、Ki-67 30%。",
    "リンパ節転移 2/15。",
    "食事は全粥 7割摂取。",
    "疼痛 NRS 3/10。",
];

struct G<'a> {
    p: &'a Pools,
    r: Rng8,
    year: i32,
}

impl G<'_> {
    fn pick<'b>(&mut self, v: &'b [&'b str]) -> &'b str {
        v[self.r.random_range(0..v.len())]
    }
    /// (family, family kana, given, given kana): half from the hand-written pools.
    fn name(&mut self) -> (String, String, String, String) {
        let (f, fk) = if self.r.random_bool(0.5) {
            let x = FAMILY[self.r.random_range(0..FAMILY.len())];
            (x.0.to_owned(), x.1.to_owned())
        } else {
            self.p.family[self.r.random_range(0..self.p.family.len())].clone()
        };
        let (g, gk) = if self.r.random_bool(0.5) {
            let x = GIVEN[self.r.random_range(0..GIVEN.len())];
            (x.0.to_owned(), x.1.to_owned())
        } else {
            self.p.given[self.r.random_range(0..self.p.given.len())].clone()
        };
        (f, fk, g, gk)
    }
    /// A patient or family member in one of many written forms.
    fn person(&mut self, b: &mut B) {
        let (f, fk, g, gk) = self.name();
        match self.r.random_range(0..9) {
            0 => b.t(&format!("{f} {g}"), Tag::Person),
            1 => b.t(&format!("{f}{g}"), Tag::Person).s("様"),
            2 => b.t(&format!("{f}　{g}"), Tag::Person).s(" 殿"),
            3 => b.t(&half_kana(&format!("{fk} {gk}")), Tag::Person),
            4 => b.t(&format!("{fk}・{gk}"), Tag::Person),
            5 => b.t(&f, Tag::Person).s("氏"),
            6 => b.t(&format!("{} {}", self.pick(&ROMAJI), self.pick(&ROMAJI_GIVEN)), Tag::Person),
            7 => b.t(&format!("{f}{g}"), Tag::Person),
            _ => b.t(&format!("{f} {g}"), Tag::Person).s("さん"),
        };
    }
    fn family_member(&mut self, b: &mut B) {
        let rel = self.pick(&["長女", "長男", "次女", "妻", "夫", "姪", "義娘"]);
        let (f, _, g, _) = self.name();
        b.s(rel).s("（");
        if self.r.random_bool(0.5) {
            b.t(&g, Tag::Person).s("さん");
        } else {
            b.t(&format!("{f}{g}"), Tag::Person);
        }
        b.s("）");
    }
    fn doctor(&mut self, b: &mut B) {
        let (f, _, g, _) = self.name();
        match self.r.random_range(0..6) {
            0 => b.t(&format!("{f} {g}"), Tag::Person),
            1 => b.t(&f, Tag::Person).s(" Dr."),
            2 => b.s("Dr. ").t(self.pick(&ROMAJI), Tag::Person),
            3 => b.t(&format!("{f}{g}"), Tag::Person).s("（印）"),
            4 => b.t(&f, Tag::Person).s("先生"),
            _ => b.t(&f, Tag::Person),
        };
    }
    fn nurse(&mut self, b: &mut B) {
        let (f, _, _, _) = self.name();
        match self.r.random_range(0..3) {
            0 => b.s("Ns.").t(&f, Tag::Person),
            1 => b.t(&f, Tag::Person).s("Ns"),
            _ => b.s("担当看護師 ").t(&f, Tag::Person),
        };
    }
    fn date(&mut self, b: &mut B) {
        let y = self.year;
        let (m, d) = (self.r.random_range(1..=12), self.r.random_range(1..=28));
        let s = match self.r.random_range(0..9) {
            0 => format!("令和{}年{m}月{d}日", y - 2018),
            1 => format!("R{}/{m}/{d}", y - 2018),
            2 => format!("{y}.{m}.{d}"),
            3 => format!("{y}-{m:02}-{d:02}"),
            4 => format!("{m}月{d}日（{}）", self.pick(&["月", "火", "水", "木", "金", "土", "日"])),
            5 => format!("{y}年{m}月"),
            6 => format!("{m}月{}", self.pick(&["上旬", "中旬", "下旬", "末"])),
            7 => fullwidth(&format!("{y}/{m}/{d}")),
            _ => format!("令和{}年{m}月{d}日", y - 2018),
        };
        // The weekday in brackets belongs to the date but is not part of the gold span.
        if let Some(p) = s.find('（') {
            let (a, rest) = s.split_at(p);
            b.t(a, Tag::Time).s(rest);
        } else {
            b.t(&s, Tag::Time);
        }
    }
    fn rel(&mut self, b: &mut B) {
        let s = match self.r.random_range(0..8) {
            0 => format!("{}日後", self.r.random_range(2..10)),
            1 => "翌朝".to_owned(),
            2 => format!("{}ヶ月前", self.r.random_range(1..12)),
            3 => "一昨日".to_owned(),
            4 => "先月".to_owned(),
            5 => format!("{}年前", self.r.random_range(1..20)),
            6 => "今朝".to_owned(),
            _ => format!("{}週間後", self.r.random_range(1..5)),
        };
        b.t(&s, Tag::Time);
    }
    fn birth(&mut self, b: &mut B) {
        let (e, c, base) = [("昭和", 'S', 1925), ("平成", 'H', 1988), ("大正", 'T', 1911)][self.r.random_range(0..3)];
        let y = self.r.random_range(1..=(if c == 'T' { 14 } else { 60 }).min(if c == 'H' { 30 } else { 60 }));
        let (m, d) = (self.r.random_range(1..=12), self.r.random_range(1..=28));
        let _ = base;
        let s = match self.r.random_range(0..3) {
            0 => format!("{e}{y}年{m}月{d}日"),
            1 => format!("{c}{y}.{m:02}.{d:02}"),
            _ => format!("{e}{y}年{m}月{d}日生"),
        };
        if let Some(x) = s.strip_suffix('生') {
            b.t(x, Tag::Time).s("生");
        } else {
            b.t(&s, Tag::Time);
        }
    }
    fn age(&mut self, b: &mut B) {
        let a = if self.r.random_bool(0.25) { self.r.random_range(90..106) } else { self.r.random_range(20..90) };
        match self.r.random_range(0..4) {
            0 => b.t(&format!("{a}歳"), Tag::Age),
            1 => b.t(&format!("{a}才"), Tag::Age),
            2 => b.s("満").t(&format!("{a}歳"), Tag::Age),
            _ => b.t(&format!("{}代", (a / 10 * 10).min(90)), Tag::Age),
        };
    }
    fn sex(&mut self, b: &mut B) {
        b.t(self.pick(&["男性", "女性", "男", "女"]), Tag::Sex);
    }
    fn address(&mut self, b: &mut B) {
        let (pref, muni) = self.p.munis[self.r.random_range(0..self.p.munis.len())].clone();
        let (c, n, g) = (self.r.random_range(1..9), self.r.random_range(1..40), self.r.random_range(1..30));
        let town = self.pick(&TOWNS);
        let s = match self.r.random_range(0..9) {
            // Town only, as written when the city is obvious to the reader.
            6 => format!("{town}{c}丁目{n}-{g}"),
            7 => format!("{}{}番地", self.pick(&AZA), self.r.random_range(1..3000)),
            8 => format!("{town}{c}-{n}-{g}"),
            0 => format!("{muni}{town}{c}-{n}"),
            1 => format!("{pref}{muni}{}{}番地", self.pick(&AZA), self.r.random_range(100..3000)),
            2 => format!("{pref} {muni} {town}{c}丁目{n}番{g}号"),
            3 => format!("{muni}{town}{c}丁目{n}-{g} {}{}号室", self.pick(&["コーポ", "ハイツ"]), 101 + g),
            4 => fullwidth(&format!("{muni}{town}{c}-{n}-{g}")),
            _ => format!("{pref}{muni}{town}{}番地{}", self.r.random_range(1..999), self.r.random_range(1..20)),
        };
        b.t(&s, Tag::Location);
    }
    fn place(&mut self, b: &mut B) {
        let (pref, muni) = self.p.munis[self.r.random_range(0..self.p.munis.len())].clone();
        match self.r.random_range(0..3) {
            0 => b.t(&pref, Tag::Location),
            1 => b.t(&muni, Tag::Location),
            _ => b.t(&format!("{pref}{muni}"), Tag::Location),
        };
    }
    fn postal(&mut self, b: &mut B) {
        let s = format!("〒{:03}-{:04}", self.r.random_range(1..1000), self.r.random_range(0..10_000));
        b.t(&s, Tag::Location);
    }
    fn phone(&mut self, b: &mut B) {
        let (a, x, y) =
            (self.r.random_range(3..100), self.r.random_range(100..10_000), self.r.random_range(1000..10_000));
        let s = match self.r.random_range(0..5) {
            0 => format!("(0{a}){x}-{y}"),
            1 => format!("0{a}({x}){y}"),
            2 => format!("0{}0 {x:04} {y}", [7, 8, 9][self.r.random_range(0..3)]),
            3 => fullwidth(&format!("0{a}-{x}-{y}")),
            _ => format!("0{a}-{x}-{y}"),
        };
        b.t(&s, Tag::Phone);
    }
    fn hospital(&mut self, b: &mut B) {
        let (_, muni) = self.p.munis[self.r.random_range(0..self.p.munis.len())].clone();
        let stem = muni.trim_end_matches(['市', '区', '町', '村']).to_owned();
        let stem = stem.rsplit(['市', '郡']).next().unwrap_or(&stem).to_owned();
        let (f, _, _, _) = self.name();
        let name = match self.r.random_range(0..6) {
            0 => format!("医療法人社団{f}会 {f}{}", self.pick(&["クリニック", "医院", "病院"])),
            1 => format!("国立病院機構{stem}医療センター"),
            2 => format!("{stem}{}", self.pick(&HOSP_FORMS)),
            3 => format!("介護老人保健施設{}苑", self.pick(&["さくら", "あおい", "ひまわり", "やすらぎ"])),
            4 => format!("{f}{}", self.pick(&["内科", "眼科", "皮膚科", "整形外科", "小児科"])),
            _ => format!("{stem}{}", self.pick(&HOSP_FORMS)),
        };
        if self.r.random_bool(0.3) {
            b.t(&format!("{name} {}", self.pick(&DEPT)), Tag::Hospital);
        } else {
            b.t(&name, Tag::Hospital);
        }
    }
    fn id(&mut self, b: &mut B) {
        match self.r.random_range(0..5) {
            0 => b.s("ID:").t(&format!("{:07}", self.r.random_range(0..10_000_000u32)), Tag::Id),
            1 => {
                b.s("病理番号 ").t(&format!("P{}-{:05}", self.year % 100, self.r.random_range(0..100_000u32)), Tag::Id)
            }
            2 => b.s("患者番号：").t(&format!("{:010}", self.r.random_range(0..4_000_000_000u32)), Tag::Id),
            3 => b
                .s("被保険者証 記号 ")
                .t(&format!("{}", self.r.random_range(10..999)), Tag::Id)
                .s(" 番号 ")
                .t(&format!("{}", self.r.random_range(1..99_999)), Tag::Id),
            _ => {
                let m = my_number(&mut self.r);
                b.s("マイナンバー ").t(&m, Tag::Id)
            }
        };
    }
    fn finance(&mut self, b: &mut B) {
        if self.r.random_bool(0.5) {
            let c = luhn_number(&mut self.r);
            b.s("カード：").t(&c, Tag::Financial).s("。");
        } else {
            let (_, muni) = self.p.munis[self.r.random_range(0..self.p.munis.len())].clone();
            let stem = muni.trim_end_matches(['市', '区', '町', '村']).to_owned();
            b.s("振込先 ").t(&format!("{stem}信用金庫"), Tag::Financial).s(" ");
            b.s("当座 ").t(&format!("{:07}", self.r.random_range(0..10_000_000u32)), Tag::Financial).s("。");
        }
    }
    fn contact(&mut self, b: &mut B) {
        let u = self.pick(&ROMAJI).to_lowercase();
        if self.r.random_bool(0.5) {
            b.s("E-mail ").t(&format!("{u}.{}@mail.example.ne.jp", self.r.random_range(1..99)), Tag::Contact);
        } else {
            b.s("HP: ").t(&format!("http://{u}-iin.example.jp/"), Tag::Contact);
        }
    }
    fn clinical(&mut self, b: &mut B) {
        b.s(self.pick(&CLINICAL));
    }
}

fn summary(g: &mut G, b: &mut B) {
    b.s("退院サマリ\n■患者：");
    g.person(b);
    b.s("（");
    g.age(b);
    b.s("・");
    g.sex(b);
    b.s("）");
    g.id(b);
    b.s("\n■生年月日：");
    g.birth(b);
    b.s("\n■住所：");
    g.postal(b);
    b.s(" ");
    g.address(b);
    b.s("\n■連絡先：");
    g.phone(b);
    b.s("\n■入院期間：");
    g.date(b);
    b.s("〜");
    g.date(b);
    b.s("\n■担当医：");
    g.doctor(b);
    b.s("　■記載：");
    g.doctor(b);
    b.s("\n経過：");
    g.rel(b);
    b.s("より食思不振。");
    g.clinical(b);
    g.clinical(b);
    g.family_member(b);
    b.s("が付き添い。");
    g.place(b);
    b.s("の施設に入所予定。退院後は");
    g.hospital(b);
    b.s("へ通院。");
    if g.r.random_bool(0.3) {
        g.finance(b);
    }
    b.s("\n");
}

fn pathology(g: &mut G, b: &mut B) {
    b.s("病理組織診断報告書\n");
    g.id(b);
    b.s("　受付日 ");
    g.date(b);
    b.s("\n依頼元：");
    g.hospital(b);
    b.s("　依頼医：");
    g.doctor(b);
    b.s("\n患者名：");
    g.person(b);
    b.s("　");
    g.age(b);
    b.s(" ");
    g.sex(b);
    b.s("\n臨床診断：胃癌疑い。");
    g.clinical(b);
    b.s("\n所見：");
    g.clinical(b);
    g.clinical(b);
    b.s("\n診断医：");
    g.doctor(b);
    b.s("（");
    g.date(b);
    b.s("）\n");
}

fn letter(g: &mut G, b: &mut B) {
    g.hospital(b);
    b.s("\n");
    g.doctor(b);
    b.s(" 御机下\n\n");
    g.date(b);
    b.s("\n");
    g.hospital(b);
    b.s("　");
    g.doctor(b);
    b.s("\n〒");
    let pc = format!("{:03}-{:04}", g.r.random_range(1..1000), g.r.random_range(0..10_000));
    b.t(&pc, Tag::Location).s(" ");
    g.address(b);
    b.s("　TEL ");
    g.phone(b);
    b.s("　FAX ");
    g.phone(b);
    b.s("\n\n患者 ");
    g.person(b);
    b.s("（");
    g.birth(b);
    b.s("生、");
    g.age(b);
    b.s("）\n");
    g.rel(b);
    b.s("より当科通院中の方です。");
    g.clinical(b);
    b.s("ご本人は");
    g.place(b);
    b.s("への転居を希望されており、貴院での加療をお願い申し上げます。");
    if g.r.random_bool(0.3) {
        g.contact(b);
    }
    b.s("\n");
}

fn nursing(g: &mut G, b: &mut B) {
    b.s("看護記録　");
    g.date(b);
    b.s(" ");
    let h = g.r.random_range(0..24);
    b.t(&format!("{h}:{:02}", g.r.random_range(0..60)), Tag::Time);
    b.s("\n");
    g.nurse(b);
    b.s("\n#1 転倒リスク\nS：「");
    g.place(b);
    b.s("の家に帰りたい」\nO：");
    g.clinical(b);
    g.clinical(b);
    b.s("\nA：");
    g.rel(b);
    b.s("と比べ落ち着いている。");
    g.family_member(b);
    b.s("面会あり、");
    g.phone(b);
    b.s("へ連絡。\nP：継続。");
    if g.r.random_bool(0.3) {
        b.s("申し送り：");
        g.person(b);
        b.s("と同室。");
    }
    b.s("\n");
}

/// Surnames in no name list kiban has (kiban-model's, IPADIC's): the detector can only find them
/// from their shape and position.
const UNLISTED_FAMILY: [&str; 10] =
    ["百目鬼", "薬袋", "月見里", "一尺八寸", "四月一日", "勘解由小路", "御薬袋", "穂積谷", "鵜殿原", "左右来"];
/// Given names in no name list.
const UNLISTED_GIVEN: [&str; 8] = ["紗耶", "澪士", "燈真", "凪咲", "瑛麻", "颯汰朗", "玖瑠", "葵衣"];
/// Foreign names written in katakana only (interpreters, patients from abroad, family).
const FOREIGN: [&str; 10] = [
    "マリア・サントス",
    "グエン・ティ・ラン",
    "ヴィクトル・ミハイロフ",
    "アナ・ミハイロワ",
    "ラジェシュ・クマール",
    "チェン・メイリン",
    "ファティマ・ハサン",
    "ジョアン・ペレイラ",
    "ルシア・ゴメス",
    "アフマド・ラフマン",
];

/// A section with names in no list and weak context, appended to every fifth note from its own
/// random stream (the rest of the note is as before): foreign katakana names, unlisted surnames
/// before 様/氏/さん, signature lines, and names in a table.
fn unlisted_names(r: &mut Rng8, b: &mut B) {
    let pick = |r: &mut Rng8, v: &[&'static str]| v[r.random_range(0..v.len())];
    let f = pick(r, &UNLISTED_FAMILY);
    let g = pick(r, &UNLISTED_GIVEN);
    match r.random_range(0..3) {
        0 => b.s("通訳：").t(pick(r, &FOREIGN), Tag::Person).s(" 同席。"),
        1 => b.s("通訳の").t(pick(r, &FOREIGN), Tag::Person).s("さんを介して説明。"),
        _ => b.s("付き添い ").t(pick(r, &FOREIGN), Tag::Person).s("（友人）。"),
    };
    match r.random_range(0..3) {
        0 => b.t(f, Tag::Person).s("様より電話あり。"),
        1 => b.s("隣人の").t(f, Tag::Person).s("氏が発見。"),
        _ => b.t(f, Tag::Person).s("さんに内服を確認。"),
    };
    match r.random_range(0..4) {
        0 => b.s("\n| 氏名 | ").t(&format!("{f} {g}"), Tag::Person).s(" |\n"),
        1 => b.s("\n（文責：").t(&format!("{f} {g}"), Tag::Person).s("）\n"),
        2 => b.s("\n記載者：").t(&format!("{f}{g}"), Tag::Person).s("\n"),
        _ => b.s("\n").t(&format!("{f} {g}"), Tag::Person).s(" 拝\n"),
    };
}

/// Generates `n` held-out notes deterministically from `seed` (styles differ from [`crate::textgen::generate`]).
pub fn generate(seed: u64, n: usize) -> Vec<Note> {
    let p = pools();
    let mut g = G { p: &p, r: Rng8::seed_from_u64(seed ^ 0x5eed_4e1d), year: 2024 };
    (0..n)
        .map(|i| {
            g.year = 2020 + (i % 6) as i32;
            let mut b = B { text: String::new(), gold: Vec::new() };
            match g.r.random_range(0..4) {
                0 => summary(&mut g, &mut b),
                1 => pathology(&mut g, &mut b),
                2 => letter(&mut g, &mut b),
                _ => nursing(&mut g, &mut b),
            }
            if i % 5 == 4 {
                let mut r = Rng8::seed_from_u64(seed ^ 0x0a11_57ed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                unlisted_names(&mut r, &mut b);
            }
            b.gold.sort_by_key(|s| s.start);
            Note { text: b.text, gold: b.gold }
        })
        .collect()
}
