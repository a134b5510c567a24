//! A provider's identity record, parsed once into canonical typed fields.

use chrono::NaiveDate;
use kiban_model::id::{ProviderId, ProviderPatientId};
use kiban_model::person::Sex;
use serde::{Deserialize, Serialize};

use crate::linkage::IndividualNumber;
use crate::normalize::{FieldError, KanaName, KanjiName, birth_date};

/// The identity fields of one provider record as the provider wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityInput {
    /// Provider id (`prov-a`).
    pub provider_id: String,
    /// Provider-local patient id.
    pub patient_id: String,
    /// Name in kanji.
    pub name_kanji: String,
    /// Name in kana.
    pub name_kana: String,
    /// Sex code.
    pub sex: String,
    /// Birth date (Western or 和暦).
    pub birth_date: String,
    /// Postal code.
    pub postal_code: String,
    /// Address line.
    pub address: String,
    /// Phone number.
    pub phone: String,
    /// Insurer number (empty when unknown).
    pub insurer_number: String,
    /// Card symbol.
    pub card_symbol: String,
    /// Card number.
    pub card_number: String,
    /// Card branch.
    pub card_branch: String,
}

/// A record rejected at the boundary, with every field error found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {provider_id}/{patient_id} rejected: {}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct RecordError {
    /// Provider id as given.
    pub provider_id: String,
    /// Patient id as given.
    pub patient_id: String,
    /// The field errors, each naming field and rule.
    pub errors: Vec<FieldError>,
}

/// An identity in canonical form: what the MPI matches on and the vault stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Provider.
    pub provider: ProviderId,
    /// Provider-local patient id.
    pub patient: ProviderPatientId,
    /// Kanji name.
    pub kanji: KanjiName,
    /// Kana name.
    pub kana: KanaName,
    /// Sex.
    pub sex: Sex,
    /// Birth date.
    pub birth: NaiveDate,
    /// Postal code digits (may be empty).
    pub postal: String,
    /// Address, widths unified and spaces removed (may be empty).
    pub address: String,
    /// Phone digits (may be empty).
    pub phone: String,
    /// Individual insured-person number, when the card fields were given.
    pub card: Option<IndividualNumber>,
}

fn digits(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(c),
            '０'..='９' => char::from_u32(c as u32 - 0xFEE0),
            _ => None,
        })
        .collect()
}

fn address(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            'ー' | '−' | '‐' | '―' => '-',
            c => c,
        })
        .collect()
}

impl Identity {
    /// Parses every field, collecting all errors so the quarantine shows the whole record's problems.
    pub fn parse(input: &IdentityInput) -> Result<Identity, RecordError> {
        let mut errors = vec![];
        let provider = keep(&mut errors, ProviderId::parse(&input.provider_id).map_err(|e| model("provider_id", e)));
        let patient =
            keep(&mut errors, ProviderPatientId::parse(&input.patient_id).map_err(|e| model("patient_id", e)));
        let kanji = keep(&mut errors, KanjiName::parse("name_kanji", &input.name_kanji));
        let kana = keep(&mut errors, KanaName::parse("name_kana", &input.name_kana));
        let sex = keep(&mut errors, Sex::parse(&input.sex).map_err(|e| model("sex", e)));
        let birth = keep(&mut errors, birth_date(&input.birth_date));
        let card = if input.insurer_number.trim().is_empty() {
            Some(None)
        } else {
            keep(
                &mut errors,
                IndividualNumber::parse(
                    &input.insurer_number,
                    &input.card_symbol,
                    &input.card_number,
                    if input.card_branch.trim().is_empty() { "00" } else { &input.card_branch },
                )
                .map(Some),
            )
        };
        match (provider, patient, kanji, kana, sex, birth, card) {
            (Some(provider), Some(patient), Some(kanji), Some(kana), Some(sex), Some(birth), Some(card)) => {
                Ok(Identity {
                    provider,
                    patient,
                    kanji,
                    kana,
                    sex,
                    birth,
                    postal: digits(&input.postal_code),
                    address: address(&input.address),
                    phone: digits(&input.phone),
                    card,
                })
            }
            _ => Err(RecordError {
                provider_id: input.provider_id.chars().take(32).collect(),
                patient_id: input.patient_id.chars().take(32).collect(),
                errors,
            }),
        }
    }
}

fn keep<T>(errors: &mut Vec<FieldError>, r: Result<T, FieldError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

fn model(field: &'static str, e: kiban_model::ModelError) -> FieldError {
    match e {
        kiban_model::ModelError::Invalid { rule, value, .. } => FieldError::new(field, "M-FORMAT", rule, &value),
    }
}

/// Reads the rows of an identity table (the canonical `patients` columns; any column may be
/// missing, then it is empty; non-text columns such as a Date32 birth date are cast to text) into
/// inputs, one per row in order. `provider_id` falls back to `provider` when the table has none.
pub fn inputs_from_batch(
    provider: &str,
    b: &arrow::record_batch::RecordBatch,
) -> Result<Vec<IdentityInput>, arrow::error::ArrowError> {
    use arrow::array::{Array, StringArray};
    let names = [
        "provider_id",
        "patient_id",
        "name_kanji",
        "name_kana",
        "sex",
        "birth_date",
        "postal_code",
        "address",
        "phone",
        "insurer_number",
        "card_symbol",
        "card_number",
        "card_branch",
    ];
    let mut cols: Vec<Option<StringArray>> = Vec::with_capacity(names.len());
    for n in names {
        cols.push(match b.column_by_name(n) {
            None => None,
            Some(c) => {
                let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8)?;
                Some(c.as_any().downcast_ref::<StringArray>().expect("cast to Utf8").clone())
            }
        });
    }
    Ok((0..b.num_rows())
        .map(|r| {
            let v = |k: usize| match &cols[k] {
                Some(a) if !a.is_null(r) => a.value(r).to_owned(),
                _ => String::new(),
            };
            IdentityInput {
                provider_id: if cols[0].is_some() { v(0) } else { provider.to_owned() },
                patient_id: v(1),
                name_kanji: v(2),
                name_kana: v(3),
                sex: v(4),
                birth_date: v(5),
                postal_code: v(6),
                address: v(7),
                phone: v(8),
                insurer_number: v(9),
                card_symbol: v(10),
                card_number: v(11),
                card_branch: v(12),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> IdentityInput {
        IdentityInput {
            provider_id: "prov-a".into(),
            patient_id: "0001".into(),
            name_kanji: "渡邊　太郎".into(),
            name_kana: "ﾜﾀﾅﾍﾞ ﾀﾛｳ".into(),
            sex: "1".into(),
            birth_date: "昭和55年4月1日".into(),
            postal_code: "100-0001".into(),
            address: "東京都千代田区１－２".into(),
            phone: "03-1234-5678".into(),
            insurer_number: "1130012".into(),
            card_symbol: "１２３４".into(),
            card_number: "567".into(),
            card_branch: "0".into(),
        }
    }

    #[test]
    fn a_messy_record_parses_to_canonical_fields() {
        let id = Identity::parse(&input()).unwrap();
        assert_eq!(id.kanji.as_str(), "渡辺 太郎");
        assert_eq!(id.kana.as_str(), "ワタナベ タロウ");
        assert_eq!(id.birth.to_string(), "1980-04-01");
        assert_eq!(id.phone, "0312345678");
        assert_eq!(id.address, "東京都千代田区1-2");
        assert_eq!(id.card.unwrap().insurer.as_str(), "01130012");
    }

    #[test]
    fn bad_fields_are_all_reported_with_field_and_rule() {
        let bad = IdentityInput {
            name_kanji: "𠮷田 太郎".into(),
            name_kana: "".into(),
            birth_date: "令和5年2月30日".into(),
            insurer_number: "01130013".into(),
            ..input()
        };
        let e = Identity::parse(&bad).unwrap_err();
        let got: Vec<(&str, &str)> = e.errors.iter().map(|f| (f.field, f.rule_id)).collect();
        assert_eq!(
            got,
            vec![
                ("name_kanji", "N-JIS0208"),
                ("name_kana", "N-KANA-EMPTY"),
                ("birth_date", "N-DATE-WAREKI"),
                ("insurer_number", "N-INSURER-CHECK")
            ]
        );
        assert!(e.to_string().contains("check digit"), "{e}");
    }
}
