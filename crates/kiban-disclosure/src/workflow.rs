//! Product workflow (D9): a product is intermediate until it passes the check; a passing product is
//! final; an approved final product is an output. Types here are what the registry stores.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::DisclosureError;
use crate::report::Report;

/// Where a product stands (生成物 → 最終生成物 → 成果物).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    /// 中間生成物: does not meet the rules; shown only to handlers.
    Intermediate,
    /// 最終生成物: meets the rules, not yet approved.
    Final,
    /// 成果物: approved in the publication check.
    Output,
}

/// An approval of a final product: who checked it, when, and exactly which table (by SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The checker (公表物確認の確認者).
    pub checker: String,
    /// When approved.
    pub approved_at: DateTime<Utc>,
    /// Version: SHA-256 of the protected table as published.
    pub table_sha256: String,
    /// SHA-256 of the JSON report the approval rests on.
    pub report_sha256: String,
    /// The checker software version.
    pub kiban_version: String,
}

/// Approves a report's table; refuses one that did not pass (D9).
pub fn approve(report: &Report, checker: &str, at: DateTime<Utc>) -> Result<ApprovalRecord, DisclosureError> {
    if !report.passed {
        return Err(DisclosureError::NotApprovable(format!(
            "{} findings / audit passed: {}",
            report.findings.len(),
            report.audit.as_ref().is_none_or(|a| a.passed)
        )));
    }
    if checker.trim().is_empty() {
        return Err(DisclosureError::NotApprovable("checker is empty".into()));
    }
    Ok(ApprovalRecord {
        checker: checker.into(),
        approved_at: at,
        table_sha256: report.table_sha256.clone(),
        report_sha256: report.sha256(),
        kiban_version: env!("CARGO_PKG_VERSION").into(),
    })
}
