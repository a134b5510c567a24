//! Public-database linkage keys (L1, L2): one-way identifiers of the kinds used to join the NDB,
//! the DPC database and the long-term-care database, computed on the canonical forms so two
//! independent sources produce the same key for the same person. The exact byte layout is in
//! `LINKAGE.md` beside `Cargo.toml` and repeated here.
//!
//! Both keys are HMAC-SHA-256 under a linkage secret that the linking parties share (imported into
//! the key store with [`crate::keystore::KeyStore::import_domain_key`] under a `linkage/…` domain);
//! the secret keeps the keys from being recomputed by anyone holding a name and birth date, which
//! the unkeyed SHA-256 of the NDB's own ID1/ID2 does not.
//!
//! ```text
//! id1 = HMAC-SHA-256(secret, "kiban/linkage/id1/v1" 00
//!                            ‖ kana  (canonical katakana, UTF-8, separator removed)
//!                            ‖ 1F ‖ birth (8 ASCII digits YYYYMMDD)
//!                            ‖ 1F ‖ sex   (1 ASCII digit: 1 male, 2 female))
//! id2 = HMAC-SHA-256(secret, "kiban/linkage/id2/v1" 00
//!                            ‖ insurer (6 or 8 ASCII digits, zero-padded, check digit valid)
//!                            ‖ 1F ‖ symbol (canonical card symbol, UTF-8; may be empty)
//!                            ‖ 1F ‖ number (card number, ASCII digits, no leading zeros)
//!                            ‖ 1F ‖ branch (2 ASCII digits)
//!                            ‖ 1F ‖ birth (YYYYMMDD) ‖ 1F ‖ sex (1 digit))
//! ```
//! Output: the 32 bytes, shown as 64 lower-case hex digits.

use chrono::NaiveDate;
use kiban_model::insurer::InsurerNumber;
use kiban_model::person::Sex;

use crate::normalize::{Branch, CardNumber, CardSymbol, FieldError, KanaName};
use crate::pseudonym::PseudonymKey;

/// The individual insured-person number (個人単位被保険者番号) in canonical parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IndividualNumber {
    /// Insurer number (保険者番号).
    pub insurer: InsurerNumber,
    /// Card symbol (記号).
    pub symbol: CardSymbol,
    /// Card number (番号).
    pub number: CardNumber,
    /// Branch (枝番).
    pub branch: Branch,
}

impl IndividualNumber {
    /// Parses the four parts as written.
    pub fn parse(insurer: &str, symbol: &str, number: &str, branch: &str) -> Result<Self, FieldError> {
        Ok(IndividualNumber {
            insurer: crate::normalize::insurer_number(insurer)?,
            symbol: CardSymbol::parse(symbol)?,
            number: CardNumber::parse(number)?,
            branch: Branch::parse(branch)?,
        })
    }
}

/// Which linkage key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkageKind {
    /// From kana name, birth date and sex.
    Id1,
    /// From the individual insured-person number, birth date and sex.
    Id2,
}

/// A linkage key: 32 bytes, shown as hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkageKey(pub [u8; 32]);

impl std::fmt::Display for LinkageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

const SEP: u8 = 0x1F;

fn sex_byte(sex: Sex) -> Result<u8, FieldError> {
    match sex {
        Sex::Male => Ok(b'1'),
        Sex::Female => Ok(b'2'),
        Sex::Unknown => Err(FieldError::new("sex", "L-SEX", "linkage keys need a known sex (1 or 2)", "0")),
    }
}

/// The exact input bytes of an ID1 key (before the keyed hash), per the module documentation.
pub fn id1_input(kana: &KanaName, birth: NaiveDate, sex: Sex) -> Result<Vec<u8>, FieldError> {
    if kana.has_unknown() {
        return Err(FieldError::new(
            "name_kana",
            "L-UNKNOWN",
            "an unknown character (〓) cannot enter a linkage key",
            kana.as_str(),
        ));
    }
    let mut v = b"kiban/linkage/id1/v1\0".to_vec();
    v.extend_from_slice(kana.joined().as_bytes());
    v.push(SEP);
    v.extend_from_slice(birth.format("%Y%m%d").to_string().as_bytes());
    v.push(SEP);
    v.push(sex_byte(sex)?);
    Ok(v)
}

/// The exact input bytes of an ID2 key (before the keyed hash), per the module documentation.
pub fn id2_input(number: &IndividualNumber, birth: NaiveDate, sex: Sex) -> Result<Vec<u8>, FieldError> {
    let mut v = b"kiban/linkage/id2/v1\0".to_vec();
    for part in [number.insurer.as_str(), number.symbol.as_str(), number.number.as_str(), &number.branch.as_str()] {
        v.extend_from_slice(part.as_bytes());
        v.push(SEP);
    }
    v.extend_from_slice(birth.format("%Y%m%d").to_string().as_bytes());
    v.push(SEP);
    v.push(sex_byte(sex)?);
    Ok(v)
}

/// Computes linkage keys under one linkage secret (a key-store domain such as `linkage/ndb`).
#[derive(Debug, Clone)]
pub struct LinkageKeyer {
    key: PseudonymKey,
}

impl LinkageKeyer {
    /// Wraps the linkage secret of a domain.
    pub fn new(key: PseudonymKey) -> Self {
        LinkageKeyer { key }
    }
    /// ID1: from kana name, birth date and sex (L2).
    pub fn id1(&self, kana: &KanaName, birth: NaiveDate, sex: Sex) -> Result<LinkageKey, FieldError> {
        Ok(LinkageKey(self.key.mac_bytes(&[&id1_input(kana, birth, sex)?])))
    }
    /// ID2: from the individual insured-person number, birth date and sex (L2).
    pub fn id2(&self, number: &IndividualNumber, birth: NaiveDate, sex: Sex) -> Result<LinkageKey, FieldError> {
        Ok(LinkageKey(self.key.mac_bytes(&[&id2_input(number, birth, sex)?])))
    }
}

/// A keyer with a fixed, public key: for test vectors only.
#[doc(hidden)]
pub fn test_vector_keyer() -> LinkageKeyer {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    LinkageKeyer::new(PseudonymKey::from_bytes("linkage/test-vectors", 1, k))
}
