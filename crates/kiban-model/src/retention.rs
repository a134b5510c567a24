//! Retention rules of statutory records (design: Records and retention).

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

/// How long a statutory record must be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionRule {
    /// 3 years from the record's date (P4, C5, R9, I3 …).
    ThreeYears,
    /// 3 years from the last provision or receipt the bulk record covers (P6, C2).
    ThreeYearsFromLast,
    /// At least 1 year after the end of use (access logs, X6).
    OneYearAfterEndOfUse,
}

impl RetentionRule {
    /// The first day on which the record may be purged: `anchor` + the period.
    /// `anchor` is the record date, the last provision, or the end of use, per the rule.
    pub fn end_date(self, anchor: NaiveDate) -> NaiveDate {
        let months = match self {
            RetentionRule::ThreeYears | RetentionRule::ThreeYearsFromLast => 36,
            RetentionRule::OneYearAfterEndOfUse => 12,
        };
        // 29 Feb + 3 years has no day: chrono clamps to 28 Feb; keep one more day to be safe.
        let end = anchor.checked_add_months(Months::new(months)).expect("date in range");
        if end.format("%m-%d").to_string() != anchor.format("%m-%d").to_string() {
            end.succ_opt().expect("date in range")
        } else {
            end
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_years_never_ends_early() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert_eq!(RetentionRule::ThreeYears.end_date(d(2024, 4, 1)), d(2027, 4, 1));
        assert_eq!(RetentionRule::ThreeYears.end_date(d(2024, 2, 29)), d(2027, 3, 1));
        assert_eq!(RetentionRule::OneYearAfterEndOfUse.end_date(d(2025, 1, 31)), d(2026, 1, 31));
    }
}
