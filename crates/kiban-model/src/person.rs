//! Facts about a person that the model needs to reason about: sex and age.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Sex as recorded (ISO 5218 codes: 0 not known, 1 male, 2 female, 9 not applicable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// 男
    Male,
    /// 女
    Female,
    /// 不明
    Unknown,
}

impl Sex {
    /// Parses `1`/`2`/`0`/`9`, `M`/`F`/`U`, or `男`/`女`.
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        match s.trim() {
            "1" | "M" | "m" | "male" | "男" | "男性" => Ok(Sex::Male),
            "2" | "F" | "f" | "female" | "女" | "女性" => Ok(Sex::Female),
            "0" | "9" | "U" | "u" | "unknown" | "不明" => Ok(Sex::Unknown),
            other => Err(ModelError::invalid("sex", "expected 1/2/0/9, M/F/U or 男/女", other)),
        }
    }
    /// ISO 5218 digit.
    pub fn code(self) -> &'static str {
        match self {
            Sex::Male => "1",
            Sex::Female => "2",
            Sex::Unknown => "0",
        }
    }
    /// Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            Sex::Male => "男",
            Sex::Female => "女",
            Sex::Unknown => "不明",
        }
    }
}

/// Age in completed years on `on` (the legal reckoning: a birthday is reached the day before,
/// which makes no difference to completed years except for 29 February births, handled as 1 March).
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> i32 {
    let mut age = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_counts_completed_years() {
        let b = NaiveDate::from_ymd_opt(2008, 4, 2).unwrap();
        assert_eq!(age_on(b, NaiveDate::from_ymd_opt(2024, 4, 1).unwrap()), 15);
        assert_eq!(age_on(b, NaiveDate::from_ymd_opt(2024, 4, 2).unwrap()), 16);
    }

    #[test]
    fn sex_parses_the_common_codes() {
        assert_eq!(Sex::parse("女").unwrap(), Sex::Female);
        assert_eq!(Sex::parse("1").unwrap(), Sex::Male);
        assert!(Sex::parse("X").unwrap_err().to_string().contains("sex"));
    }
}
