//! Insurer numbers (保険者番号) and insurance card fields, with the check digit (検証番号).
//!
//! An insurer number is 8 digits (法別番号 2 + 都道府県番号 2 + 保険者別番号 3 + 検証番号 1), or 6 digits
//! for 国民健康保険 (no 法別番号). The check digit: multiply the other digits, from the right, by
//! 2, 1, 2, 1 …, add the digits of the products, and take (10 − sum mod 10) mod 10.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Computes the check digit over the leading digits (all but the check digit).
pub fn check_digit(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let p = d as u32 * if i % 2 == 0 { 2 } else { 1 };
            p / 10 + p % 10
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// A valid insurer number: 6 or 8 ASCII digits with a correct check digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InsurerNumber(String);

impl InsurerNumber {
    /// Parses an already-normalized number (ASCII digits, no spaces).
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        if !(s.len() == 6 || s.len() == 8) || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ModelError::invalid("insurer_number", "must be 6 or 8 digits", s));
        }
        let digits: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
        let (body, last) = digits.split_at(digits.len() - 1);
        if check_digit(body) != last[0] {
            return Err(ModelError::invalid("insurer_number", "check digit (検証番号) does not match", s));
        }
        Ok(InsurerNumber(s.to_owned()))
    }
    /// Builds a number from its body (5 or 7 digits), appending the check digit.
    pub fn from_body(body: &str) -> Result<Self, ModelError> {
        if !(body.len() == 5 || body.len() == 7) || !body.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ModelError::invalid("insurer_number", "body must be 5 or 7 digits", body));
        }
        let digits: Vec<u8> = body.bytes().map(|b| b - b'0').collect();
        Ok(InsurerNumber(format!("{body}{}", check_digit(&digits))))
    }
    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// True for a 国民健康保険 (6-digit) number.
    pub fn is_national_health_insurance(&self) -> bool {
        self.0.len() == 6
    }
}

impl TryFrom<String> for InsurerNumber {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, ModelError> {
        Self::parse(&s)
    }
}
impl From<InsurerNumber> for String {
    fn from(v: InsurerNumber) -> String {
        v.0
    }
}
impl std::fmt::Display for InsurerNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digit_matches_the_published_rule() {
        // body 0113001: from the right 1·2=2, 0·1=0, 0·2=0, 3·1=3, 1·2=2, 1·1=1, 0·2=0 → 8 → check 2
        assert_eq!(InsurerNumber::from_body("0113001").unwrap().as_str(), "01130012");
        // a product over 9 adds its digits: "0000069" → 9·2=18 → 1+8=9, 6·1=6 → 15 → check 5
        assert_eq!(InsurerNumber::from_body("0000069").unwrap().as_str(), "00000695");
        assert!(InsurerNumber::parse("01130012").is_ok());
        let e = InsurerNumber::parse("01130013").unwrap_err().to_string();
        assert!(e.contains("check digit"), "{e}");
        assert!(InsurerNumber::parse("0113001").is_err());
        assert!(InsurerNumber::parse("１２３４５６").is_err());
    }
}
