//! The review committee (審査委員会, R1): members, terms, the composition rules and conflicts of interest.

use chrono::NaiveDate;
use kiban_model::person::Sex;
use serde::{Deserialize, Serialize};

/// A member's field (R1: natural science, humanities/social science, a lay voice for patients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expertise {
    /// 自然科学の有識者.
    NaturalScience,
    /// 人文・社会科学の有識者.
    HumanitiesSocialScience,
    /// 患者又はその遺族の観点を含む一般の立場で意見できる者.
    LayPatientPerspective,
}

impl Expertise {
    /// Japanese label used in documents.
    pub fn ja(self) -> &'static str {
        match self {
            Expertise::NaturalScience => "自然科学の有識者",
            Expertise::HumanitiesSocialScience => "人文・社会科学の有識者",
            Expertise::LayPatientPerspective => "一般の立場（患者・遺族の観点）",
        }
    }
}

/// One committee member with a term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// kiban's id for the member.
    pub member_id: String,
    /// Name.
    pub name: String,
    /// Sex (R1: both sexes).
    pub sex: Sex,
    /// Field.
    pub expertise: Expertise,
    /// Not an officer or employee of the creator (R1: at least 2).
    pub external: bool,
    /// Engaged in the certified business (R1: none may be).
    pub engaged_in_business: bool,
    /// First day of the term.
    pub term_start: NaiveDate,
    /// Last day of the term.
    pub term_end: NaiveDate,
    /// The login account that acts for this member: over HTTP a member may declare conflicts and
    /// vote only as the roster member linked to their own account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

impl Member {
    /// True when the term covers `on`.
    pub fn sits_on(&self, on: NaiveDate) -> bool {
        self.term_start <= on && on <= self.term_end
    }
}

/// A rule of R1 that a committee breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum CompositionViolation {
    /// Fewer than 5 members in term.
    TooFewMembers {
        /// Members sitting.
        sitting: usize,
    },
    /// Only one sex among the members.
    OneSexOnly,
    /// No member of this field.
    MissingExpertise {
        /// The missing field.
        expertise: Expertise,
    },
    /// Fewer than 2 external members.
    TooFewExternal {
        /// External members sitting.
        external: usize,
    },
    /// A member is engaged in the certified business.
    EngagedInBusiness {
        /// The member.
        member_id: String,
    },
}

impl std::fmt::Display for CompositionViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompositionViolation::TooFewMembers { sitting } => {
                write!(f, "R1: at least 5 members must sit (only {sitting} in term)")
            }
            CompositionViolation::OneSexOnly => write!(f, "R1: members of both sexes must sit"),
            CompositionViolation::MissingExpertise { expertise } => {
                write!(f, "R1: no member is a {} ({expertise:?})", expertise.ja())
            }
            CompositionViolation::TooFewExternal { external } => {
                write!(f, "R1: at least 2 members must not be officers or employees of the creator (only {external})")
            }
            CompositionViolation::EngagedInBusiness { member_id } => {
                write!(f, "R1: member {member_id} is engaged in the certified business and may not sit")
            }
        }
    }
}

/// Checks R1 for the members whose term covers `on`; returns every rule broken (empty when valid).
pub fn check_composition(members: &[Member], on: NaiveDate) -> Vec<CompositionViolation> {
    let sitting: Vec<&Member> = members.iter().filter(|m| m.sits_on(on)).collect();
    let mut v = Vec::new();
    if sitting.len() < 5 {
        v.push(CompositionViolation::TooFewMembers { sitting: sitting.len() });
    }
    let male = sitting.iter().any(|m| m.sex == Sex::Male);
    let female = sitting.iter().any(|m| m.sex == Sex::Female);
    if !(male && female) {
        v.push(CompositionViolation::OneSexOnly);
    }
    for e in [Expertise::NaturalScience, Expertise::HumanitiesSocialScience, Expertise::LayPatientPerspective] {
        if !sitting.iter().any(|m| m.expertise == e) {
            v.push(CompositionViolation::MissingExpertise { expertise: e });
        }
    }
    let external = sitting.iter().filter(|m| m.external).count();
    if external < 2 {
        v.push(CompositionViolation::TooFewExternal { external });
    }
    for m in sitting.iter().filter(|m| m.engaged_in_business) {
        v.push(CompositionViolation::EngagedInBusiness { member_id: m.member_id.clone() });
    }
    v
}

/// A fictional roster of `n` members for tests and the demo: alternating sexes, the three fields in
/// turn, the first three external, terms 2025-04-01..2028-03-31.
pub fn sample_committee(n: usize) -> Vec<Member> {
    let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
    let fields = [Expertise::NaturalScience, Expertise::HumanitiesSocialScience, Expertise::LayPatientPerspective];
    (0..n)
        .map(|i| Member {
            member_id: format!("m{i}"),
            name: format!("委員{i}"),
            sex: if i % 2 == 0 { Sex::Female } else { Sex::Male },
            expertise: fields[i % 3],
            external: i < 3,
            engaged_in_business: false,
            term_start: d(2025, 4, 1),
            term_end: d(2028, 3, 31),
            account_id: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()
    }

    #[test]
    fn r1_committee_of_six_is_valid() {
        assert_eq!(check_composition(&sample_committee(6), on()), vec![]);
    }

    #[test]
    fn r1_committee_of_four_cannot_hold_a_review() {
        let v = check_composition(&sample_committee(4), on());
        assert_eq!(v, vec![CompositionViolation::TooFewMembers { sitting: 4 }]);
        assert!(v[0].to_string().contains("at least 5"));
    }

    #[test]
    fn r1_each_rule_is_named() {
        let mut c = sample_committee(6);
        for m in &mut c {
            m.sex = Sex::Male;
        }
        assert_eq!(check_composition(&c, on()), vec![CompositionViolation::OneSexOnly]);
        let mut c = sample_committee(6);
        for m in &mut c {
            if m.expertise == Expertise::LayPatientPerspective {
                m.expertise = Expertise::NaturalScience;
            }
        }
        assert_eq!(
            check_composition(&c, on()),
            vec![CompositionViolation::MissingExpertise { expertise: Expertise::LayPatientPerspective }]
        );
        let mut c = sample_committee(6);
        c[1].external = false;
        c[2].external = false;
        assert_eq!(check_composition(&c, on()), vec![CompositionViolation::TooFewExternal { external: 1 }]);
        let mut c = sample_committee(6);
        c[4].engaged_in_business = true;
        assert_eq!(
            check_composition(&c, on()),
            vec![CompositionViolation::EngagedInBusiness { member_id: "m4".into() }]
        );
    }

    #[test]
    fn r1_members_out_of_term_do_not_count() {
        let mut c = sample_committee(5);
        c[0].term_end = NaiveDate::from_ymd_opt(2026, 5, 31).unwrap();
        assert!(check_composition(&c, on()).contains(&CompositionViolation::TooFewMembers { sitting: 4 }));
    }
}
