//! What an audit entry says: who, from where, did what to which object, with what outcome.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The position of an entry in the log; the first entry is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The number inside.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The role under which the actor operated; monitoring rules select on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A provider's clerk (hospital, insurer).
    ProviderClerk,
    /// An intake operator of the creator.
    IntakeOperator,
    /// A processing engineer of the creator.
    ProcessingEngineer,
    /// A member of the review committee.
    CommitteeMember,
    /// The secretariat.
    Secretariat,
    /// The security officer.
    SecurityOfficer,
    /// An auditor.
    Auditor,
    /// A Type I user (uses data at the creator's premises or a visiting environment).
    UserType1,
    /// A Type II user (uses data remotely; may not take data out, R6).
    UserType2,
    /// kiban itself: scheduled jobs and internal steps.
    System,
}

/// Who operated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// The account id (never a password or token).
    pub id: String,
    /// The role the account acted in.
    pub role: Role,
}

impl Actor {
    /// An actor from an id and a role.
    pub fn new(id: impl Into<String>, role: Role) -> Self {
        Actor { id: id.into(), role }
    }

    /// kiban itself.
    pub fn system() -> Self {
        Actor::new("kiban", Role::System)
    }
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Logging in (a failure is a failed login).
    Login,
    /// Logging out; the entry's volume may carry the session length in seconds.
    Logout,
    /// Reading or viewing.
    Read,
    /// Creating or changing.
    Write,
    /// Deleting.
    Delete,
    /// Exporting out of the store (reports, extracts, the audit log itself).
    Export,
    /// Downloading to the user's machine.
    Download,
    /// Copying to external media (USB, optical) (R6).
    ExternalMedia,
    /// Using a key (unwrap, sign, derive).
    KeyUse,
    /// Verifying the audit log.
    Verify,
    /// Changing configuration or rules.
    Configure,
}

/// The kind of object acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// Clinical data (MDAT) or datasets derived from it.
    Clinical,
    /// The identity vault (IDAT).
    Identity,
    /// A key in the key store.
    Key,
    /// A ledger or statutory record.
    Ledger,
    /// A release package.
    Release,
    /// The audit log or the alert queue.
    Audit,
    /// A login session or account.
    Session,
    /// Configuration, policies, monitoring rules.
    Config,
}

/// What was acted on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Object {
    /// The kind of object.
    pub kind: ObjectKind,
    /// Its id (dataset id, ledger row, key id; never key material or personal data).
    pub id: String,
}

impl Object {
    /// An object from a kind and an id.
    pub fn new(kind: ObjectKind, id: impl Into<String>) -> Self {
        Object { kind, id: id.into() }
    }
}

/// How the operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused by authorization.
    Denied,
    /// Attempted and failed (bad password, error).
    Failure,
}

/// The kind of job an operation ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Record linkage (the only job that may read the identity vault).
    Linkage,
    /// Intake of a submission.
    Intake,
    /// Anonymization or pseudonymization.
    Processing,
    /// Building a release package.
    Release,
    /// Retention purge.
    Purge,
}

/// The job an operation ran under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Job {
    /// The kind of job.
    pub kind: JobKind,
    /// Its id.
    pub id: String,
}

/// One auditable operation, as a caller reports it; the log adds the sequence number and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Who operated.
    pub actor: Actor,
    /// From where: terminal id, IP address or process.
    pub source: String,
    /// What was done.
    pub action: Action,
    /// What it was done to.
    pub object: Object,
    /// How it ended.
    pub outcome: Outcome,
    /// How much: records, rows or bytes touched (0 when not applicable).
    #[serde(default)]
    pub volume: u64,
    /// The job it ran under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
    /// A short note; never secrets or personal data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Event {
    /// A successful event of volume 0 with no job and no note.
    pub fn new(actor: Actor, source: impl Into<String>, action: Action, object: Object) -> Self {
        Event {
            actor,
            source: source.into(),
            action,
            object,
            outcome: Outcome::Success,
            volume: 0,
            job: None,
            note: None,
        }
    }

    /// The same event with another outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// The same event with a volume.
    pub fn volume(mut self, volume: u64) -> Self {
        self.volume = volume;
        self
    }

    /// The same event under a job.
    pub fn job(mut self, kind: JobKind, id: impl Into<String>) -> Self {
        self.job = Some(Job { kind, id: id.into() });
        self
    }

    /// The same event with a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// A stored entry: the event with its sequence number and the trusted time of appending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its position in the log.
    pub seq: Seq,
    /// When the log received it, from the log's clock.
    pub at: DateTime<Utc>,
    /// The event.
    pub event: Event,
}
