//! Errors of the anonymization engine. Every error names the column (or file) and the rule broken;
//! none ever carries a key, a token or a mapping (A6).

use thiserror::Error;

/// An error of policy validation, hierarchy building, input reading or anonymization.
#[derive(Debug, Error)]
pub enum DeidError {
    /// The policy breaks a rule; `subject` names the column, hierarchy or setting.
    #[error("policy: {subject}: {rule}")]
    Policy {
        /// The column, hierarchy or setting at fault.
        subject: String,
        /// The rule that was broken.
        rule: String,
    },
    /// A hierarchy file or builder is malformed.
    #[error("hierarchy {hierarchy}: {rule}")]
    Hierarchy {
        /// The hierarchy name.
        hierarchy: String,
        /// The rule that was broken (with line number when from a file).
        rule: String,
    },
    /// A value of a quasi-identifier is not in its hierarchy and the declared rule is `error`.
    #[error("column {column}: value not covered by hierarchy {hierarchy} (rule: missing = \"error\")")]
    MissingValue {
        /// The column.
        column: String,
        /// The hierarchy.
        hierarchy: String,
    },
    /// The input does not match the policy (a column without a role, a column missing).
    #[error("input column {column}: {rule}")]
    Schema {
        /// The column.
        column: String,
        /// The rule that was broken.
        rule: String,
    },
    /// No transformation meets the privacy model within the suppression limit.
    #[error("privacy model: {0}")]
    NoSolution(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// CSV, Arrow or Parquet failed.
    #[error("{path}: {message}")]
    Format {
        /// The file (or `<batches>`).
        path: String,
        /// The cause.
        message: String,
    },
}

impl DeidError {
    /// A policy error naming `subject` and the `rule`.
    pub fn policy(subject: impl Into<String>, rule: impl Into<String>) -> Self {
        DeidError::Policy { subject: subject.into(), rule: rule.into() }
    }
    /// A hierarchy error naming the hierarchy and the `rule`.
    pub fn hierarchy(hierarchy: impl Into<String>, rule: impl Into<String>) -> Self {
        DeidError::Hierarchy { hierarchy: hierarchy.into(), rule: rule.into() }
    }
    /// A format error for `path`.
    pub fn format(path: impl Into<String>, message: impl std::fmt::Display) -> Self {
        DeidError::Format { path: path.into(), message: message.to_string() }
    }
}

/// Result with [`DeidError`].
pub type Result<T> = std::result::Result<T, DeidError>;
