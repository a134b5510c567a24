//! The review workflow as a pure state machine: no SQL, no clock. [`handle`] takes the state of one
//! application and a command and returns the events it causes or a typed error; [`apply`] folds an
//! event into the state. The registry stores the events append-only and replays them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

use super::agreement::{Agreement, fee_exemption, fee_yen};
use super::application::{Application, Change, ChangeClass, Handler, PrecheckFailure, classify_change, precheck};
use super::committee::{CompositionViolation, Member, check_composition};

/// Where an application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing submitted yet.
    Draft,
    /// Submitted; a pre-check failed; the applicant must resubmit.
    PrecheckFailed,
    /// Submitted and pre-checked; waiting for the committee.
    Submitted,
    /// The committee is reviewing.
    UnderReview,
    /// The committee asked for revisions.
    RevisionRequested,
    /// Approved: provision may follow (agreement, fee, period permitting).
    Approved,
    /// Refused (final).
    Refused,
    /// Use ended (period expired or ended by the user/creator).
    Ended,
}

/// A member's vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteKind {
    /// In favour.
    Approve,
    /// In favour with conditions.
    ApproveWithConditions,
    /// Ask for revisions.
    Revise,
    /// Against.
    Refuse,
}

impl VoteKind {
    /// In favour of provision.
    pub fn in_favour(self) -> bool {
        matches!(self, VoteKind::Approve | VoteKind::ApproveWithConditions)
    }
}

/// The committee's decision (D3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Decision {
    /// 承諾.
    Approve {
        /// ii) 提供予定時期.
        expected_provision: String,
        /// iii) conditions (empty for a plain approval).
        conditions: Vec<String>,
        /// iv) other guidelines to follow.
        guidelines: Vec<String>,
        /// v) remarks.
        remarks: String,
        /// The processing policy approved for this use, by its SHA-256 (A7: the degree of
        /// processing is set per use); when set, only a dataset made under it may be released.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processing_policy_sha256: Option<String>,
    },
    /// Revise and resubmit.
    Revise {
        /// What to revise.
        requests: Vec<String>,
    },
    /// 不承諾 with reasons.
    Refuse {
        /// Reasons.
        reasons: Vec<String>,
    },
}

/// A user's request (R7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Combine own data.
    OwnData,
    /// Bring own tools.
    OwnTools,
    /// Take an output out.
    OutputTakeOut,
}

/// Supervisory reports (D7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// 利用実績報告: within 3 months of each publication.
    Usage,
    /// 管理状況報告: when use passes 2 years.
    Management,
    /// Results cannot be published: a report with reasons.
    NoPublication,
}

/// One medium handed over (D6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Medium {
    /// Serial or label.
    pub medium_id: String,
    /// The place of use it goes to.
    pub place_id: String,
}

/// What a release carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSpec {
    /// kiban's id for the release.
    pub release_id: String,
    /// Date of provision.
    pub on: NaiveDate,
    /// SHA-256 of the package manifest.
    pub manifest_sha256: String,
    /// Items provided.
    pub items: Vec<String>,
    /// Media (portable media only; empty otherwise).
    pub media: Vec<Medium>,
    /// SHA-256 of the processing policy the released dataset was made under (from its manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_sha256: Option<String>,
}

/// A command to the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "command")]
pub enum Command {
    /// Submit (or resubmit after revision / failed pre-check).
    Submit {
        /// The application.
        application: Box<Application>,
        /// The contact person is the contact of another open application (D2).
        contact_has_other_open: bool,
        /// The applicant is banned until this day (or indefinitely: `ban_indefinite`) (D8).
        banned_until: Option<NaiveDate>,
        /// An indefinite ban is in force.
        ban_indefinite: bool,
        /// Submission date.
        on: NaiveDate,
    },
    /// Open the review with the committee sitting on `on`.
    OpenReview {
        /// All members (the check keeps those in term).
        committee: Vec<Member>,
        /// The meeting date.
        on: NaiveDate,
    },
    /// A member declares a conflict of interest.
    DeclareConflict {
        /// Member id.
        member_id: String,
        /// What the conflict is.
        reason: String,
    },
    /// A member votes with reasons.
    Vote {
        /// Member id.
        member_id: String,
        /// The vote.
        vote: VoteKind,
        /// Reasons.
        reason: String,
    },
    /// The committee decides.
    Decide {
        /// The decision.
        decision: Decision,
        /// The date.
        on: NaiveDate,
    },
    /// The agreement (R3) is signed.
    ConcludeAgreement {
        /// The agreement.
        agreement: Box<Agreement>,
    },
    /// Fee estimate on approval (D5).
    EstimateFee {
        /// Hourly rate (健保令 第44条の2 or the creator's schedule).
        hourly_rate_yen: u64,
        /// Estimated minutes.
        minutes: u64,
    },
    /// Actual fee after preparation (D5).
    FinalFee {
        /// Hourly rate.
        hourly_rate_yen: u64,
        /// Recorded minutes.
        minutes: u64,
    },
    /// Payment received.
    RecordPayment {
        /// Amount.
        amount_yen: u64,
        /// Date.
        on: NaiveDate,
    },
    /// Provide the data.
    Release {
        /// What is provided.
        spec: ReleaseSpec,
    },
    /// The user acknowledges receipt (D6).
    AcknowledgeReceipt {
        /// Release id.
        release_id: String,
        /// Date.
        on: NaiveDate,
    },
    /// A change after approval (D4).
    RequestChange {
        /// The change.
        change: Change,
        /// Date.
        on: NaiveDate,
    },
    /// A result was published (starts the 3-month usage report clock, D7).
    RecordPublication {
        /// Date.
        on: NaiveDate,
        /// Citation.
        citation: String,
    },
    /// A report was filed (D7).
    FileReport {
        /// Which report.
        kind: ReportKind,
        /// Date.
        on: NaiveDate,
    },
    /// The usage period has passed: end the entitlement (R5).
    Expire {
        /// The day it is noticed.
        as_of: NaiveDate,
    },
    /// End of use confirmed by a deletion certificate for a place (D7, R5).
    DeletionCertificate {
        /// Place id.
        place_id: String,
        /// Date of deletion.
        on: NaiveDate,
        /// Who deleted: the user (Type I) or the creator (Type II).
        deleted_by: String,
        /// SHA-256 of the certificate document the user handed in (required when the user deleted).
        #[serde(default)]
        certificate_sha256: Option<String>,
    },
    /// A user's request (R7).
    UserRequest {
        /// Kind.
        kind: RequestKind,
        /// Detail.
        detail: String,
    },
    /// The decision on a user's request (R7).
    DecideRequest {
        /// Index of the request.
        index: usize,
        /// Granted.
        granted: bool,
        /// Reason.
        reason: String,
    },
    /// The creator's periodic audit of the user (R5).
    RecordAudit {
        /// Date.
        on: NaiveDate,
        /// What was found.
        findings: String,
    },
    /// A sanction stops use (D8).
    Suspend {
        /// Sanction id.
        sanction_id: String,
        /// Last day of the stop (None = indefinite / until done).
        until: Option<NaiveDate>,
    },
}

/// What happened; the stored log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// Submitted and passed the pre-checks.
    Submitted {
        /// The application.
        application: Box<Application>,
        /// Date.
        on: NaiveDate,
    },
    /// Submitted and failed the pre-checks.
    PrecheckFailed {
        /// The application.
        application: Box<Application>,
        /// Failures.
        failures: Vec<PrecheckFailure>,
        /// Date.
        on: NaiveDate,
    },
    /// Review opened with the members in term.
    ReviewOpened {
        /// The sitting members.
        committee: Vec<Member>,
        /// Date.
        on: NaiveDate,
    },
    /// Conflict declared.
    ConflictDeclared {
        /// Member.
        member_id: String,
        /// Reason.
        reason: String,
    },
    /// Vote cast.
    Voted {
        /// Member.
        member_id: String,
        /// Vote.
        vote: VoteKind,
        /// Reason.
        reason: String,
    },
    /// Decided.
    Decided {
        /// Decision.
        decision: Decision,
        /// Date.
        on: NaiveDate,
    },
    /// Agreement signed.
    AgreementConcluded {
        /// Agreement.
        agreement: Box<Agreement>,
    },
    /// Fee estimated.
    FeeEstimated {
        /// Amount.
        amount_yen: u64,
        /// Exemption reason, if exempt.
        exempt: Option<String>,
    },
    /// Fee fixed.
    FeeFixed {
        /// Amount.
        amount_yen: u64,
        /// Exemption reason.
        exempt: Option<String>,
    },
    /// Fee paid.
    Paid {
        /// Amount.
        amount_yen: u64,
        /// Date.
        on: NaiveDate,
    },
    /// Released.
    Released {
        /// What.
        spec: ReleaseSpec,
    },
    /// Receipt acknowledged.
    ReceiptAcknowledged {
        /// Release.
        release_id: String,
        /// Date.
        on: NaiveDate,
    },
    /// A notify-only change applied.
    ChangeNotified {
        /// Change.
        change: Change,
        /// Date.
        on: NaiveDate,
    },
    /// A change sent back to the committee.
    ChangeForReview {
        /// Change.
        change: Change,
        /// Date.
        on: NaiveDate,
    },
    /// Publication recorded.
    Published {
        /// Date.
        on: NaiveDate,
        /// Citation.
        citation: String,
    },
    /// Report filed.
    ReportFiled {
        /// Kind.
        kind: ReportKind,
        /// Date.
        on: NaiveDate,
    },
    /// The creator audited the user (R5).
    Audited {
        /// Date.
        on: NaiveDate,
        /// Findings.
        findings: String,
    },
    /// Entitlement ended.
    EntitlementEnded {
        /// Date.
        on: NaiveDate,
    },
    /// Deletion certified.
    DeletionCertified {
        /// Place.
        place_id: String,
        /// Date.
        on: NaiveDate,
        /// Who.
        deleted_by: String,
        /// SHA-256 of the user's certificate document, when the user deleted.
        #[serde(default)]
        certificate_sha256: Option<String>,
    },
    /// Request received.
    RequestReceived {
        /// Kind.
        kind: RequestKind,
        /// Detail.
        detail: String,
    },
    /// Request decided.
    RequestDecided {
        /// Index.
        index: usize,
        /// Granted.
        granted: bool,
        /// Reason.
        reason: String,
    },
    /// Use stopped.
    Suspended {
        /// Sanction.
        sanction_id: String,
        /// Until.
        until: Option<NaiveDate>,
    },
}

impl Event {
    /// The stored kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Submitted { .. } => "submitted",
            Event::PrecheckFailed { .. } => "precheck_failed",
            Event::ReviewOpened { .. } => "review_opened",
            Event::ConflictDeclared { .. } => "conflict_declared",
            Event::Voted { .. } => "voted",
            Event::Decided { .. } => "decided",
            Event::AgreementConcluded { .. } => "agreement_concluded",
            Event::FeeEstimated { .. } => "fee_estimated",
            Event::FeeFixed { .. } => "fee_fixed",
            Event::Paid { .. } => "paid",
            Event::Released { .. } => "released",
            Event::ReceiptAcknowledged { .. } => "receipt_acknowledged",
            Event::ChangeNotified { .. } => "change_notified",
            Event::ChangeForReview { .. } => "change_for_review",
            Event::Published { .. } => "published",
            Event::ReportFiled { .. } => "report_filed",
            Event::Audited { .. } => "audited",
            Event::EntitlementEnded { .. } => "entitlement_ended",
            Event::DeletionCertified { .. } => "deletion_certified",
            Event::RequestReceived { .. } => "request_received",
            Event::RequestDecided { .. } => "request_decided",
            Event::Suspended { .. } => "suspended",
        }
    }
}

/// Why a command was refused: names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// The command does not fit the phase.
    #[error("{command} is not allowed while the application is {phase:?} (rule {rule})")]
    WrongPhase {
        /// Command.
        command: &'static str,
        /// Phase.
        phase: Phase,
        /// Rule.
        rule: &'static str,
    },
    /// The committee breaks R1.
    #[error("the committee cannot hold a review: {}", .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    Committee(Vec<CompositionViolation>),
    /// A rule is broken.
    #[error("{field}: {message} (rule {rule})")]
    Rule {
        /// Field.
        field: &'static str,
        /// Rule id.
        rule: &'static str,
        /// Message.
        message: String,
    },
}

fn rule(field: &'static str, rule: &'static str, message: impl Into<String>) -> WorkflowError {
    WorkflowError::Rule { field, rule, message: message.into() }
}

/// A release as recorded in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseState {
    /// The spec.
    pub spec: ReleaseSpec,
    /// Acknowledged on.
    pub acknowledged_on: Option<NaiveDate>,
}

/// A user's request and its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestState {
    /// Kind.
    pub kind: RequestKind,
    /// Detail.
    pub detail: String,
    /// Decision: granted and reason.
    pub decision: Option<(bool, String)>,
}

/// The state of one application, rebuilt from its events.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct State {
    /// Phase.
    pub phase: Option<Phase>,
    /// The application as last submitted (with notified changes applied).
    pub application: Option<Application>,
    /// Pre-check failures of the last submission.
    pub precheck_failures: Vec<PrecheckFailure>,
    /// Members sitting on the current review.
    pub committee: Vec<Member>,
    /// Conflicted members of the current review.
    pub conflicted: BTreeSet<String>,
    /// Votes of the current review.
    pub votes: BTreeMap<String, (VoteKind, String)>,
    /// Last decision and its date.
    pub decision: Option<(Decision, NaiveDate)>,
    /// Ever approved.
    pub approved_once: bool,
    /// Change waiting for re-review.
    pub pending_change: Option<Change>,
    /// Agreement.
    pub agreement: Option<Agreement>,
    /// Estimated fee.
    pub fee_estimate: Option<u64>,
    /// Fixed fee and exemption.
    pub fee_final: Option<(u64, Option<String>)>,
    /// Total paid.
    pub paid_yen: u64,
    /// Releases.
    pub releases: Vec<ReleaseState>,
    /// Publications.
    pub publications: Vec<NaiveDate>,
    /// Reports filed.
    pub reports: Vec<(ReportKind, NaiveDate)>,
    /// The creator's audits of the user (R5): date and findings.
    pub audits: Vec<(NaiveDate, String)>,
    /// Entitlement ended on.
    pub ended_on: Option<NaiveDate>,
    /// Deletion certificates per place.
    pub deletions: BTreeMap<String, NaiveDate>,
    /// Requests.
    pub requests: Vec<RequestState>,
    /// Suspensions (sanction id, until).
    pub suspensions: Vec<(String, Option<NaiveDate>)>,
}

impl State {
    /// The phase (Draft before any event).
    pub fn phase(&self) -> Phase {
        self.phase.unwrap_or(Phase::Draft)
    }

    /// Members who may vote and see the deliberation (sitting, not conflicted).
    pub fn eligible(&self) -> Vec<&Member> {
        self.committee.iter().filter(|m| !self.conflicted.contains(&m.member_id)).collect()
    }

    /// True when the fee is settled (exempt or paid in full).
    pub fn fee_settled(&self) -> bool {
        match &self.fee_final {
            Some((_, Some(_))) => true,
            Some((amount, None)) => self.paid_yen >= *amount,
            None => false,
        }
    }

    /// True when a suspension covers `on`.
    pub fn suspended_on(&self, on: NaiveDate) -> bool {
        self.suspensions.iter().any(|(_, until)| until.is_none_or(|u| on <= u))
    }

    /// Deliberation (votes with reasons) as `member_id` may see it: none for a conflicted member (R2).
    pub fn deliberation_for(&self, member_id: &str) -> Option<&BTreeMap<String, (VoteKind, String)>> {
        if self.conflicted.contains(member_id) || !self.committee.iter().any(|m| m.member_id == member_id) {
            None
        } else {
            Some(&self.votes)
        }
    }
}

fn wrong(command: &'static str, s: &State, rule: &'static str) -> WorkflowError {
    WorkflowError::WrongPhase { command, phase: s.phase(), rule }
}

/// Decides what a command does to an application in `s`.
pub fn handle(s: &State, cmd: &Command) -> Result<Vec<Event>, WorkflowError> {
    let phase = s.phase();
    match cmd {
        Command::Submit { application, contact_has_other_open, banned_until, ban_indefinite, on } => {
            if !matches!(phase, Phase::Draft | Phase::PrecheckFailed | Phase::RevisionRequested) {
                return Err(wrong("submit", s, "D1"));
            }
            if *ban_indefinite || banned_until.is_some_and(|u| *on <= u) {
                return Err(rule("applicant", "D8", "the applicant is banned from applying (sanction in force)"));
            }
            let failures = precheck(application, *contact_has_other_open);
            Ok(vec![if failures.is_empty() {
                Event::Submitted { application: application.clone(), on: *on }
            } else {
                Event::PrecheckFailed { application: application.clone(), failures, on: *on }
            }])
        }
        Command::OpenReview { committee, on } => {
            if phase != Phase::Submitted {
                return Err(wrong("open review", s, "R2"));
            }
            let v = check_composition(committee, *on);
            if !v.is_empty() {
                return Err(WorkflowError::Committee(v));
            }
            let sitting = committee.iter().filter(|m| m.sits_on(*on)).cloned().collect();
            Ok(vec![Event::ReviewOpened { committee: sitting, on: *on }])
        }
        Command::DeclareConflict { member_id, reason } => {
            if phase != Phase::UnderReview {
                return Err(wrong("declare conflict", s, "R2"));
            }
            if !s.committee.iter().any(|m| &m.member_id == member_id) {
                return Err(rule("member_id", "R2", format!("{member_id} does not sit on this review")));
            }
            if s.votes.contains_key(member_id) {
                return Err(rule(
                    "member_id",
                    "R2",
                    format!("{member_id} already voted; a conflict must be declared first"),
                ));
            }
            Ok(vec![Event::ConflictDeclared { member_id: member_id.clone(), reason: reason.clone() }])
        }
        Command::Vote { member_id, vote, reason } => {
            if phase != Phase::UnderReview {
                return Err(wrong("vote", s, "R2"));
            }
            if !s.committee.iter().any(|m| &m.member_id == member_id) {
                return Err(rule("member_id", "R2", format!("{member_id} does not sit on this review")));
            }
            if s.conflicted.contains(member_id) {
                return Err(rule(
                    "member_id",
                    "R2",
                    format!("{member_id} declared a conflict of interest and may not vote"),
                ));
            }
            if s.votes.contains_key(member_id) {
                return Err(rule("member_id", "R2", format!("{member_id} already voted")));
            }
            if reason.trim().is_empty() {
                return Err(rule("reason", "D2", "a vote needs reasons"));
            }
            Ok(vec![Event::Voted { member_id: member_id.clone(), vote: *vote, reason: reason.clone() }])
        }
        Command::Decide { decision, on } => {
            if phase != Phase::UnderReview {
                return Err(wrong("decide", s, "R2"));
            }
            let eligible: Vec<Member> = s.eligible().into_iter().cloned().collect();
            let v = check_composition(&eligible, *on);
            if !v.is_empty() {
                return Err(WorkflowError::Committee(v));
            }
            let cast = s.votes.len();
            if cast * 2 <= eligible.len() {
                return Err(rule(
                    "votes",
                    "R2",
                    format!("no quorum: {cast} of {} eligible members voted (more than half needed)", eligible.len()),
                ));
            }
            let favour = s.votes.values().filter(|(v, _)| v.in_favour()).count();
            match decision {
                Decision::Approve { .. } if favour * 2 <= cast => {
                    return Err(rule("decision", "R2", format!("only {favour} of {cast} votes are in favour")));
                }
                Decision::Refuse { reasons } if reasons.iter().all(|r| r.trim().is_empty()) => {
                    return Err(rule("reasons", "D3", "a refusal states its reasons"));
                }
                Decision::Revise { requests } if requests.is_empty() => {
                    return Err(rule("requests", "D2", "say what to revise"));
                }
                _ => {}
            }
            Ok(vec![Event::Decided { decision: decision.clone(), on: *on }])
        }
        Command::ConcludeAgreement { agreement } => {
            if phase != Phase::Approved {
                return Err(wrong("conclude agreement", s, "R3"));
            }
            let app = s.application.as_ref().expect("approved application");
            if let Some(f) = agreement.check(app).into_iter().next() {
                return Err(WorkflowError::Rule { field: "agreement", rule: "R3", message: f.to_string() });
            }
            Ok(vec![Event::AgreementConcluded { agreement: agreement.clone() }])
        }
        Command::EstimateFee { hourly_rate_yen, minutes } | Command::FinalFee { hourly_rate_yen, minutes } => {
            if phase != Phase::Approved {
                return Err(wrong("fee", s, "D5"));
            }
            let exempt = fee_exemption(s.application.as_ref().expect("approved")).map(str::to_owned);
            let amount_yen = fee_yen(*hourly_rate_yen, *minutes, exempt.is_some());
            Ok(vec![if matches!(cmd, Command::EstimateFee { .. }) {
                Event::FeeEstimated { amount_yen, exempt }
            } else {
                Event::FeeFixed { amount_yen, exempt }
            }])
        }
        Command::RecordPayment { amount_yen, on } => {
            if s.fee_final.is_none() {
                return Err(rule("amount_yen", "D5", "no final fee has been notified"));
            }
            Ok(vec![Event::Paid { amount_yen: *amount_yen, on: *on }])
        }
        Command::Release { spec } => {
            if phase != Phase::Approved {
                return Err(wrong("release", s, "R2"));
            }
            let app = s.application.as_ref().expect("approved");
            let agreement = s.agreement.as_ref().ok_or_else(|| rule("agreement", "R3", "no agreement signed"))?;
            if !s.fee_settled() {
                return Err(rule("fee", "D5", "provision follows payment of the fee"));
            }
            if spec.on < app.usage_from || spec.on > app.usage_to {
                return Err(rule(
                    "on",
                    "D4",
                    format!("{} is outside the usage period {}..{}", spec.on, app.usage_from, app.usage_to),
                ));
            }
            if s.suspended_on(spec.on) {
                return Err(rule("on", "D8", "use is stopped by a sanction"));
            }
            if s.releases.iter().any(|r| r.spec.release_id == spec.release_id) {
                return Err(rule("release_id", "R9", "release id already used"));
            }
            if let Some(i) = spec.items.iter().find(|i| !agreement.items.contains(i)) {
                return Err(rule("items", "R3", format!("{i} is not an agreed item")));
            }
            if let Some((Decision::Approve { processing_policy_sha256: Some(want), .. }, _)) = &s.decision
                && spec.policy_sha256.as_deref() != Some(want.as_str())
            {
                return Err(rule(
                    "policy_sha256",
                    "A7",
                    format!(
                        "the committee approved processing policy {}; this dataset was made under {}",
                        &want[..want.len().min(12)],
                        spec.policy_sha256.as_deref().map(|p| &p[..p.len().min(12)]).unwrap_or("no recorded policy")
                    ),
                ));
            }
            if spec.manifest_sha256.len() != 64 || !spec.manifest_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(rule("manifest_sha256", "R12", "the package manifest digest must be a SHA-256 hex string"));
            }
            if matches!(app.provision_method, super::application::ProvisionMethod::PortableMedia) {
                let before: usize = s.releases.iter().map(|r| r.spec.media.len()).sum();
                if before + spec.media.len() > app.media_count as usize {
                    return Err(rule("media", "D6", format!("at most {} media were approved", app.media_count)));
                }
                let mut places = BTreeSet::new();
                for m in s.releases.iter().flat_map(|r| &r.spec.media).chain(&spec.media) {
                    if !app.places.iter().any(|p| p.place_id == m.place_id) {
                        return Err(rule("media", "D6", format!("place {} is not an approved place", m.place_id)));
                    }
                    if !places.insert(m.place_id.clone()) {
                        return Err(rule("media", "D6", format!("one medium per place of use ({})", m.place_id)));
                    }
                }
                if spec.media.is_empty() {
                    return Err(rule("media", "D6", "a release on portable media lists its media"));
                }
            }
            Ok(vec![Event::Released { spec: spec.clone() }])
        }
        Command::AcknowledgeReceipt { release_id, on } => {
            match s.releases.iter().find(|r| &r.spec.release_id == release_id) {
                None => Err(rule("release_id", "D6", format!("no release {release_id}"))),
                Some(r) if r.acknowledged_on.is_some() => Err(rule("release_id", "D6", "receipt already acknowledged")),
                Some(r) if *on < r.spec.on => Err(rule("on", "D6", "receipt before the release")),
                Some(_) => Ok(vec![Event::ReceiptAcknowledged { release_id: release_id.clone(), on: *on }]),
            }
        }
        Command::RequestChange { change, on } => {
            if phase != Phase::Approved {
                return Err(wrong("change", s, "D4"));
            }
            let app = s.application.as_ref().expect("approved");
            if let Change::RemoveHandler { name } | Change::ReplaceHandler { old: name, .. } = change
                && !app.handlers.iter().any(|h| &h.name == name)
            {
                return Err(rule("name", "R5", format!("{name} is not a handler")));
            }
            Ok(vec![match classify_change(change, app.usage_to) {
                ChangeClass::NotifyOnly => Event::ChangeNotified { change: change.clone(), on: *on },
                ChangeClass::ReReview => Event::ChangeForReview { change: change.clone(), on: *on },
            }])
        }
        Command::RecordPublication { on, citation } => {
            if !s.approved_once {
                return Err(wrong("publication", s, "D7"));
            }
            Ok(vec![Event::Published { on: *on, citation: citation.clone() }])
        }
        Command::FileReport { kind, on } => {
            if !s.approved_once {
                return Err(wrong("report", s, "D7"));
            }
            Ok(vec![Event::ReportFiled { kind: *kind, on: *on }])
        }
        Command::RecordAudit { on, findings } => {
            if !s.approved_once || findings.trim().is_empty() {
                return Err(wrong("audit", s, "R5"));
            }
            Ok(vec![Event::Audited { on: *on, findings: findings.clone() }])
        }
        Command::Expire { as_of } => {
            let app = s.application.as_ref().ok_or_else(|| wrong("expire", s, "R5"))?;
            if phase == Phase::Ended || !s.approved_once {
                return Err(wrong("expire", s, "R5"));
            }
            if *as_of <= app.usage_to {
                return Err(rule("as_of", "R5", format!("the usage period runs until {}", app.usage_to)));
            }
            Ok(vec![Event::EntitlementEnded { on: *as_of }])
        }
        Command::DeletionCertificate { place_id, on, deleted_by, certificate_sha256 } => {
            // Type I: the user deletes and hands in a certificate, which the creator checks and keeps.
            let by_user = matches!(deleted_by.trim(), "user" | "利用者");
            if by_user && certificate_sha256.as_deref().is_none_or(|h| h.len() != 64) {
                return Err(WorkflowError::Rule {
                    field: "certificate",
                    rule: "R5",
                    message: "a deletion by the user needs the user's deletion certificate (its SHA-256)".into(),
                });
            }
            let app = s.application.as_ref().ok_or_else(|| wrong("deletion certificate", s, "D7"))?;
            if !app.places.iter().any(|p| &p.place_id == place_id) {
                return Err(rule("place_id", "D7", format!("{place_id} is not a place of use")));
            }
            if s.deletions.contains_key(place_id) {
                return Err(rule("place_id", "D7", "deletion at this place is already certified"));
            }
            Ok(vec![Event::DeletionCertified {
                place_id: place_id.clone(),
                on: *on,
                deleted_by: deleted_by.clone(),
                certificate_sha256: certificate_sha256.clone(),
            }])
        }
        Command::UserRequest { kind, detail } => {
            if phase != Phase::Approved {
                return Err(wrong("request", s, "R7"));
            }
            Ok(vec![Event::RequestReceived { kind: *kind, detail: detail.clone() }])
        }
        Command::DecideRequest { index, granted, reason } => match s.requests.get(*index) {
            None => Err(rule("index", "R7", format!("no request #{index}"))),
            Some(r) if r.decision.is_some() => Err(rule("index", "R7", "already decided")),
            Some(_) if reason.trim().is_empty() => Err(rule("reason", "R7", "a decision states its reason")),
            Some(_) => Ok(vec![Event::RequestDecided { index: *index, granted: *granted, reason: reason.clone() }]),
        },
        Command::Suspend { sanction_id, until } => {
            Ok(vec![Event::Suspended { sanction_id: sanction_id.clone(), until: *until }])
        }
    }
}

fn apply_change(app: &mut Application, change: &Change) {
    match change {
        Change::RemoveHandler { name } => app.handlers.retain(|h| &h.name != name),
        Change::Extension { new_usage_to, .. } => app.usage_to = *new_usage_to,
        Change::AddHandler { handler } => app.handlers.push(handler.clone()),
        Change::ReplaceHandler { old, handler } => {
            app.handlers.retain(|h| &h.name != old);
            app.handlers.push(Handler::clone(handler));
        }
        _ => {}
    }
}

/// Folds one event into the state.
pub fn apply(s: &mut State, e: &Event) {
    match e {
        Event::Submitted { application, .. } => {
            s.phase = Some(Phase::Submitted);
            s.application = Some((**application).clone());
            s.precheck_failures.clear();
        }
        Event::PrecheckFailed { application, failures, .. } => {
            s.phase = Some(Phase::PrecheckFailed);
            s.application = Some((**application).clone());
            s.precheck_failures = failures.clone();
        }
        Event::ReviewOpened { committee, .. } => {
            s.phase = Some(Phase::UnderReview);
            s.committee = committee.clone();
            s.conflicted.clear();
            s.votes.clear();
        }
        Event::ConflictDeclared { member_id, .. } => {
            s.conflicted.insert(member_id.clone());
        }
        Event::Voted { member_id, vote, reason } => {
            s.votes.insert(member_id.clone(), (*vote, reason.clone()));
        }
        Event::Decided { decision, on } => {
            s.decision = Some((decision.clone(), *on));
            s.phase = Some(match decision {
                Decision::Approve { .. } => {
                    s.approved_once = true;
                    if let (Some(c), Some(app)) = (s.pending_change.take(), s.application.as_mut()) {
                        apply_change(app, &c);
                    }
                    Phase::Approved
                }
                // A refused change leaves the earlier approval in force.
                Decision::Refuse { .. } if s.pending_change.take().is_some() => Phase::Approved,
                Decision::Refuse { .. } => Phase::Refused,
                Decision::Revise { .. } => Phase::RevisionRequested,
            });
        }
        Event::AgreementConcluded { agreement } => s.agreement = Some((**agreement).clone()),
        Event::FeeEstimated { amount_yen, .. } => s.fee_estimate = Some(*amount_yen),
        Event::FeeFixed { amount_yen, exempt } => s.fee_final = Some((*amount_yen, exempt.clone())),
        Event::Paid { amount_yen, .. } => s.paid_yen += amount_yen,
        Event::Released { spec } => s.releases.push(ReleaseState { spec: spec.clone(), acknowledged_on: None }),
        Event::ReceiptAcknowledged { release_id, on } => {
            if let Some(r) = s.releases.iter_mut().find(|r| &r.spec.release_id == release_id) {
                r.acknowledged_on = Some(*on);
            }
        }
        Event::ChangeNotified { change, .. } => {
            if let Some(app) = s.application.as_mut() {
                apply_change(app, change);
            }
        }
        Event::ChangeForReview { change, .. } => {
            s.pending_change = Some(change.clone());
            s.phase = Some(Phase::Submitted);
        }
        Event::Published { on, .. } => s.publications.push(*on),
        Event::ReportFiled { kind, on } => s.reports.push((*kind, *on)),
        Event::Audited { on, findings } => s.audits.push((*on, findings.clone())),
        Event::EntitlementEnded { on } => {
            s.ended_on = Some(*on);
            s.phase = Some(Phase::Ended);
        }
        Event::DeletionCertified { place_id, on, .. } => {
            s.deletions.insert(place_id.clone(), *on);
        }
        Event::RequestReceived { kind, detail } => {
            s.requests.push(RequestState { kind: *kind, detail: detail.clone(), decision: None })
        }
        Event::RequestDecided { index, granted, reason } => {
            if let Some(r) = s.requests.get_mut(*index) {
                r.decision = Some((*granted, reason.clone()));
            }
        }
        Event::Suspended { sanction_id, until } => s.suspensions.push((sanction_id.clone(), *until)),
    }
}

/// Rebuilds a state from its events.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> State {
    let mut s = State::default();
    for e in events {
        apply(&mut s, e);
    }
    s
}

/// Something due under supervision (D7, R5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "due")]
pub enum Due {
    /// A usage report is due for a publication.
    UsageReport {
        /// Publication date.
        published_on: NaiveDate,
        /// Due date.
        due_on: NaiveDate,
        /// Past due.
        overdue: bool,
    },
    /// The management report (use past 2 years).
    ManagementReport {
        /// Due from.
        due_on: NaiveDate,
    },
    /// The usage period has passed and the entitlement must end.
    EntitlementExpired {
        /// Last day of the period.
        usage_to: NaiveDate,
    },
    /// After the end of use, a place lacks its deletion certificate.
    DeletionCertificate {
        /// Place.
        place_id: String,
    },
    /// The periodic audit of the user (R5): yearly from the first provision while use lasts.
    Audit {
        /// Due date.
        due_on: NaiveDate,
    },
}

/// What is due for one application on `as_of` (D7): usage reports 3 months after each publication,
/// the management report once use passes 2 years, expired entitlements, missing deletion certificates.
pub fn supervision_due(s: &State, as_of: NaiveDate) -> Vec<Due> {
    let mut v = Vec::new();
    let Some(app) = s.application.as_ref().filter(|_| s.approved_once) else {
        return v;
    };
    let usage_reports: Vec<NaiveDate> =
        s.reports.iter().filter(|(k, _)| *k == ReportKind::Usage).map(|(_, d)| *d).collect();
    for p in &s.publications {
        let due_on = p.checked_add_months(Months::new(3)).expect("date in range");
        if !usage_reports.iter().any(|r| r >= p) {
            v.push(Due::UsageReport { published_on: *p, due_on, overdue: as_of > due_on });
        }
    }
    let two_years = app.usage_from.checked_add_months(Months::new(24)).expect("date in range");
    if as_of >= two_years
        && s.ended_on.is_none()
        && !s.reports.iter().any(|(k, d)| *k == ReportKind::Management && *d >= two_years)
    {
        v.push(Due::ManagementReport { due_on: two_years });
    }
    if s.ended_on.is_none() && as_of > app.usage_to {
        v.push(Due::EntitlementExpired { usage_to: app.usage_to });
    }
    if let Some(first) = s.releases.iter().map(|r| r.spec.on).min()
        && s.ended_on.is_none()
    {
        let last = s.audits.iter().map(|(d, _)| *d).max().unwrap_or(first).max(first);
        let due_on = last.checked_add_months(Months::new(12)).expect("date in range");
        if as_of >= due_on {
            v.push(Due::Audit { due_on });
        }
    }
    if s.ended_on.is_some() || as_of > app.usage_to {
        for p in &app.places {
            if !s.deletions.contains_key(&p.place_id) {
                v.push(Due::DeletionCertificate { place_id: p.place_id.clone() });
            }
        }
    }
    v
}
