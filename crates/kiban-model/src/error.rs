//! Errors raised when a value does not parse into a model type.

/// A value that failed to parse, naming the field and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The input broke a format rule.
    #[error("{field}: {rule} (got {value:?})")]
    Invalid {
        /// Which field or type was being parsed.
        field: &'static str,
        /// The rule that was broken, in plain words.
        rule: String,
        /// The offending input, truncated.
        value: String,
    },
}

impl ModelError {
    /// Builds an [`ModelError::Invalid`], truncating long values so errors stay one line.
    pub fn invalid(field: &'static str, rule: impl Into<String>, value: &str) -> Self {
        let value: String = value.chars().take(40).collect();
        ModelError::Invalid { field, rule: rule.into(), value }
    }
}
