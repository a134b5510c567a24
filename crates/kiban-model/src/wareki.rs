//! Japanese era dates (和暦): conversion both ways and the forms medical files use.
//!
//! Accepted input forms: `令和5年4月1日`, `令和元年5月1日`, `R5.4.1`, `R05.04.01`, `H31/04/30`
//! and the 7-digit receipt form `GYYMMDD` (era digit 1 明治, 2 大正, 3 昭和, 4 平成, 5 令和).
//! A date before the era began or after the next began (e.g. 平成31年5月1日) is rejected.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// An era of the modern calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Era {
    /// 明治 (1868-01-25 for our purposes; earlier dates are lunar-calendar and not supported).
    Meiji,
    /// 大正, from 1912-07-30.
    Taisho,
    /// 昭和, from 1926-12-25.
    Showa,
    /// 平成, from 1989-01-08.
    Heisei,
    /// 令和, from 2019-05-01.
    Reiwa,
}

const ERAS: [Era; 5] = [Era::Meiji, Era::Taisho, Era::Showa, Era::Heisei, Era::Reiwa];

impl Era {
    /// First day of the era.
    pub fn start(self) -> NaiveDate {
        let (y, m, d) = match self {
            Era::Meiji => (1873, 1, 1), // Gregorian calendar adopted in Japan (明治6年)
            Era::Taisho => (1912, 7, 30),
            Era::Showa => (1926, 12, 25),
            Era::Heisei => (1989, 1, 8),
            Era::Reiwa => (2019, 5, 1),
        };
        NaiveDate::from_ymd_opt(y, m, d).expect("static era date")
    }
    /// Kanji name, e.g. `令和`.
    pub fn kanji(self) -> &'static str {
        match self {
            Era::Meiji => "明治",
            Era::Taisho => "大正",
            Era::Showa => "昭和",
            Era::Heisei => "平成",
            Era::Reiwa => "令和",
        }
    }
    /// Latin initial, e.g. `R`.
    pub fn initial(self) -> char {
        match self {
            Era::Meiji => 'M',
            Era::Taisho => 'T',
            Era::Showa => 'S',
            Era::Heisei => 'H',
            Era::Reiwa => 'R',
        }
    }
    /// Digit used by receipt (UKE) files: 1 明治 … 5 令和.
    pub fn digit(self) -> u8 {
        ERAS.iter().position(|e| *e == self).expect("era listed") as u8 + 1
    }
    fn next(self) -> Option<Era> {
        ERAS.get(self.digit() as usize).copied()
    }
    fn from_digit(d: u8) -> Option<Era> {
        ERAS.get((d as usize).checked_sub(1)?).copied()
    }
    fn from_prefix(s: &str) -> Option<(Era, &str)> {
        for e in ERAS {
            if let Some(rest) = s.strip_prefix(e.kanji()) {
                return Some((e, rest));
            }
            let mut chars = s.chars();
            if let Some(c) = chars.next()
                && c.to_ascii_uppercase() == e.initial()
            {
                return Some((e, chars.as_str()));
            }
        }
        None
    }
}

/// A date expressed in a Japanese era; always a real day inside that era.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WarekiDate {
    era: Era,
    year: u16,
    date: NaiveDate,
}

impl WarekiDate {
    /// Converts a Western date; fails before the Gregorian calendar was adopted (1873).
    pub fn from_date(date: NaiveDate) -> Result<Self, ModelError> {
        let era = ERAS.iter().rev().copied().find(|e| date >= e.start()).ok_or_else(|| {
            ModelError::invalid("wareki", "date before 明治6年 (1873) is not supported", &date.to_string())
        })?;
        let base = if era == Era::Meiji { 1868 } else { era.start().year() };
        Ok(WarekiDate { era, year: (date.year() - base + 1) as u16, date })
    }

    /// Builds from era, era year, month and day, rejecting days outside the era.
    pub fn new(era: Era, year: u16, month: u32, day: u32) -> Result<Self, ModelError> {
        let shown = format!("{}{}年{}月{}日", era.kanji(), year, month, day);
        if year == 0 {
            return Err(ModelError::invalid("wareki", "era year 0 does not exist (the first year is 元年)", &shown));
        }
        let base = if era == Era::Meiji { 1868 } else { era.start().year() };
        let date = NaiveDate::from_ymd_opt(base + year as i32 - 1, month, day)
            .ok_or_else(|| ModelError::invalid("wareki", "no such day in the calendar", &shown))?;
        if date < era.start() {
            return Err(ModelError::invalid("wareki", format!("before {} began", era.kanji()), &shown));
        }
        if let Some(next) = era.next()
            && date >= next.start()
        {
            return Err(ModelError::invalid("wareki", format!("after {} ended", era.kanji()), &shown));
        }
        Ok(WarekiDate { era, year, date })
    }

    /// Parses the written and the receipt forms listed in the module doc.
    pub fn parse(input: &str) -> Result<Self, ModelError> {
        let s = input.trim();
        if s.len() == 7 && s.bytes().all(|b| b.is_ascii_digit()) {
            let era = Era::from_digit(s.as_bytes()[0] - b'0')
                .ok_or_else(|| ModelError::invalid("wareki", "era digit must be 1–5 (明治…令和)", s))?;
            let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().expect("digits");
            return Self::new(era, n(1..3) as u16, n(3..5), n(5..7));
        }
        let (era, rest) = Era::from_prefix(s).ok_or_else(|| ModelError::invalid("wareki", "unknown era", s))?;
        let rest = rest.trim_start();
        let (year, rest) = if let Some(r) = rest.strip_prefix("元") {
            (1, r)
        } else {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let y = digits.parse::<u16>().map_err(|_| ModelError::invalid("wareki", "missing era year", s))?;
            (y, &rest[digits.len()..])
        };
        let nums: Vec<u32> = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(u32::MAX))
            .collect();
        match nums.as_slice() {
            [m, d] => Self::new(era, year, *m, *d),
            _ => Err(ModelError::invalid("wareki", "expected era, year, month and day", s)),
        }
    }

    /// The era.
    pub fn era(&self) -> Era {
        self.era
    }
    /// The year within the era (1 = 元年).
    pub fn era_year(&self) -> u16 {
        self.year
    }
    /// The Western date.
    pub fn date(&self) -> NaiveDate {
        self.date
    }
    /// The receipt form `GYYMMDD`.
    pub fn to_receipt_form(&self) -> String {
        format!("{}{:02}{:02}{:02}", self.era.digit(), self.year, self.date.month(), self.date.day())
    }
    /// The short Latin form `R05.04.01`.
    pub fn to_short_form(&self) -> String {
        format!("{}{:02}.{:02}.{:02}", self.era.initial(), self.year, self.date.month(), self.date.day())
    }
}

impl std::fmt::Display for WarekiDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.year == 1 {
            write!(f, "{}元年{}月{}日", self.era.kanji(), self.date.month(), self.date.day())
        } else {
            write!(f, "{}{}年{}月{}日", self.era.kanji(), self.year, self.date.month(), self.date.day())
        }
    }
}

/// Formats a date as officials read it: `2023年4月1日（令和5年4月1日）`.
pub fn both_forms(date: NaiveDate) -> String {
    match WarekiDate::from_date(date) {
        Ok(w) => format!("{}年{}月{}日（{}）", date.year(), date.month(), date.day(), w),
        Err(_) => date.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    #[test]
    fn era_boundaries_convert_both_ways() {
        let cases = [
            (d(2019, 4, 30), "平成31年4月30日", "4310430"),
            (d(2019, 5, 1), "令和元年5月1日", "5010501"),
            (d(1989, 1, 7), "昭和64年1月7日", "3640107"),
            (d(1989, 1, 8), "平成元年1月8日", "4010108"),
            (d(1926, 12, 25), "昭和元年12月25日", "3011225"),
            (d(1912, 7, 29), "明治45年7月29日", "1450729"),
            (d(1920, 2, 29), "大正9年2月29日", "2090229"),
        ];
        for (date, written, receipt) in cases {
            let w = WarekiDate::from_date(date).unwrap();
            assert_eq!(w.to_string(), written);
            assert_eq!(w.to_receipt_form(), receipt);
            assert_eq!(WarekiDate::parse(written).unwrap().date(), date);
            assert_eq!(WarekiDate::parse(receipt).unwrap().date(), date);
            assert_eq!(WarekiDate::parse(&w.to_short_form()).unwrap().date(), date);
        }
    }

    #[test]
    fn impossible_wareki_dates_are_rejected_with_the_rule() {
        for bad in
            ["令和0年1月1日", "令和5年2月30日", "平成31年5月1日", "令和1年4月30日", "X5.1.1", "5000101", "9010101"]
        {
            let err = WarekiDate::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("wareki:"), "{bad}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_date_round_trips(days in 0i64..60000) {
            let date = d(1873, 1, 1) + chrono::Duration::days(days);
            let w = WarekiDate::from_date(date).unwrap();
            proptest::prop_assert_eq!(WarekiDate::parse(&w.to_string()).unwrap().date(), date);
            proptest::prop_assert_eq!(WarekiDate::parse(&w.to_receipt_form()).unwrap().date(), date);
        }
    }
}
