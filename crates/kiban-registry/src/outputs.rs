//! Approvals of publication-checked products (D9; 004 第2-13/14: 生成物 are shown to no one but
//! handlers unless approved in the publication check). An approval names the version of the table it
//! approves (the SHA-256 of the protected table as published) and the SHA-256 of the report it rests
//! on. The table `output_approvals` is append-only: a correction or a withdrawal is a new row
//! pointing at the row it corrects, at most one per row (a unique index), so every chain is a line
//! and its last row is in force.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Registry, RegistryError};

/// What an approval row decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    /// The table version may be shown to non-handlers (成果物).
    Approved,
    /// An earlier approval no longer holds (the product is a final product again, not an output).
    Withdrawn,
}

impl ApprovalDecision {
    fn as_str(self) -> &'static str {
        match self {
            ApprovalDecision::Approved => "approved",
            ApprovalDecision::Withdrawn => "withdrawn",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "approved" => Some(ApprovalDecision::Approved),
            "withdrawn" => Some(ApprovalDecision::Withdrawn),
            _ => None,
        }
    }
}

/// One row of `output_approvals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputApproval {
    /// Row id.
    pub approval_id: String,
    /// The table version approved: SHA-256 of the protected table as published.
    pub table_sha256: String,
    /// SHA-256 of the check report the decision rests on.
    pub report_sha256: String,
    /// The checker (account id) who decided.
    pub checker: String,
    /// Approved or withdrawn.
    pub decision: ApprovalDecision,
    /// The checker's comment.
    pub comment: String,
    /// The checking software's version.
    pub kiban_version: String,
    /// The row this one corrects, if any.
    pub corrects: Option<String>,
    /// When recorded.
    pub recorded_at: DateTime<Utc>,
}

/// A new approval of a table version that passed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutputApproval {
    /// SHA-256 (hex) of the protected table.
    pub table_sha256: String,
    /// SHA-256 (hex) of the report.
    pub report_sha256: String,
    /// The checker's account id.
    pub checker: String,
    /// The checker's comment.
    pub comment: String,
    /// The checking software's version.
    pub kiban_version: String,
}

/// Why an approval was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum OutputApprovalError {
    /// A hash field is not 64 hex digits.
    #[error("{field}: {value:?} is not a SHA-256 (64 hex digits)")]
    BadSha256 {
        /// The field.
        field: &'static str,
        /// What was given.
        value: String,
    },
    /// No checker named.
    #[error("checker is empty: an approval names who decided")]
    NoChecker,
    /// The corrected row does not exist.
    #[error("approval {0} does not exist")]
    Unknown(String),
    /// The corrected row was already corrected: correct the last row of the chain.
    #[error("approval {id} was already corrected by {by}; correct the last row of the chain")]
    NotLatest {
        /// The row named.
        id: String,
        /// The row correcting it.
        by: String,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

fn sha_ok(field: &'static str, v: &str) -> Result<(), OutputApprovalError> {
    if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(OutputApprovalError::BadSha256 { field, value: v.chars().take(80).collect() })
    }
}

fn db(e: sqlx::Error) -> OutputApprovalError {
    OutputApprovalError::Registry(RegistryError::from(e))
}

/// The columns of `output_approvals` (a macro so queries stay literal, static SQL).
macro_rules! columns {
    () => {
        "approval_id, table_sha256, report_sha256, checker, decision, comment, kiban_version, corrects, recorded_at"
    };
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<OutputApproval, RegistryError> {
    let decision: String = r.try_get("decision")?;
    let at: String = r.try_get("recorded_at")?;
    let bad = |what: &str| RegistryError::from(sqlx::Error::Decode(format!("output_approvals.{what}").into()));
    Ok(OutputApproval {
        approval_id: r.try_get("approval_id")?,
        table_sha256: r.try_get("table_sha256")?,
        report_sha256: r.try_get("report_sha256")?,
        checker: r.try_get("checker")?,
        decision: ApprovalDecision::parse(&decision).ok_or_else(|| bad("decision"))?,
        comment: r.try_get("comment")?,
        kiban_version: r.try_get("kiban_version")?,
        corrects: r.try_get("corrects")?,
        recorded_at: DateTime::parse_from_rfc3339(&at).map_err(|_| bad("recorded_at"))?.with_timezone(&Utc),
    })
}

impl Registry {
    /// Records the approval of a table version (the caller has checked that its report passed).
    pub async fn record_output_approval(
        &self,
        a: &NewOutputApproval,
        now: DateTime<Utc>,
    ) -> Result<OutputApproval, OutputApprovalError> {
        sha_ok("table_sha256", &a.table_sha256)?;
        sha_ok("report_sha256", &a.report_sha256)?;
        if a.checker.trim().is_empty() {
            return Err(OutputApprovalError::NoChecker);
        }
        let row = OutputApproval {
            approval_id: crate::records::new_id("approval"),
            table_sha256: a.table_sha256.to_ascii_lowercase(),
            report_sha256: a.report_sha256.to_ascii_lowercase(),
            checker: a.checker.clone(),
            decision: ApprovalDecision::Approved,
            comment: a.comment.clone(),
            kiban_version: a.kiban_version.clone(),
            corrects: None,
            recorded_at: now,
        };
        self.insert_output_approval(&row).await?;
        Ok(row)
    }

    /// Corrects approval `id` with a new row by `checker`: a new decision (e.g. a withdrawal) and
    /// comment for the same table version. Only the last row of a chain can be corrected.
    pub async fn correct_output_approval(
        &self,
        id: &str,
        decision: ApprovalDecision,
        checker: &str,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<OutputApproval, OutputApprovalError> {
        if checker.trim().is_empty() {
            return Err(OutputApprovalError::NoChecker);
        }
        let q = concat!("SELECT ", columns!(), " FROM output_approvals WHERE approval_id = $1");
        let old = sqlx::query(q).bind(id).fetch_optional(&self.pool).await.map_err(db)?;
        let old = from_row(&old.ok_or_else(|| OutputApprovalError::Unknown(id.to_owned()))?)?;
        let by = sqlx::query("SELECT approval_id FROM output_approvals WHERE corrects = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        if let Some(r) = by {
            return Err(OutputApprovalError::NotLatest {
                id: id.to_owned(),
                by: r.try_get("approval_id").map_err(db)?,
            });
        }
        let row = OutputApproval {
            approval_id: crate::records::new_id("approval"),
            checker: checker.to_owned(),
            decision,
            comment: comment.to_owned(),
            kiban_version: env!("CARGO_PKG_VERSION").to_owned(),
            corrects: Some(old.approval_id.clone()),
            recorded_at: now,
            ..old
        };
        // The unique index on `corrects` refuses a concurrent second correction of the same row.
        self.insert_output_approval(&row).await?;
        Ok(row)
    }

    async fn insert_output_approval(&self, r: &OutputApproval) -> Result<(), OutputApprovalError> {
        sqlx::query(concat!(
            "INSERT INTO output_approvals (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&r.approval_id)
        .bind(&r.table_sha256)
        .bind(&r.report_sha256)
        .bind(&r.checker)
        .bind(r.decision.as_str())
        .bind(&r.comment)
        .bind(&r.kiban_version)
        .bind(r.corrects.clone())
        .bind(r.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Every row about a table version, oldest first.
    pub async fn output_approvals(&self, table_sha256: &str) -> Result<Vec<OutputApproval>, RegistryError> {
        let q = concat!(
            "SELECT ",
            columns!(),
            " FROM output_approvals WHERE table_sha256 = $1 ORDER BY recorded_at, approval_id"
        );
        let rows = sqlx::query(q).bind(table_sha256.to_ascii_lowercase()).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// The approval in force for a table version: the latest last-of-chain row that approves it.
    /// `None` means the product may not be shown to anyone but handlers.
    pub async fn output_approval_in_force(&self, table_sha256: &str) -> Result<Option<OutputApproval>, RegistryError> {
        let rows = self.output_approvals(table_sha256).await?;
        let corrected: std::collections::HashSet<&str> = rows.iter().filter_map(|r| r.corrects.as_deref()).collect();
        Ok(rows
            .iter()
            .rfind(|r| !corrected.contains(r.approval_id.as_str()) && r.decision == ApprovalDecision::Approved)
            .cloned())
    }
}
