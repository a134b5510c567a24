//! Identifier newtypes: each is checked once when parsed and is valid everywhere after.

use serde::{Deserialize, Serialize};

use crate::ModelError;

fn check_token(field: &'static str, s: &str, max: usize) -> Result<(), ModelError> {
    if s.is_empty() || s.len() > max {
        return Err(ModelError::invalid(field, format!("must be 1–{max} characters"), s));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ModelError::invalid(field, "only ASCII letters, digits, '-' and '_' are allowed", s));
    }
    Ok(())
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses, naming the rule on failure.
            pub fn parse(s: &str) -> Result<Self, ModelError> {
                check_token($field, s, $max)?;
                Ok(Self(s.to_owned()))
            }
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = ModelError;
            fn try_from(s: String) -> Result<Self, ModelError> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, ModelError> {
                Self::parse(s)
            }
        }
    };
}

token_id!(
    /// A provider (医療情報取扱事業者) as kiban names it, e.g. `hosp-a`.
    ProviderId, "provider_id", 32
);
token_id!(
    /// A patient id local to one provider (カルテ番号 and the like); identifying, lives in the vault only.
    ProviderPatientId, "provider_patient_id", 32
);
token_id!(
    /// An intake batch.
    BatchId, "batch_id", 64
);

/// kiban's internal person key: random, meaningless outside kiban, the only link between
/// the identity vault and the clinical store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PersonKey(u64);

impl PersonKey {
    /// Wraps a raw key (drawn at random by the identity vault).
    pub fn from_u64(v: u64) -> Self {
        PersonKey(v)
    }
    /// The raw key.
    pub fn as_u64(self) -> u64 {
        self.0
    }
    /// Parses the display form `pk-` + 16 hex digits.
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        let hex = s.strip_prefix("pk-").filter(|h| h.len() == 16);
        hex.and_then(|h| u64::from_str_radix(h, 16).ok())
            .map(PersonKey)
            .ok_or_else(|| ModelError::invalid("person_key", "expected pk- and 16 hex digits", s))
    }
}

impl std::fmt::Display for PersonKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pk-{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_what_they_cannot_hold() {
        assert!(ProviderId::parse("hosp-a").is_ok());
        let e = ProviderId::parse("病院").unwrap_err().to_string();
        assert!(e.contains("provider_id") && e.contains("ASCII"), "{e}");
        assert!(ProviderId::parse("").is_err());
        assert!(ProviderId::parse(&"x".repeat(33)).is_err());
    }

    #[test]
    fn person_key_round_trips() {
        let k = PersonKey::from_u64(0xdead_beef);
        assert_eq!(PersonKey::parse(&k.to_string()).unwrap(), k);
        assert!(PersonKey::parse("pk-xyz").is_err());
    }
}
