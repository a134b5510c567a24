//! Applications for provision (提供申出, D1) and the automatic pre-checks run before the committee
//! sees one (D2, D4). Both kinds (pseudonymized data, claims-style anonymized data) share one struct;
//! the kind decides which rules apply.

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

/// Which data an application asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationKind {
    /// 仮名加工医療情報 to a certified user.
    Pseudonymized,
    /// 匿名加工医療情報 in the claims-database style (004).
    Anonymized,
}

/// Who applies (004 第3-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicantType {
    /// 公的機関 (national or local government).
    PublicBody,
    /// 法人等 (university, research agency, company).
    LegalPerson,
    /// 個人 funded by a subsidy.
    Individual,
}

/// The five purposes i)–v) (004 第3-5(4)②).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// i) 医療分野の研究開発に資する分析.
    I,
    /// ii) 適正な保健医療サービスの提供に資する施策の企画及び立案に関する調査.
    Ii,
    /// iii) 疾病の原因並びに疾病の予防、診断及び治療の方法に関する研究.
    Iii,
    /// iv) 保健医療の経済性、効率性及び有効性に関する研究.
    Iv,
    /// v) 上記i)～iv)に準ずるものであって国民保健の向上に特に資する業務.
    V,
}

impl Purpose {
    /// Japanese text of the purpose.
    pub fn ja(self) -> &'static str {
        match self {
            Purpose::I => "i) 医療分野の研究開発に資する分析",
            Purpose::Ii => "ii) 適正な保健医療サービスの提供に資する施策の企画及び立案に関する調査",
            Purpose::Iii => "iii) 疾病の原因並びに疾病の予防、診断及び治療の方法に関する研究",
            Purpose::Iv => "iv) 保健医療の経済性、効率性及び有効性に関する研究",
            Purpose::V => "v) i)～iv)に準ずるものであって国民保健の向上に特に資する業務",
        }
    }
}

/// A person who deals with the application: the contact person (担当者) or the proxy (代理人).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Name.
    pub name: String,
    /// Birth date.
    pub birth_date: NaiveDate,
    /// Address.
    pub address: String,
    /// Occupation.
    pub occupation: String,
    /// Affiliation (organisation, department, title).
    pub affiliation: String,
    /// Phone.
    pub phone: String,
    /// Email.
    pub email: String,
    /// The identity document shown (マイナンバーカード, 運転免許証 …).
    pub id_document: String,
}

/// The applicant (提供申出者).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applicant {
    /// Public body, legal person or individual.
    pub applicant_type: ApplicantType,
    /// Name of the body or person.
    pub name: String,
    /// Address (所在地).
    pub address: String,
    /// Corporate number (法人番号), legal persons only.
    #[serde(default)]
    pub corporate_number: Option<String>,
    /// Representative (代表者) name and title.
    pub representative: String,
    /// Phone.
    pub phone: String,
}

/// Research plan (研究計画, 004 第3-5(4)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResearchPlan {
    /// ① Title.
    pub title: String,
    /// ② Which of i)–v) (the main one).
    pub purpose: Purpose,
    /// ② Background, aim, expected effect.
    pub need: String,
    /// ③ Population (inclusion/exclusion).
    pub population: String,
    /// ③ Design (PECO, statistics).
    pub design: String,
    /// ③ Extraction conditions.
    pub extraction_conditions: String,
    /// ③ Endpoints.
    pub endpoints: String,
    /// ③ Expected results and their significance.
    pub expected_results: String,
    /// ④ Schedule.
    pub schedule: String,
    /// ⑤ Databases linked, if any.
    #[serde(default)]
    pub linkage: Vec<String>,
    /// ⑥ Outsourcing: scope and reason, if any.
    #[serde(default)]
    pub outsourcing: Option<String>,
    /// ⑦ Handlers' record.
    pub handlers_record: String,
    /// Marketing use (D2: not allowed).
    #[serde(default)]
    pub marketing: bool,
}

/// A place of use or storage (⑨, domestic only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// Short id used by handlers and media.
    pub place_id: String,
    /// Address.
    pub address: String,
    /// ISO 3166 country code ("JP").
    pub country: String,
    /// How the PC and storage are managed.
    pub management: String,
}

/// A handler (取扱者, 004 第3-5(5)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handler {
    /// Name.
    pub name: String,
    /// Affiliation.
    pub affiliation: String,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Phone.
    #[serde(default)]
    pub phone: String,
    /// Email.
    #[serde(default)]
    pub email: String,
    /// Place of use (a `Place::place_id`).
    pub place_id: String,
    /// Role (analysis done).
    pub role: String,
    /// Data granularity handled.
    pub granularity: String,
}

/// An item (column) requested, with the reason it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedItem {
    /// Item name.
    pub item: String,
    /// Why it is needed.
    pub reason: String,
}

/// The extraction specification (抽出データ, 004 第3-5(6)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractionSpec {
    /// Data kinds (receipts, DPC …).
    pub data_kinds: Vec<String>,
    /// Extraction period start.
    pub period_from: NaiveDate,
    /// Extraction period end.
    pub period_to: NaiveDate,
    /// Conditions.
    pub conditions: String,
    /// Items requested with reasons.
    pub items: Vec<RequestedItem>,
    /// Why the data is minimal.
    pub minimality_reason: String,
    /// Regional-analysis justification for restricted items (D2).
    #[serde(default)]
    pub regional_analysis_justification: Option<String>,
}

/// One planned publication (成果の公表予定).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPublication {
    /// Method (paper, report, conference).
    pub method: String,
    /// Venue.
    pub venue: String,
    /// Content.
    pub content: String,
    /// Planned date.
    pub planned_on: NaiveDate,
}

/// How data is provided (R3, D1 (8)①).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionMethod {
    /// 電気通信による方法.
    Network,
    /// 可搬記録媒体.
    PortableMedia,
    /// VDI 接続基盤.
    Vdi,
    /// オンサイトセンター.
    OnSite,
}

impl ProvisionMethod {
    /// Japanese label.
    pub fn ja(self) -> &'static str {
        match self {
            ProvisionMethod::Network => "電気通信による方法",
            ProvisionMethod::PortableMedia => "可搬記録媒体",
            ProvisionMethod::Vdi => "VDI接続基盤",
            ProvisionMethod::OnSite => "オンサイトセンター",
        }
    }
}

/// Fee exemption claimed (D5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeeExemption {
    /// No exemption claimed.
    None,
    /// Every applicant is a public body.
    PublicBody,
    /// Funded by a qualifying subsidy.
    Subsidy,
    /// A contractor of one of those.
    ContractorOfExempt,
}

/// An application (提供申出書), one per purpose (D1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// Pseudonymized or anonymized data.
    pub kind: ApplicationKind,
    /// (1) The applicant and handlers accept the guideline.
    pub accepts_guideline: bool,
    /// (2) Contact person.
    pub contact: Person,
    /// (2) Proxy, if any.
    #[serde(default)]
    pub proxy: Option<Person>,
    /// (3) Applicants (one or more, incl. outsourcing contractors).
    pub applicants: Vec<Applicant>,
    /// (4) Research plan.
    pub plan: ResearchPlan,
    /// (4)⑧ First day of use.
    pub usage_from: NaiveDate,
    /// (4)⑧ Last day of use.
    pub usage_to: NaiveDate,
    /// (4)⑨ Places of use and storage.
    pub places: Vec<Place>,
    /// (5) Handlers.
    pub handlers: Vec<Handler>,
    /// (6) Extraction.
    pub extraction: ExtractionSpec,
    /// (7) Publications.
    pub publications: Vec<PlannedPublication>,
    /// (8)① Method.
    pub provision_method: ProvisionMethod,
    /// (8)① Number of media (提供ファイル数), normally the number of places of use.
    pub media_count: u32,
    /// (8)② Fee exemption claimed.
    pub fee_exemption: FeeExemption,
    /// (8)③ Past and current use, and past sanctions.
    #[serde(default)]
    pub past_use: String,
}

/// Items withheld unless needed for regional analysis (D2).
pub const RESTRICTED_ITEMS: [&str; 4] = ["insurer_number", "facility_code", "patient_residence", "doctor_code"];

/// The longest usage period in months (D4).
pub const MAX_USAGE_MONTHS: u32 = 24;

/// One failed pre-check: the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrecheckFailure {
    /// The field (dotted path into the application).
    pub field: String,
    /// The requirement id.
    pub rule: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for PrecheckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (rule {})", self.field, self.message, self.rule)
    }
}

fn fail(v: &mut Vec<PrecheckFailure>, field: impl Into<String>, rule: &'static str, message: impl Into<String>) {
    v.push(PrecheckFailure { field: field.into(), rule: rule.into(), message: message.into() });
}

/// The last allowed day of a usage period starting on `from` (24 months, D4).
pub fn max_usage_end(from: NaiveDate) -> NaiveDate {
    from.checked_add_months(Months::new(MAX_USAGE_MONTHS)).and_then(|d| d.pred_opt()).expect("date in range")
}

/// The automatic pre-checks (D1, D2, D4). `contact_has_other_open` says whether the contact person
/// is the contact of another application not yet ended. Returns every failure (empty when clean).
pub fn precheck(app: &Application, contact_has_other_open: bool) -> Vec<PrecheckFailure> {
    let mut v = Vec::new();
    if !app.accepts_guideline {
        fail(&mut v, "accepts_guideline", "D1", "the applicant must accept the guideline");
    }
    if app.applicants.is_empty() {
        fail(&mut v, "applicants", "D1", "at least one applicant is required");
    }
    if app.usage_to < app.usage_from {
        fail(&mut v, "usage_to", "D4", "the usage period ends before it starts");
    } else if app.usage_to > max_usage_end(app.usage_from) {
        fail(
            &mut v,
            "usage_to",
            "D4",
            format!(
                "the usage period is at most {MAX_USAGE_MONTHS} months (last allowed day {})",
                max_usage_end(app.usage_from)
            ),
        );
    }
    if contact_has_other_open {
        fail(&mut v, "contact.name", "D2", "the contact person is already the contact of another open application");
    }
    if app.plan.marketing {
        fail(&mut v, "plan.marketing", "D2", "use for advertising or marketing is not allowed");
    }
    for (i, it) in app.extraction.items.iter().enumerate() {
        if RESTRICTED_ITEMS.contains(&it.item.as_str())
            && app.extraction.regional_analysis_justification.as_deref().is_none_or(|s| s.trim().is_empty())
        {
            fail(
                &mut v,
                format!("extraction.items[{i}].item"),
                "D2",
                format!("{} is withheld unless justified for regional analysis", it.item),
            );
        }
        if it.reason.trim().is_empty() {
            fail(&mut v, format!("extraction.items[{i}].reason"), "D2", "each item needs a reason (minimality)");
        }
    }
    if app.extraction.minimality_reason.trim().is_empty() {
        fail(&mut v, "extraction.minimality_reason", "D1", "say why the data requested is minimal");
    }
    if app.publications.is_empty() {
        fail(&mut v, "publications", "D2", "a dated publication plan is required");
    }
    for (i, p) in app.publications.iter().enumerate() {
        if p.planned_on < app.usage_from || p.planned_on > app.usage_to {
            fail(
                &mut v,
                format!("publications[{i}].planned_on"),
                "D2",
                format!("{} is outside the usage period {}..{}", p.planned_on, app.usage_from, app.usage_to),
            );
        }
    }
    if app.handlers.is_empty() {
        fail(&mut v, "handlers", "D2", "every handler must be listed");
    }
    for (i, h) in app.handlers.iter().enumerate() {
        if h.name.trim().is_empty() || h.affiliation.trim().is_empty() {
            fail(&mut v, format!("handlers[{i}]"), "D2", "each handler needs a name and an affiliation");
        }
        if !app.places.iter().any(|p| p.place_id == h.place_id) {
            fail(&mut v, format!("handlers[{i}].place_id"), "D2", format!("place {:?} is not declared", h.place_id));
        }
    }
    if app.places.is_empty() {
        fail(&mut v, "places", "D1", "at least one place of use is required");
    }
    for (i, p) in app.places.iter().enumerate() {
        if p.country != "JP" {
            fail(
                &mut v,
                format!("places[{i}].country"),
                "D1",
                format!("places of use are domestic only (got {})", p.country),
            );
        }
    }
    if app.provision_method == ProvisionMethod::PortableMedia && app.media_count as usize > app.places.len() {
        fail(&mut v, "media_count", "D6", "one medium per place of use");
    }
    v
}

/// A change requested after approval (D4, 004 第5-5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum Change {
    /// Department, contact or surname change within the same applicant.
    DepartmentOrContact,
    /// A handler is removed.
    RemoveHandler {
        /// The handler's name.
        name: String,
    },
    /// Publication venue or form.
    PublicationVenue,
    /// An extension.
    Extension {
        /// New last day.
        new_usage_to: NaiveDate,
        /// Analysis of individual records is finished and publication is pending.
        analysis_done: bool,
    },
    /// Security fix following an audit.
    AuditSecurityFix,
    /// Minor edit not affecting the basic policy.
    Minor,
    /// Purpose or requirements.
    Purpose,
    /// A handler is added.
    AddHandler {
        /// The new handler.
        handler: Handler,
    },
    /// A handler replaces another.
    ReplaceHandler {
        /// The handler leaving.
        old: String,
        /// The new handler.
        handler: Handler,
    },
    /// A handler moves to another applicant.
    AffiliationChange,
    /// New extraction conditions.
    NewExtraction,
}

/// What a change needs (D4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeClass {
    /// 職名等変更届出: notify only.
    NotifyOnly,
    /// 変更申出: the committee reviews again.
    ReReview,
}

/// Classifies a change (D4): extensions are notify-only only after analysis is done and for at most
/// 2 years per request; everything listed in 第5-5(2) is reviewed again.
pub fn classify_change(change: &Change, current_usage_to: NaiveDate) -> ChangeClass {
    match change {
        Change::DepartmentOrContact
        | Change::RemoveHandler { .. }
        | Change::PublicationVenue
        | Change::AuditSecurityFix
        | Change::Minor => ChangeClass::NotifyOnly,
        Change::Extension { new_usage_to, analysis_done } => {
            let limit = current_usage_to.checked_add_months(Months::new(24)).expect("date in range");
            if *analysis_done && *new_usage_to <= limit { ChangeClass::NotifyOnly } else { ChangeClass::ReReview }
        }
        Change::Purpose
        | Change::AddHandler { .. }
        | Change::ReplaceHandler { .. }
        | Change::AffiliationChange
        | Change::NewExtraction => ChangeClass::ReReview,
    }
}

/// A complete, clean sample application (tests, the demo and `kiban application template`).
pub fn sample_application() -> Application {
    let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).expect("valid date");
    let contact = Person {
        name: "合成 花子".into(),
        birth_date: d(1980, 5, 1),
        address: "東京都千代田区架空町1-1".into(),
        occupation: "研究者".into(),
        affiliation: "架空大学 医学部 准教授".into(),
        phone: "03-0000-0000".into(),
        email: "hanako@example.invalid".into(),
        id_document: "運転免許証".into(),
    };
    Application {
        kind: ApplicationKind::Pseudonymized,
        accepts_guideline: true,
        contact,
        proxy: None,
        applicants: vec![Applicant {
            applicant_type: ApplicantType::LegalPerson,
            name: "架空大学".into(),
            address: "東京都千代田区架空町1-1".into(),
            corporate_number: Some("1234567890123".into()),
            representative: "学長 架空 太郎".into(),
            phone: "03-0000-0001".into(),
        }],
        plan: ResearchPlan {
            title: "糖尿病患者の合併症発症要因を検証する研究".into(),
            purpose: Purpose::Iii,
            need: "合併症予防の施策に資する".into(),
            population: "2型糖尿病の成人患者".into(),
            design: "後ろ向きコホート研究、Cox回帰".into(),
            extraction_conditions: "ICD-10 E11 の傷病名を持つ者".into(),
            endpoints: "腎症の発症".into(),
            expected_results: "危険因子の同定".into(),
            schedule: "2026年7月～2027年12月".into(),
            linkage: vec![],
            outsourcing: None,
            handlers_record: "糖尿病疫学の論文10編".into(),
            marketing: false,
        },
        usage_from: d(2026, 7, 1),
        usage_to: d(2028, 6, 30),
        places: vec![Place {
            place_id: "p1".into(),
            address: "東京都千代田区架空町1-1 架空大学 研究棟301".into(),
            country: "JP".into(),
            management: "施錠された部屋、インターネット非接続の専用端末".into(),
        }],
        handlers: vec![Handler {
            name: "合成 花子".into(),
            affiliation: "架空大学".into(),
            title: "准教授".into(),
            phone: "03-0000-0000".into(),
            email: "hanako@example.invalid".into(),
            place_id: "p1".into(),
            role: "統計解析".into(),
            granularity: "個票".into(),
        }],
        extraction: ExtractionSpec {
            data_kinds: vec!["レセプト".into(), "DPC".into()],
            period_from: d(2020, 4, 1),
            period_to: d(2025, 3, 31),
            conditions: "E11 の傷病名".into(),
            items: vec![
                RequestedItem { item: "age_group".into(), reason: "層別解析".into() },
                RequestedItem { item: "sex".into(), reason: "調整変数".into() },
                RequestedItem { item: "diagnosis_code".into(), reason: "対象と転帰の特定".into() },
            ],
            minimality_reason: "解析に必要な項目に限定".into(),
            regional_analysis_justification: None,
        },
        publications: vec![PlannedPublication {
            method: "論文".into(),
            venue: "日本公衆衛生雑誌".into(),
            content: "合併症の危険因子".into(),
            planned_on: d(2028, 3, 31),
        }],
        provision_method: ProvisionMethod::PortableMedia,
        media_count: 1,
        fee_exemption: FeeExemption::None,
        past_use: "なし".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(v: &[PrecheckFailure]) -> Vec<(&str, &str)> {
        v.iter().map(|f| (f.field.as_str(), f.rule.as_str())).collect()
    }

    #[test]
    fn d1_sample_application_passes_and_round_trips_as_json() {
        let app = sample_application();
        assert_eq!(precheck(&app, false), vec![]);
        let json = serde_json::to_string(&app).unwrap();
        assert_eq!(serde_json::from_str::<Application>(&json).unwrap(), app);
    }

    #[test]
    fn d4_usage_period_over_24_months_names_the_field() {
        let mut app = sample_application();
        app.usage_to = NaiveDate::from_ymd_opt(2028, 7, 1).unwrap();
        assert_eq!(rules(&precheck(&app, false)), vec![("usage_to", "D4")]);
    }

    #[test]
    fn d2_each_precheck_names_field_and_rule() {
        let app = sample_application();
        assert_eq!(rules(&precheck(&app, true)), vec![("contact.name", "D2")]);
        let mut a = app.clone();
        a.extraction.items.push(RequestedItem { item: "patient_residence".into(), reason: "地域差".into() });
        assert_eq!(rules(&precheck(&a, false)), vec![("extraction.items[3].item", "D2")]);
        a.extraction.regional_analysis_justification = Some("二次医療圏別の地域差の分析".into());
        assert_eq!(precheck(&a, false), vec![]);
        let mut a = app.clone();
        a.publications[0].planned_on = NaiveDate::from_ymd_opt(2028, 12, 1).unwrap();
        assert_eq!(rules(&precheck(&a, false)), vec![("publications[0].planned_on", "D2")]);
        let mut a = app.clone();
        a.handlers[0].name = " ".into();
        assert_eq!(rules(&precheck(&a, false)), vec![("handlers[0]", "D2")]);
        let mut a = app.clone();
        a.places[0].country = "US".into();
        assert_eq!(rules(&precheck(&a, false)), vec![("places[0].country", "D1")]);
    }

    #[test]
    fn d4_changes_are_classified() {
        let to = NaiveDate::from_ymd_opt(2028, 6, 30).unwrap();
        assert_eq!(classify_change(&Change::PublicationVenue, to), ChangeClass::NotifyOnly);
        assert_eq!(classify_change(&Change::RemoveHandler { name: "x".into() }, to), ChangeClass::NotifyOnly);
        let h = sample_application().handlers[0].clone();
        assert_eq!(classify_change(&Change::AddHandler { handler: h }, to), ChangeClass::ReReview);
        let ext = |y, done| Change::Extension {
            new_usage_to: NaiveDate::from_ymd_opt(y, 6, 30).unwrap(),
            analysis_done: done,
        };
        assert_eq!(classify_change(&ext(2030, true), to), ChangeClass::NotifyOnly);
        assert_eq!(classify_change(&ext(2031, true), to), ChangeClass::ReReview, "more than 2 years per request");
        assert_eq!(classify_change(&ext(2029, false), to), ChangeClass::ReReview, "analysis still running");
    }
}
