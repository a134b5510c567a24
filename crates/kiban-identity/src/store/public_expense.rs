//! 公費 numbers (負担者番号, 受給者番号 from UKE `KO` records, kiban-formats table
//! `public_expense_ids`) as identifiers of a person: kept beside the vault in
//! `<data-dir>/identity/public_expense.kbv`, sealed with the vault's keys, never in the clinical store.
//!
//! Each entry names the provider and its patient id, not a person key, so merges, splits and undos
//! of the index are followed without rewriting the file: the person is resolved through the index
//! when asked. The file is a sequence of frames (`u32` length, little endian, then one sealed JSON
//! list of entries); a registration appends one frame under the vault's write lock, an erasure
//! rewrites the file without the erased entries (by rename). Every access is audited.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use kiban_model::id::PersonKey;
use serde::{Deserialize, Serialize};

use super::{IdentityStore, StoreError, ev};
use crate::identity::RecordError;
use crate::keystore::KeyStore;
use crate::normalize::FieldError;
use crate::vault::{VaultAction, VaultAudit, VaultError};

/// The file beside the vault.
pub const PUBLIC_EXPENSE_FILE: &str = "public_expense.kbv";
const AAD: &[u8] = b"kiban/public-expense/v1";

/// The 公費 numbers of one provider record as the provider wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicExpenseInput {
    /// Provider id.
    pub provider_id: String,
    /// Provider-local patient id (registered in the vault before, with the patient's identity).
    pub patient_id: String,
    /// 負担者番号 (8 digits: 法別番号, 都道府県番号, 実施機関番号, 検証番号).
    pub payer_number: String,
    /// 受給者番号 (7 digits with its 検証番号; empty for programmes without one).
    pub recipient_number: String,
}

/// 負担者番号: 8 ASCII digits whose last is the check digit of the first seven.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PayerNumber(String);

/// 受給者番号: 7 ASCII digits whose last is the check digit of the first six.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecipientNumber(String);

/// The 検証番号 of the 公費 numbers (and of 保険者番号): from the right, digits weighted 2, 1, 2 …,
/// the digits of the products summed; the check digit brings the sum to a multiple of ten.
fn check_digit(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let p = u32::from(d - b'0') * if i % 2 == 0 { 2 } else { 1 };
            p / 10 + p % 10
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Unifies full-width digits and drops spaces and hyphens, as providers write them.
fn digits(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '－' | 'ー'))
        .map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .collect()
}

fn numbered(field: &'static str, s: &str, len: usize, rule_prefix: &'static str) -> Result<String, FieldError> {
    let d = digits(s);
    if d.len() != len || !d.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::new(field, rule_prefix, format!("must be {len} digits"), s));
    }
    let b = d.as_bytes();
    if check_digit(&b[..len - 1]) != b[len - 1] - b'0' {
        return Err(FieldError::new(field, "P-CHECK", "the check digit (検証番号) does not match", s));
    }
    Ok(d)
}

impl PayerNumber {
    /// Parses a 負担者番号 (full-width digits accepted), checking the length and the check digit.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        numbered("payer_number", s, 8, "P-PAYER-DIGITS").map(PayerNumber)
    }
    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// 法別番号 (the programme: `12` 生活保護, `54` 難病 …).
    pub fn program(&self) -> &str {
        &self.0[..2]
    }
}

impl RecipientNumber {
    /// Parses a 受給者番号 (full-width digits accepted), checking the length and the check digit.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        numbered("recipient_number", s, 7, "P-RECIPIENT-DIGITS").map(RecipientNumber)
    }
    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One stored entry: whose numbers (provider and patient id) and the numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicExpenseEntry {
    /// Provider id.
    pub provider_id: String,
    /// Provider-local patient id.
    pub patient_id: String,
    /// 負担者番号.
    pub payer: PayerNumber,
    /// 受給者番号, when the programme has one.
    pub recipient: Option<RecipientNumber>,
}

impl PublicExpenseEntry {
    /// Parses an input, collecting every field error.
    pub fn parse(i: &PublicExpenseInput) -> Result<Self, RecordError> {
        let payer = PayerNumber::parse(&i.payer_number);
        let recipient = if digits(&i.recipient_number).is_empty() {
            Ok(None)
        } else {
            RecipientNumber::parse(&i.recipient_number).map(Some)
        };
        match (payer, recipient) {
            (Ok(payer), Ok(recipient)) => Ok(PublicExpenseEntry {
                provider_id: i.provider_id.clone(),
                patient_id: i.patient_id.clone(),
                payer,
                recipient,
            }),
            (p, r) => Err(RecordError {
                provider_id: i.provider_id.chars().take(32).collect(),
                patient_id: i.patient_id.chars().take(32).collect(),
                errors: p.err().into_iter().chain(r.err()).collect(),
            }),
        }
    }
}

/// Reads the rows of a `public_expense_ids` table (columns `provider_id`, `patient_id`,
/// `payer_number`, `recipient_number`; a missing one is empty, `provider_id` falls back to
/// `provider`) into inputs, one per row in order.
pub fn inputs_from_batch(
    provider: &str,
    b: &arrow::record_batch::RecordBatch,
) -> Result<Vec<PublicExpenseInput>, arrow::error::ArrowError> {
    use arrow::array::{Array, StringArray};
    let col = |n: &str| -> Result<Option<StringArray>, arrow::error::ArrowError> {
        b.column_by_name(n)
            .map(|c| {
                let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8)?;
                Ok(c.as_any().downcast_ref::<StringArray>().expect("cast to Utf8").clone())
            })
            .transpose()
    };
    let cols = [col("provider_id")?, col("patient_id")?, col("payer_number")?, col("recipient_number")?];
    Ok((0..b.num_rows())
        .map(|r| {
            let v = |k: usize| match &cols[k] {
                Some(a) if !a.is_null(r) => a.value(r).to_owned(),
                _ => String::new(),
            };
            PublicExpenseInput {
                provider_id: if cols[0].is_some() { v(0) } else { provider.to_owned() },
                patient_id: v(1),
                payer_number: v(2),
                recipient_number: v(3),
            }
        })
        .collect())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |source| VaultError::Io { path: path.to_path_buf(), source }
}

fn read_all(path: &Path, keys: &KeyStore) -> Result<Vec<PublicExpenseEntry>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io(path)(e).into()),
    };
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut index = 0usize;
    while pos + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        if pos + 4 + len > bytes.len() {
            break; // a torn tail: the append that wrote it did not finish, so it never answered
        }
        let plain = keys
            .open_sealed(AAD, &bytes[pos + 4..pos + 4 + len])
            .map_err(|source| VaultError::Sealed { index, source })?;
        let entries: Vec<PublicExpenseEntry> =
            serde_json::from_slice(&plain).map_err(|e| VaultError::Malformed { index, reason: e.to_string() })?;
        out.extend(entries);
        pos += 4 + len;
        index += 1;
    }
    Ok(out)
}

fn frame(keys: &KeyStore, entries: &[PublicExpenseEntry]) -> Vec<u8> {
    let sealed = keys.seal(AAD, &serde_json::to_vec(entries).expect("entries serialize"));
    let mut out = (sealed.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&sealed);
    out
}

/// Removes the entries of the given `(provider, patient)` sources; returns how many went.
pub(super) fn erase_sources(dir: &Path, keys: &KeyStore, sources: &[(String, String)]) -> Result<usize, StoreError> {
    let path = dir.join(PUBLIC_EXPENSE_FILE);
    let all = read_all(&path, keys)?;
    let gone = |e: &PublicExpenseEntry| sources.iter().any(|(p, q)| *p == e.provider_id && *q == e.patient_id);
    let n = all.iter().filter(|e| gone(e)).count();
    if n == 0 {
        return Ok(0);
    }
    let kept: Vec<PublicExpenseEntry> = all.into_iter().filter(|e| !gone(e)).collect();
    let tmp = path.with_extension("rewrite");
    let bytes = if kept.is_empty() { vec![] } else { frame(keys, &kept) };
    fs::write(&tmp, bytes).map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(n)
}

impl IdentityStore {
    /// Registers 公費 numbers of patients the provider registered before (their identity first, in
    /// the same intake batch or an earlier one): per input, the person key it belongs to, or why it
    /// was rejected (field and rule; an unknown patient id names `patient_id`). Numbers already
    /// stored for the same source are not stored again. One audited write.
    pub fn register_public_expense_ids(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        inputs: &[PublicExpenseInput],
    ) -> Result<Vec<Result<PersonKey, RecordError>>, StoreError> {
        self.txn(audit, actor, |s| {
            let path = s.dir.join(PUBLIC_EXPENSE_FILE);
            let mut known: BTreeSet<PublicExpenseEntry> = read_all(&path, &s.keys)?.into_iter().collect();
            let mut fresh = Vec::new();
            let mut out = Vec::with_capacity(inputs.len());
            for i in inputs {
                let parsed = PublicExpenseEntry::parse(i).and_then(|e| {
                    match s.mpi.lookup(&e.provider_id, &e.patient_id).last().map(|h| h.1) {
                        Some(p) => Ok((e, p)),
                        None => Err(RecordError {
                            provider_id: i.provider_id.chars().take(32).collect(),
                            patient_id: i.patient_id.chars().take(32).collect(),
                            errors: vec![FieldError::new(
                                "patient_id",
                                "P-NO-IDENTITY",
                                "no identity is registered for this patient id (submit it in the patients table)",
                                &i.patient_id,
                            )],
                        }),
                    }
                });
                match parsed {
                    Ok((e, person)) => {
                        if known.insert(e.clone()) {
                            fresh.push(e);
                        }
                        out.push(Ok(person));
                    }
                    Err(e) => out.push(Err(e)),
                }
            }
            if !fresh.is_empty() {
                let mut f = fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
                f.write_all(&frame(&s.keys, &fresh)).map_err(io(&path))?;
                f.sync_data().map_err(io(&path))?;
            }
            audit.record(&ev(VaultAction::Write, actor, "intake public expense numbers", None, fresh.len()))?;
            Ok(out)
        })
    }

    /// The 公費 numbers held for a person (from every provider record linked to it now); audited.
    pub fn public_expense_ids(
        &self,
        audit: &dyn VaultAudit,
        actor: &str,
        person: PersonKey,
    ) -> Result<Vec<PublicExpenseEntry>, StoreError> {
        if !self.mpi.knows_person(person) {
            return Err(StoreError::UnknownPerson(person));
        }
        let sources: BTreeSet<(String, String)> = self.sources_of(self.mpi.records_of(person))?.into_iter().collect();
        let out: Vec<PublicExpenseEntry> = read_all(&self.dir.join(PUBLIC_EXPENSE_FILE), &self.keys)?
            .into_iter()
            .filter(|e| sources.contains(&(e.provider_id.clone(), e.patient_id.clone())))
            .collect();
        audit.record(&ev(VaultAction::Read, actor, "public expense numbers", Some(person), out.len()))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_of_payer_and_recipient_numbers() {
        // 54136015: 5413601 weighted 2,1,2… from the right sums to 15, so the check digit is 5.
        assert_eq!(PayerNumber::parse("54136015").unwrap().program(), "54");
        assert_eq!(PayerNumber::parse("５４１３６０１５").unwrap().as_str(), "54136015");
        assert_eq!(RecipientNumber::parse("1234566").unwrap().as_str(), "1234566");
        let e = PayerNumber::parse("21136011").unwrap_err();
        assert_eq!((e.field, e.rule_id), ("payer_number", "P-CHECK"));
        let e = PayerNumber::parse("5413601").unwrap_err();
        assert_eq!((e.field, e.rule_id), ("payer_number", "P-PAYER-DIGITS"));
        let e = RecipientNumber::parse("7654321").unwrap_err();
        assert_eq!((e.field, e.rule_id), ("recipient_number", "P-CHECK"));
    }

    #[test]
    fn a_bad_input_names_every_bad_field() {
        let i = PublicExpenseInput {
            provider_id: "prov-a".into(),
            patient_id: "P1".into(),
            payer_number: "2113601x".into(),
            recipient_number: "7654321".into(),
        };
        let e = PublicExpenseEntry::parse(&i).unwrap_err();
        let got: Vec<_> = e.errors.iter().map(|f| (f.field, f.rule_id)).collect();
        assert_eq!(got, [("payer_number", "P-PAYER-DIGITS"), ("recipient_number", "P-CHECK")]);
        let ok = PublicExpenseInput { payer_number: "12136010".into(), recipient_number: String::new(), ..i };
        // 1213601: 2+0+3+3+2+2+2 = 14 → check digit 6, so …0 is wrong; the empty recipient is fine.
        assert!(PublicExpenseEntry::parse(&ok).is_err());
        let ok = PublicExpenseInput { payer_number: "12136016".into(), ..ok };
        assert_eq!(PublicExpenseEntry::parse(&ok).unwrap().recipient, None);
    }
}
