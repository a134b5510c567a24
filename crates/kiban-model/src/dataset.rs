//! Datasets and the roles their columns play in processing (design: Processing policies).

use serde::{Deserialize, Serialize};

/// What a column is, for the anonymizer and the pseudonymizer. A column without a role is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnRole {
    /// A description that identifies a person (name, address, phone): deleted (A1, S1).
    Identifier,
    /// A personal identification code (insurer and card numbers, My Number): deleted or tokenized (A2, S2).
    IdCode,
    /// A code linking to the original data (kiban's person key): re-keyed per release (A3).
    LinkCode,
    /// A quasi-identifier: generalized by a named hierarchy (A5).
    QuasiIdentifier,
    /// A sensitive attribute: kept; may carry ℓ-diversity.
    Sensitive,
    /// A column whose rare values are unusual descriptions (A4): suppressed or top-coded.
    Rare,
    /// A financially risky description (card, bank account): deleted (S3).
    Financial,
    /// Free text: passed through the text de-identifier (S5).
    FreeText,
    /// A date: shifted or coarsened.
    Date,
    /// Kept as is.
    Keep,
}

/// Where a dataset's rows came from or went to, as written in its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// Synthetic provider export made by `kiban synth` (never real data).
    Synthetic,
    /// Clinical store (MDAT) after intake.
    Clinical,
    /// Output of anonymization (匿名加工).
    Anonymized,
    /// Output of pseudonymization (仮名加工).
    Pseudonymized,
}
