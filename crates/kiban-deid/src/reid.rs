//! Re-identification for an approval inspection (S7) and release to third parties (S8).
//!
//! S7: re-identification is forbidden except when the creator is inspected for a drug or device
//! approval by MHLW, PMDA or a foreign equivalent (EMA, MHRA, FDA). A [`Reidentifier`] opens only
//! for such a request carrying two approvals by distinct approvers; every look-up goes through the
//! audit callback first, and a look-up whose audit fails is refused. Nothing stores a mapping: the
//! look-up recomputes the tokens of the candidate person keys under the release key and compares.
//!
//! S8: a user may pass pseudonymized information to a third party only for a drug/device approval,
//! and only to MHLW, PMDA, EMA, MHRA or FDA ([`check_third_party`]).

use thiserror::Error;

use crate::pseudo::ReleaseKey;

/// An authority that may inspect for, or receive data for, a drug or device approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Authority {
    /// 厚生労働省.
    Mhlw,
    /// 医薬品医療機器総合機構.
    Pmda,
    /// European Medicines Agency.
    Ema,
    /// Medicines and Healthcare products Regulatory Agency (UK).
    Mhra,
    /// U.S. Food and Drug Administration.
    Fda,
}

impl Authority {
    /// Parses a recipient name (case-insensitive short names, or 厚生労働省 / 医薬品医療機器総合機構).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "MHLW" | "厚生労働省" => Some(Authority::Mhlw),
            "PMDA" | "医薬品医療機器総合機構" => Some(Authority::Pmda),
            "EMA" => Some(Authority::Ema),
            "MHRA" => Some(Authority::Mhra),
            "FDA" => Some(Authority::Fda),
            _ => None,
        }
    }
}

/// Why data is looked up or passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Inspection or review for a drug approval (医薬品の承認).
    DrugApproval,
    /// Inspection or review for a medical device approval (医療機器の承認).
    DeviceApproval,
    /// Anything else (research, marketing, litigation …): never allowed here.
    Other(String),
}

impl Purpose {
    fn is_approval(&self) -> bool {
        matches!(self, Purpose::DrugApproval | Purpose::DeviceApproval)
    }
}

/// A recipient of pseudonymized information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// One of the approval authorities.
    Authority(Authority),
    /// Anyone else, by name.
    Other(String),
}

/// A refused S7 or S8 request; never carries a key, token or person key.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReidError {
    /// The purpose is not a drug/device approval.
    #[error("purpose {0:?} is not a drug or device approval (rule: {1})")]
    Purpose(String, &'static str),
    /// The recipient is not one of MHLW, PMDA, EMA, MHRA, FDA.
    #[error("recipient {0:?} is not MHLW, PMDA, EMA, MHRA or FDA (rule: S8)")]
    Recipient(String),
    /// Fewer than two distinct approvers.
    #[error("re-identification needs two approvals by distinct approvers; {0} distinct given (rule: S7)")]
    Approvals(usize),
    /// The inspection reference is empty.
    #[error("the inspection reference is empty (rule: S7)")]
    Reference,
    /// The audit callback failed: the look-up is refused.
    #[error("audit record could not be written, look-up refused (rule: S7): {0}")]
    Audit(String),
}

/// S8: may pseudonymized information be passed to `recipient` for `purpose`?
pub fn check_third_party(recipient: &Recipient, purpose: &Purpose) -> Result<Authority, ReidError> {
    let a = match recipient {
        Recipient::Authority(a) => *a,
        Recipient::Other(name) => return Err(ReidError::Recipient(name.clone())),
    };
    if !purpose.is_approval() {
        return Err(ReidError::Purpose(purpose_name(purpose), "S8"));
    }
    Ok(a)
}

fn purpose_name(p: &Purpose) -> String {
    match p {
        Purpose::DrugApproval => "drug approval".into(),
        Purpose::DeviceApproval => "device approval".into(),
        Purpose::Other(s) => s.clone(),
    }
}

/// One approval of a re-identification request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Who approved (an account id).
    pub approver: String,
    /// When (RFC 3339).
    pub at: String,
}

/// An inspection request asking to re-identify records (S7).
#[derive(Debug, Clone)]
pub struct InspectionRequest {
    /// The inspecting authority.
    pub authority: Authority,
    /// Why.
    pub purpose: Purpose,
    /// The inspection's reference (case number).
    pub reference: String,
    /// Approvals recorded for this request.
    pub approvals: Vec<Approval>,
}

/// What the audit callback receives for every look-up (no key, no person key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupEvent {
    /// The inspection reference.
    pub reference: String,
    /// The authority.
    pub authority: Authority,
    /// The approvers.
    pub approvers: Vec<String>,
    /// Column whose token is looked up.
    pub column: String,
    /// The token looked up (already in the released data).
    pub token: String,
    /// Candidates compared.
    pub candidates: u64,
}

/// The audit callback of a re-identification session.
pub type AuditFn<'k> = Box<dyn FnMut(&LookupEvent) -> Result<(), String> + 'k>;

/// The only way from a token back to a person: opened for an approval inspection with two approvals.
pub struct Reidentifier<'k> {
    key: &'k ReleaseKey,
    request: InspectionRequest,
    audit: AuditFn<'k>,
}

impl std::fmt::Debug for Reidentifier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reidentifier").field("reference", &self.request.reference).finish_non_exhaustive()
    }
}

impl<'k> Reidentifier<'k> {
    /// Opens a re-identification session; refuses anything but an approval inspection with two
    /// approvals by distinct approvers.
    pub fn open(
        request: InspectionRequest,
        key: &'k ReleaseKey,
        audit: impl FnMut(&LookupEvent) -> Result<(), String> + 'k,
    ) -> Result<Self, ReidError> {
        if !request.purpose.is_approval() {
            return Err(ReidError::Purpose(purpose_name(&request.purpose), "S7"));
        }
        if request.reference.trim().is_empty() {
            return Err(ReidError::Reference);
        }
        let mut who: Vec<&str> =
            request.approvals.iter().map(|a| a.approver.trim()).filter(|a| !a.is_empty()).collect();
        who.sort_unstable();
        who.dedup();
        if who.len() < 2 {
            return Err(ReidError::Approvals(who.len()));
        }
        Ok(Reidentifier { key, request, audit: Box::new(audit) })
    }

    /// The candidates (person keys as released under `column`) whose token equals `token`. The audit
    /// record is written first; if it fails nothing is compared.
    pub fn lookup<'c>(
        &mut self,
        column: &str,
        token: &str,
        candidates: impl IntoIterator<Item = &'c str>,
    ) -> Result<Vec<String>, ReidError> {
        let cands: Vec<&str> = candidates.into_iter().collect();
        let ev = LookupEvent {
            reference: self.request.reference.clone(),
            authority: self.request.authority,
            approvers: self.request.approvals.iter().map(|a| a.approver.clone()).collect(),
            column: column.to_owned(),
            token: token.to_owned(),
            candidates: cands.len() as u64,
        };
        (self.audit)(&ev).map_err(ReidError::Audit)?;
        Ok(cands.into_iter().filter(|c| self.key.token(column, c) == token).map(str::to_owned).collect())
    }
}
