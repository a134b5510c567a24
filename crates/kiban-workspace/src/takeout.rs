//! Take-out (R7, D9): a handler selects a stored result; it goes through kiban-disclosure's
//! publication rules (O1–O9) as it is, and a table that passes waits for a checker's approval. Only the
//! approved version (bound by its SHA-256) is ever handed out. A refused table stays an intermediate
//! product inside the workspace.

use std::fs;

use chrono::{DateTime, Utc};
use kiban_disclosure::decl::Declaration;
use kiban_disclosure::report::{Mode, Report};
use kiban_disclosure::table::RawTable;
use kiban_disclosure::workflow::{ApprovalRecord, ProductStatus, approve};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::Workspace;
use crate::{WorkspaceError, io, new_id, valid_id};

/// Where a take-out stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TakeoutStatus {
    /// Failed the publication rules: stays inside as an intermediate product (生成物).
    Refused,
    /// Passed the rules (最終生成物); waits for a checker.
    AwaitingApproval,
    /// Approved by a checker (成果物): the approved version may be downloaded.
    Approved,
    /// The checker declined it.
    Declined,
}

/// A take-out request and its check (no cell values: the findings name rules and cells only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakeoutCheck {
    /// Id (`tko-…`).
    pub takeout_id: String,
    /// The result taken out.
    pub result_id: String,
    /// The handler who asked.
    pub handler: String,
    /// When asked.
    pub requested_at: DateTime<Utc>,
    /// Status.
    pub status: TakeoutStatus,
    /// D9 status from the check.
    pub product_status: ProductStatus,
    /// Rules broken (rule id and English message; Japanese in the sealed report).
    pub findings: Vec<String>,
    /// SHA-256 of the table as checked: the version an approval binds to.
    pub table_sha256: String,
    /// The approval, when approved.
    pub approval: Option<ApprovalRecord>,
    /// The checker's reason when declined.
    pub declined_reason: Option<String>,
}

impl Workspace {
    /// Puts result `result_id` through the publication check under `decl` for `handler`.
    pub fn request_takeout(
        &self,
        result_id: &str,
        handler: &str,
        decl: &Declaration,
        at: DateTime<Utc>,
    ) -> Result<TakeoutCheck, WorkspaceError> {
        let info = self.result_info(result_id)?;
        if info.truncated {
            return Err(WorkspaceError::Refused {
                rule: "D9",
                reason: format!("result {result_id} was cut by the row limit; only a whole table can be checked"),
            });
        }
        decl.validate().map_err(|e| WorkspaceError::Disclosure(e.to_string()))?;
        let csv = self.result_csv(result_id)?;
        let raw = RawTable::from_csv_str(result_id, &csv).map_err(|e| WorkspaceError::Disclosure(e.to_string()))?;
        let input_sha = hex::encode(Sha256::digest(csv.as_bytes()));
        let checked = kiban_disclosure::api::check_table(&raw, &input_sha, decl, None, Mode::Check, &[])
            .map_err(|e| WorkspaceError::Disclosure(e.to_string()))?;
        let report: &Report = &checked.report;
        let takeout_id = new_id("tko");
        let dir = self.root().join("takeouts").join(&takeout_id);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let seal = |name: &str, bytes: &[u8]| -> Result<(), WorkspaceError> {
            let p = dir.join(format!("{name}.kbs"));
            let sealed = self.sealer().seal(&aad(self.id(), &takeout_id, name), bytes);
            fs::write(&p, sealed).map_err(io(&p))
        };
        seal("table.csv", checked.csv.as_bytes())?;
        seal("report.json", report.to_json().as_bytes())?;
        let t = TakeoutCheck {
            takeout_id: takeout_id.clone(),
            result_id: result_id.to_owned(),
            handler: handler.to_owned(),
            requested_at: at,
            status: if report.passed { TakeoutStatus::AwaitingApproval } else { TakeoutStatus::Refused },
            product_status: report.status,
            findings: report.findings.iter().map(|f| format!("{:?}: {}", f.rule, f.message_en)).collect(),
            table_sha256: report.table_sha256.clone(),
            approval: None,
            declined_reason: None,
        };
        self.write_takeout(&t)?;
        Ok(t)
    }

    fn write_takeout(&self, t: &TakeoutCheck) -> Result<(), WorkspaceError> {
        let p = self.root().join("takeouts").join(&t.takeout_id).join("takeout.json");
        fs::write(&p, serde_json::to_vec_pretty(t).expect("json")).map_err(io(&p))
    }

    /// A take-out request.
    pub fn takeout(&self, id: &str) -> Result<TakeoutCheck, WorkspaceError> {
        let p = self.root().join("takeouts").join(id).join("takeout.json");
        if !valid_id(id, "tko") || !p.is_file() {
            return Err(WorkspaceError::NotFound { kind: "take-out", id: id.to_owned() });
        }
        let text = fs::read(&p).map_err(io(&p))?;
        serde_json::from_slice(&text).map_err(|e| WorkspaceError::Disclosure(format!("take-out {id}: {e}")))
    }

    /// Every take-out request.
    pub fn takeouts(&self) -> Result<Vec<TakeoutCheck>, WorkspaceError> {
        let dir = self.root().join("takeouts");
        let mut v = Vec::new();
        for e in fs::read_dir(&dir).map_err(io(&dir))?.filter_map(|e| e.ok()) {
            let id = e.file_name().to_string_lossy().into_owned();
            if valid_id(&id, "tko") {
                v.push(self.takeout(&id)?);
            }
        }
        v.sort_by_key(|t| t.requested_at);
        Ok(v)
    }

    /// A checker decides a take-out that passed the rules (D9). The checker may not be the handler
    /// who asked; only a table that passed can be approved. On approval the checked table becomes
    /// the output, the only file of the workspace that can be downloaded.
    pub fn decide_takeout(
        &self,
        id: &str,
        checker: &str,
        approve_it: bool,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<TakeoutCheck, WorkspaceError> {
        let mut t = self.takeout(id)?;
        if t.status != TakeoutStatus::AwaitingApproval {
            return Err(WorkspaceError::Refused {
                rule: "D9",
                reason: format!("take-out {id} is {:?}, not awaiting approval", t.status),
            });
        }
        if checker.trim().is_empty() || checker == t.handler {
            return Err(WorkspaceError::Refused {
                rule: "D9",
                reason: "the checker must be someone other than the handler who asked".into(),
            });
        }
        if !approve_it {
            if reason.trim().is_empty() {
                return Err(WorkspaceError::Refused { rule: "R7", reason: "a refusal states its reason".into() });
            }
            t.status = TakeoutStatus::Declined;
            t.declined_reason = Some(reason.to_owned());
            self.write_takeout(&t)?;
            return Ok(t);
        }
        let report_json = self.open_sealed(id, "report.json")?;
        let report: Report = serde_json::from_slice(&report_json)
            .map_err(|e| WorkspaceError::Disclosure(format!("take-out {id}: report: {e}")))?;
        let approval = approve(&report, checker, at).map_err(|e| WorkspaceError::Disclosure(e.to_string()))?;
        let table = self.open_sealed(id, "table.csv")?;
        if hex::encode(Sha256::digest(&table)) != approval.table_sha256 {
            return Err(WorkspaceError::Disclosure(format!(
                "take-out {id}: the checked table changed after the check"
            )));
        }
        let out = self.root().join("outputs").join(format!("{id}.csv"));
        fs::write(&out, &table).map_err(io(&out))?;
        t.status = TakeoutStatus::Approved;
        t.approval = Some(approval);
        self.write_takeout(&t)?;
        Ok(t)
    }

    /// The approved output of take-out `id`: its bytes, checked against the approval's SHA-256.
    pub fn approved_output(&self, id: &str) -> Result<(Vec<u8>, ApprovalRecord), WorkspaceError> {
        let t = self.takeout(id)?;
        let (TakeoutStatus::Approved, Some(a)) = (t.status, t.approval) else {
            return Err(WorkspaceError::Refused {
                rule: "D9",
                reason: format!("take-out {id} is not approved; only approved outputs leave"),
            });
        };
        let p = self.root().join("outputs").join(format!("{id}.csv"));
        let bytes = fs::read(&p).map_err(io(&p))?;
        if hex::encode(Sha256::digest(&bytes)) != a.table_sha256 {
            return Err(WorkspaceError::Disclosure(format!(
                "take-out {id}: the output differs from the approved version"
            )));
        }
        Ok((bytes, a))
    }

    /// The full report of a take-out (Japanese and English findings), for the handler's screen.
    pub fn takeout_report(&self, id: &str) -> Result<Report, WorkspaceError> {
        self.takeout(id)?;
        let bytes = self.open_sealed(id, "report.json")?;
        serde_json::from_slice(&bytes).map_err(|e| WorkspaceError::Disclosure(format!("take-out {id}: report: {e}")))
    }

    fn open_sealed(&self, id: &str, name: &str) -> Result<Vec<u8>, WorkspaceError> {
        let p = self.root().join("takeouts").join(id).join(format!("{name}.kbs"));
        let raw = fs::read(&p).map_err(io(&p))?;
        self.sealer()
            .open(&aad(self.id(), id, name), &raw)
            .map_err(|e| WorkspaceError::Disclosure(format!("take-out {id}: {name} does not decrypt: {e}")))
    }
}

fn aad(ws: &str, takeout: &str, name: &str) -> Vec<u8> {
    format!("kiban workspace takeout v1\0{ws}\0{takeout}\0{name}").into_bytes()
}
