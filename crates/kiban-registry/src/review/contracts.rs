//! Keeping the contracts of R8 (joint use) and R10 (transfers between creators): checked against
//! their rules before they are recorded, append-only, with a digest of what was recorded.

use chrono::NaiveDate;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::agreement::{JointUseAgreement, TransferContract};
use crate::records::{RecordError, invalid, new_id};
use crate::store::{Registry, now};

/// A contract as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptContract {
    /// Id.
    pub contract_id: String,
    /// `joint_use` (R8) or `transfer` (R10).
    pub kind: String,
    /// The application a joint use belongs to.
    pub application_id: Option<String>,
    /// The contract's items as recorded.
    pub contract: serde_json::Value,
    /// SHA-256 of the recorded JSON.
    pub sha256: String,
    /// Signed on.
    pub signed_on: NaiveDate,
    /// The contract this one replaces.
    pub supersedes: Option<String>,
}

impl Registry {
    /// Records a joint-use agreement after checking the seven items of R8.
    pub async fn record_joint_use(
        &self,
        a: &JointUseAgreement,
        application_id: Option<&str>,
        signed_on: NaiveDate,
        supersedes: Option<&str>,
        by: &str,
    ) -> Result<KeptContract, RecordError> {
        if let Some(f) = a.check().into_iter().next() {
            return Err(invalid("joint_use", "R8", f.to_string()));
        }
        self.keep_contract(
            "joint_use",
            serde_json::to_value(a).expect("json"),
            application_id,
            signed_on,
            supersedes,
            by,
        )
        .await
    }

    /// Records a transfer contract between creators after checking R10.
    pub async fn record_transfer(
        &self,
        c: &TransferContract,
        supersedes: Option<&str>,
        by: &str,
    ) -> Result<KeptContract, RecordError> {
        if let Some(f) = c.check().into_iter().next() {
            return Err(invalid("transfer", "R10", f.to_string()));
        }
        self.keep_contract("transfer", serde_json::to_value(c).expect("json"), None, c.signed_on, supersedes, by).await
    }

    async fn keep_contract(
        &self,
        kind: &str,
        json: serde_json::Value,
        application_id: Option<&str>,
        signed_on: NaiveDate,
        supersedes: Option<&str>,
        by: &str,
    ) -> Result<KeptContract, RecordError> {
        if let Some(s) = supersedes
            && !self.contracts().await?.iter().any(|c| c.contract_id == s)
        {
            return Err(RecordError::NotFound { kind: "contract", id: s.to_owned() });
        }
        let text = serde_json::to_string(&json).expect("json");
        let sha = hex::encode(Sha256::digest(text.as_bytes()));
        let id = new_id("ctr");
        sqlx::query(
            "INSERT INTO contracts (contract_id, kind, application_id, contract_json, sha256, signed_on, supersedes, \
             recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(kind)
        .bind(application_id)
        .bind(&text)
        .bind(&sha)
        .bind(signed_on.to_string())
        .bind(supersedes)
        .bind(by)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(KeptContract {
            contract_id: id,
            kind: kind.to_owned(),
            application_id: application_id.map(str::to_owned),
            contract: json,
            sha256: sha,
            signed_on,
            supersedes: supersedes.map(str::to_owned),
        })
    }

    /// Every kept contract, by signing date.
    pub async fn contracts(&self) -> Result<Vec<KeptContract>, RecordError> {
        let rows = sqlx::query(
            "SELECT contract_id, kind, application_id, contract_json, sha256, signed_on, supersedes FROM contracts \
             ORDER BY signed_on, recorded_at, contract_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let json: String = r.try_get(3)?;
                let signed: String = r.try_get(5)?;
                Ok(KeptContract {
                    contract_id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    application_id: r.try_get(2)?,
                    contract: serde_json::from_str(&json)
                        .map_err(|e| invalid("contract_json", "R10", format!("stored contract does not parse: {e}")))?,
                    sha256: r.try_get(4)?,
                    signed_on: crate::records::date(&signed)?,
                    supersedes: r.try_get(6)?,
                })
            })
            .collect()
    }
}
