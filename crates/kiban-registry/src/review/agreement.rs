//! Agreements with users (R3, R4, R11), joint-use agreements (R8), transfer contracts between
//! creators (R10), and fees (D5).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::application::{ApplicantType, Application, FeeExemption, PrecheckFailure, ProvisionMethod};

/// The user's certification (R4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserType {
    /// Ⅰ型: may store the data in its own controlled area.
    TypeI,
    /// Ⅱ型: uses it only in the creator's Visiting environment (on-site or VDI).
    TypeII,
    /// A user of anonymized data (R11): not certified; the contract fixes use and security.
    AnonymizedUser,
}

/// The R3 terms of an agreement with a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// The user's name.
    pub user_name: String,
    /// The user's address.
    pub user_address: String,
    /// What identifies the user (corporate number, certification number).
    pub user_detail: String,
    /// Type I / Type II / anonymized-data user.
    pub user_type: UserType,
    /// 利用目的.
    pub purpose: String,
    /// 利用範囲: handlers (names).
    pub handlers: Vec<String>,
    /// 利用範囲: places (place ids).
    pub places: Vec<String>,
    /// 利用内容: items provided.
    pub items: Vec<String>,
    /// 提供方法.
    pub method: ProvisionMethod,
    /// 利用形態: own tools may be brought in.
    pub own_tools_allowed: bool,
    /// 利用形態: own data may be combined.
    pub own_data_allowed: bool,
    /// 利用形態: how outputs (incl. intermediate ones) may leave.
    pub output_takeout: String,
    /// Last day of use.
    pub period_end: NaiveDate,
    /// End-of-use measures (deletion, disposal).
    pub end_of_use: String,
    /// Supervision (periodic audits, reports).
    pub supervision: String,
    /// Joint use allowed only under a joint-use agreement (R8).
    pub joint_use: String,
    /// Measures and sanctions on breach (R14).
    pub breach_measures: String,
    /// R11: the manner of use and security fit the degree of anonymization/pseudonymization.
    pub security_fit: String,
    /// Signed on.
    pub signed_on: NaiveDate,
}

fn need(v: &mut Vec<PrecheckFailure>, ok: bool, field: &str, rule: &'static str, msg: &str) {
    if !ok {
        v.push(PrecheckFailure { field: field.to_owned(), rule: rule.into(), message: msg.to_owned() });
    }
}

impl Agreement {
    /// Checks the R3/R4/R11 terms against the approved application; empty when complete.
    pub fn check(&self, app: &Application) -> Vec<PrecheckFailure> {
        let mut v = Vec::new();
        for (f, s) in [
            ("user_name", &self.user_name),
            ("user_address", &self.user_address),
            ("purpose", &self.purpose),
            ("output_takeout", &self.output_takeout),
            ("end_of_use", &self.end_of_use),
            ("supervision", &self.supervision),
            ("joint_use", &self.joint_use),
            ("breach_measures", &self.breach_measures),
        ] {
            need(&mut v, !s.trim().is_empty(), f, "R3", "this term must be fixed in the agreement");
        }
        need(
            &mut v,
            !self.security_fit.trim().is_empty(),
            "security_fit",
            "R11",
            "say how use and security fit the processing",
        );
        need(&mut v, !self.items.is_empty(), "items", "R3", "the items provided must be listed");
        for h in &self.handlers {
            need(
                &mut v,
                app.handlers.iter().any(|x| &x.name == h),
                "handlers",
                "R3",
                "every handler must be an approved handler",
            );
        }
        for p in &self.places {
            need(
                &mut v,
                app.places.iter().any(|x| &x.place_id == p),
                "places",
                "R3",
                "every place must be an approved place",
            );
        }
        need(
            &mut v,
            self.period_end <= app.usage_to,
            "period_end",
            "R3",
            "the agreed period ends after the approved usage period",
        );
        if self.user_type == UserType::TypeII {
            need(
                &mut v,
                matches!(self.method, ProvisionMethod::Vdi | ProvisionMethod::OnSite),
                "method",
                "R4",
                "a Type II user uses the data only in the Visiting environment (VDI or on-site)",
            );
        }
        v
    }
}

/// One party of a joint use (R8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JointParty {
    /// Name.
    pub name: String,
    /// Manager.
    pub manager: String,
    /// Contact.
    pub contact: String,
    /// Address.
    pub address: String,
}

/// A joint-use agreement among certified users and the creator: the seven items of R8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JointUseAgreement {
    /// ① who uses it (parties) …
    pub parties: Vec<JointParty>,
    /// ① … and which items.
    pub items: Vec<String>,
    /// ② the party responsible.
    pub responsible_party: String,
    /// ④ handling rules.
    pub handling_rules: String,
    /// ⑤ measures on breach.
    pub breach_measures: String,
    /// ⑥ incident reporting.
    pub incident_reporting: String,
    /// ⑦ the end procedure.
    pub end_procedure: String,
    /// Every party and the creator agreed.
    pub all_parties_and_creator_agreed: bool,
}

impl JointUseAgreement {
    /// R8 checks (③ each party's manager, contact and address is checked per party).
    pub fn check(&self) -> Vec<PrecheckFailure> {
        let mut v = Vec::new();
        need(&mut v, self.parties.len() >= 2, "parties", "R8", "a joint use has at least two users");
        need(&mut v, !self.items.is_empty(), "items", "R8", "the items used jointly must be listed");
        need(
            &mut v,
            self.parties.iter().any(|p| p.name == self.responsible_party),
            "responsible_party",
            "R8",
            "the responsible party must be one of the parties",
        );
        for (i, p) in self.parties.iter().enumerate() {
            if p.manager.trim().is_empty() || p.contact.trim().is_empty() || p.address.trim().is_empty() {
                v.push(PrecheckFailure {
                    field: format!("parties[{i}]"),
                    rule: "R8".into(),
                    message: "each party needs a manager, a contact and an address".into(),
                });
            }
        }
        for (f, s) in [
            ("handling_rules", &self.handling_rules),
            ("breach_measures", &self.breach_measures),
            ("incident_reporting", &self.incident_reporting),
            ("end_procedure", &self.end_procedure),
        ] {
            need(&mut v, !s.trim().is_empty(), f, "R8", "this item must be agreed");
        }
        need(
            &mut v,
            self.all_parties_and_creator_agreed,
            "all_parties_and_creator_agreed",
            "R8",
            "all parties and the creator must agree",
        );
        v
    }
}

/// A party of a transfer between creators (R10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatorParty {
    /// Name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Representative.
    pub representative: String,
}

/// A written contract for a transfer of medical information between creators (R10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferContract {
    /// The giving creator.
    pub from: CreatorParty,
    /// The receiving creator.
    pub to: CreatorParty,
    /// Items.
    pub items: Vec<String>,
    /// Method.
    pub method: String,
    /// Signed on.
    pub signed_on: NaiveDate,
}

impl TransferContract {
    /// R10 checks.
    pub fn check(&self) -> Vec<PrecheckFailure> {
        let mut v = Vec::new();
        for (side, p) in [("from", &self.from), ("to", &self.to)] {
            if p.name.trim().is_empty() || p.address.trim().is_empty() || p.representative.trim().is_empty() {
                v.push(PrecheckFailure {
                    field: side.to_owned(),
                    rule: "R10".into(),
                    message: "name, address and representative of both parties are required".into(),
                });
            }
        }
        need(&mut v, !self.items.is_empty(), "items", "R10", "the items must be listed");
        need(&mut v, !self.method.trim().is_empty(), "method", "R10", "the method must be stated");
        v
    }
}

/// Why a fee is waived (D5), or None when it is due.
pub fn fee_exemption(app: &Application) -> Option<&'static str> {
    if !app.applicants.is_empty() && app.applicants.iter().all(|a| a.applicant_type == ApplicantType::PublicBody) {
        return Some("提供申出者のすべてが公的機関");
    }
    match app.fee_exemption {
        FeeExemption::Subsidy => Some("補助金等を充てて利用する者"),
        FeeExemption::ContractorOfExempt => Some("公的機関又は補助金等を充てる者から委託を受けた者"),
        FeeExemption::PublicBody | FeeExemption::None => None,
    }
}

/// Fee = hourly rate × hours (D5); zero when exempt. Hours are in minutes for exactness.
pub fn fee_yen(hourly_rate_yen: u64, minutes: u64, exempt: bool) -> u64 {
    if exempt { 0 } else { (hourly_rate_yen * minutes).div_ceil(60) }
}

/// A complete fictional agreement for an application (tests and the demo).
pub fn sample_agreement_for(app: &Application) -> Agreement {
    Agreement {
        user_name: "架空大学".into(),
        user_address: "東京都千代田区架空町1-1".into(),
        user_detail: "法人番号 1234567890123".into(),
        user_type: UserType::TypeI,
        purpose: app.plan.title.clone(),
        handlers: app.handlers.iter().map(|h| h.name.clone()).collect(),
        places: app.places.iter().map(|p| p.place_id.clone()).collect(),
        items: app.extraction.items.iter().map(|i| i.item.clone()).collect(),
        method: app.provision_method,
        own_tools_allowed: true,
        own_data_allowed: false,
        output_takeout: "公表物確認の後に限る".into(),
        period_end: app.usage_to,
        end_of_use: "消去し証明書を提出".into(),
        supervision: "年1回の監査".into(),
        joint_use: "共同利用契約による".into(),
        breach_measures: "利用停止・氏名公表".into(),
        security_fit: "仮名加工の程度に応じた安全管理".into(),
        signed_on: app.usage_from,
    }
}

#[cfg(test)]
mod tests {
    use super::super::application::sample_application;
    use super::*;

    fn sample_agreement() -> Agreement {
        sample_agreement_for(&sample_application())
    }

    #[test]
    fn r3_complete_agreement_passes_and_missing_terms_are_named() {
        let app = sample_application();
        assert_eq!(sample_agreement().check(&app), vec![]);
        let mut a = sample_agreement();
        a.breach_measures.clear();
        a.handlers.push("部外者".into());
        let v = a.check(&app);
        assert_eq!(v.iter().map(|f| f.field.as_str()).collect::<Vec<_>>(), ["breach_measures", "handlers"]);
    }

    #[test]
    fn r11_an_agreement_without_security_fitting_the_processing_is_refused_naming_r11() {
        let mut a = sample_agreement();
        a.user_type = UserType::AnonymizedUser;
        a.security_fit = "  ".into();
        let v = a.check(&sample_application());
        assert_eq!(
            v.iter().map(|f| (f.field.as_str(), f.rule.as_str())).collect::<Vec<_>>(),
            [("security_fit", "R11")]
        );
        a.security_fit = "匿名加工の程度に応じ、照合禁止・安全管理措置を契約で定める".into();
        assert_eq!(a.check(&sample_application()), vec![]);
    }

    #[test]
    fn r4_type_ii_user_only_in_the_visiting_environment() {
        let mut a = sample_agreement();
        a.user_type = UserType::TypeII;
        assert_eq!(a.check(&sample_application())[0].rule, "R4");
        a.method = ProvisionMethod::Vdi;
        assert_eq!(a.check(&sample_application()), vec![]);
    }

    #[test]
    fn r8_joint_use_needs_the_seven_items() {
        let p = |n: &str| JointParty {
            name: n.into(),
            manager: "管理者".into(),
            contact: "03".into(),
            address: "東京".into(),
        };
        let mut j = JointUseAgreement {
            parties: vec![p("A"), p("B")],
            items: vec!["sex".into()],
            responsible_party: "A".into(),
            handling_rules: "規程".into(),
            breach_measures: "停止".into(),
            incident_reporting: "即時報告".into(),
            end_procedure: "消去".into(),
            all_parties_and_creator_agreed: true,
        };
        assert_eq!(j.check(), vec![]);
        j.responsible_party = "C".into();
        j.all_parties_and_creator_agreed = false;
        j.parties[1].address.clear();
        let f: Vec<_> = j.check().into_iter().map(|f| f.field).collect();
        assert_eq!(f, ["responsible_party", "parties[1]", "all_parties_and_creator_agreed"]);
    }

    #[test]
    fn r10_transfer_contract_names_both_parties() {
        let c = CreatorParty { name: "X".into(), address: "Y".into(), representative: "Z".into() };
        let mut t = TransferContract {
            from: c.clone(),
            to: c,
            items: vec!["a".into()],
            method: "専用線".into(),
            signed_on: NaiveDate::MIN,
        };
        assert_eq!(t.check(), vec![]);
        t.to.representative.clear();
        assert_eq!(t.check()[0].field, "to");
    }

    #[test]
    fn d5_fee_is_rate_times_hours_unless_exempt() {
        let mut app = sample_application();
        assert_eq!(fee_exemption(&app), None);
        assert_eq!(fee_yen(8_000, 90, false), 12_000);
        app.fee_exemption = FeeExemption::Subsidy;
        assert!(fee_exemption(&app).is_some());
        app.fee_exemption = FeeExemption::PublicBody; // claimed, but the applicant is a legal person
        assert_eq!(fee_exemption(&app), None);
        app.applicants[0].applicant_type = ApplicantType::PublicBody;
        assert!(fee_exemption(&app).is_some());
        assert_eq!(fee_yen(8_000, 90, true), 0);
    }
}
