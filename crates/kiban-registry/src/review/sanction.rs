//! Sanctions on breach (R14, D8): the violation table as data (`data/sanctions.json`, 004 第9 別表),
//! the proposed measure for a violation, and the ban a decided measure imposes.

use chrono::{Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};

/// How the length of a measure is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureKind {
    /// A period of `min_months`..=`max_months` (or indefinite when allowed).
    Fixed,
    /// Until the return/deletion is done, plus as many days as it was late (別表②).
    UntilDonePlusDelay,
    /// By analogy with ①–⑦ (別表⑧): the committee picks the period.
    ByAnalogy,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationRule {
    /// Stable code (`leak`, `late_return` …).
    pub code: String,
    /// Row number in 別表.
    pub no: u8,
    /// The row's text.
    pub ja: String,
    /// How the period is set.
    pub measure: MeasureKind,
    /// Shortest period in months.
    pub min_months: u32,
    /// Longest period in months.
    pub max_months: u32,
    /// An indefinite stop may be decided.
    pub indefinite: bool,
    /// The offender pays the gains made (別表⑥).
    pub gains: bool,
}

#[derive(Deserialize)]
struct Table {
    violations: Vec<ViolationRule>,
}

/// The sanction table (D8), parsed from the embedded data file.
pub fn table() -> Vec<ViolationRule> {
    let t: Table =
        serde_json::from_str(include_str!("../../data/sanctions.json")).expect("embedded sanction table parses");
    t.violations
}

/// Looks a violation up by code.
pub fn rule(code: &str) -> Option<ViolationRule> {
    table().into_iter().find(|r| r.code == code)
}

/// What the table proposes for a violation recognized on a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The rule.
    pub rule: ViolationRule,
    /// The first day of the measure (the day the fact was recognized).
    pub from: NaiveDate,
    /// The earliest end of the measure for a fixed period (min months).
    pub earliest_end: Option<NaiveDate>,
    /// The latest end (max months).
    pub latest_end: Option<NaiveDate>,
    /// What the measure is, in Japanese.
    pub text_ja: String,
}

/// Proposes the measure for `code` recognized on `on`.
pub fn propose(code: &str, on: NaiveDate) -> Option<Proposal> {
    let rule = rule(code)?;
    let add = |m: u32| on.checked_add_months(Months::new(m));
    let (earliest_end, latest_end, text_ja) = match rule.measure {
        MeasureKind::UntilDonePlusDelay => {
            (None, None, "返却等を行う日まで及び遅延した日数に相当する期間、提供禁止".to_owned())
        }
        MeasureKind::Fixed | MeasureKind::ByAnalogy => {
            let mut t = format!("{}か月～{}か月", rule.min_months, rule.max_months);
            if rule.indefinite {
                t.push_str("又は無期限");
            }
            t.push_str("の利用停止・提供禁止");
            if rule.gains {
                t.push_str("（不当な利益相当額の支払を含む）");
            }
            if rule.measure == MeasureKind::ByAnalogy {
                t = format!("①～⑦に準じた措置（{t}）");
            }
            (add(rule.min_months), add(rule.max_months), t)
        }
    };
    Some(Proposal { rule, from: on, earliest_end, latest_end, text_ja })
}

/// The period a committee decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "period")]
pub enum DecidedPeriod {
    /// A number of months from the recognition date.
    Months {
        /// Months.
        months: u32,
    },
    /// No end.
    Indefinite,
    /// Late return: the day the return was done and how many days it was late (別表②).
    ReturnDone {
        /// The day of the return/deletion.
        done_on: NaiveDate,
        /// Days late.
        delay_days: u64,
    },
    /// Return not done yet (別表②): the ban has no end date until it is.
    ReturnPending,
}

/// Why a decided measure is outside the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} (rule D8)")]
pub struct SanctionError(pub String);

/// The last day of the ban (None = no end yet / indefinite) for a decided period, checked against the table.
pub fn ban_until(
    rule: &ViolationRule,
    from: NaiveDate,
    period: DecidedPeriod,
) -> Result<Option<NaiveDate>, SanctionError> {
    match (rule.measure, period) {
        (MeasureKind::UntilDonePlusDelay, DecidedPeriod::ReturnDone { done_on, delay_days }) => {
            Ok(Some(done_on.checked_add_days(Days::new(delay_days)).expect("date in range")))
        }
        (MeasureKind::UntilDonePlusDelay, DecidedPeriod::ReturnPending) => Ok(None),
        (MeasureKind::UntilDonePlusDelay, _) => {
            Err(SanctionError(format!("{}: the ban lasts until the return plus the delay", rule.code)))
        }
        (_, DecidedPeriod::Months { months }) if (rule.min_months..=rule.max_months).contains(&months) => {
            Ok(Some(from.checked_add_months(Months::new(months)).and_then(|d| d.pred_opt()).expect("date in range")))
        }
        (_, DecidedPeriod::Months { months }) => Err(SanctionError(format!(
            "{}: {months} months is outside {}–{} months",
            rule.code, rule.min_months, rule.max_months
        ))),
        (_, DecidedPeriod::Indefinite) if rule.indefinite => Ok(None),
        (_, p) => Err(SanctionError(format!("{}: {p:?} is not a measure of this row", rule.code))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    #[test]
    fn d8_table_has_the_eight_rows_of_the_guideline() {
        let t = table();
        assert_eq!(t.iter().map(|r| r.no).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
        assert!(rule("leak").unwrap().indefinite && !rule("loss").unwrap().indefinite);
        assert!(rule("beyond_purpose").unwrap().gains);
    }

    #[test]
    fn d8_leak_proposes_1_to_12_months_or_indefinite() {
        let p = propose("leak", d(2026, 9, 1)).unwrap();
        assert_eq!(p.earliest_end, Some(d(2026, 10, 1)));
        assert_eq!(p.latest_end, Some(d(2027, 9, 1)));
        assert!(p.text_ja.contains("無期限"));
        let r = rule("leak").unwrap();
        assert_eq!(ban_until(&r, d(2026, 9, 1), DecidedPeriod::Indefinite), Ok(None));
        assert_eq!(ban_until(&r, d(2026, 9, 1), DecidedPeriod::Months { months: 6 }), Ok(Some(d(2027, 2, 28))));
        assert!(ban_until(&r, d(2026, 9, 1), DecidedPeriod::Months { months: 13 }).is_err());
        assert!(ban_until(&rule("loss").unwrap(), d(2026, 9, 1), DecidedPeriod::Indefinite).is_err());
    }

    #[test]
    fn d8_late_return_bans_until_done_plus_delay() {
        let r = rule("late_return").unwrap();
        let until = ban_until(&r, d(2026, 9, 1), DecidedPeriod::ReturnDone { done_on: d(2026, 9, 20), delay_days: 19 });
        assert_eq!(until, Ok(Some(d(2026, 10, 9))));
        assert!(ban_until(&r, d(2026, 9, 1), DecidedPeriod::Months { months: 3 }).is_err());
    }
}
