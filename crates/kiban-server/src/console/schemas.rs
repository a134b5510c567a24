//! The typed answers of the JSON API and the table that gives the OpenAPI document each route's
//! request and 200 body schema, generated from the Rust types by `schemars` 0.8 (so the document
//! cannot drift from what the handlers parse and send).

use serde::Serialize;

use kiban_registry::accounts::{Account, AccountRole};

/// `GET /api/me`: who is logged in.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Me {
    /// kiban's account id.
    pub account_id: String,
    /// The login name.
    pub login: String,
    /// The name shown.
    pub display_name: String,
    /// The session's role.
    pub role: AccountRole,
}

/// `POST /password`: the password was changed.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Changed {
    /// Always true (a refusal is an error answer).
    pub changed: bool,
}

/// `POST /logout`: the session ended.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct LoggedOut {
    /// Always true.
    pub logged_out: bool,
}

/// `POST /api/audit/verify`: the audit chain's verification.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AuditVerified {
    /// Whether the chain, the checkpoints and the anchors hold.
    pub intact: bool,
    /// Entries checked.
    pub entries: u64,
    /// Problems found.
    pub problems: usize,
    /// One line for people.
    pub summary: String,
}

/// `POST /api/alerts/{id}/ack`: whether this call acknowledged the alert (false: it already was).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Acknowledged {
    /// True when this call recorded the acknowledgement.
    pub acknowledged: bool,
}

/// `POST /api/accounts`: the new account and, once the person is cleared, its one-time setup token.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct NewAccountAnswer {
    /// The account.
    pub account: Account,
    /// The setup token, shown once; null until the person's vetting clears them.
    pub setup_token: Option<String>,
}

/// `POST /api/accounts/{id}/reset`: the one-time setup token.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SetupToken {
    /// The setup token, shown once.
    pub setup_token: String,
}

/// `POST /api/accounts/{id}/training`: the training record's id.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TrainingRecorded {
    /// Its id.
    pub training_id: String,
}

/// `GET /api/leaks`: every leak report and the ids of those past their deadline.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Leaks {
    /// The reports, first and follow-up.
    pub reports: Vec<kiban_registry::incidents::LeakReport>,
    /// Report ids whose final report is overdue.
    pub overdue: Vec<String>,
}

/// The request and 200 body schemas of the typed routes, keyed by method and path; the shared
/// definitions land in `defs` (the document's `components/schemas`).
pub fn typed(defs: &mut serde_json::Map<String, serde_json::Value>) -> Vec<Typed> {
    use crate::api::{
        AuditBody, ComplaintBody, EscalateBody, IncidentBody, LeakBody, LeakUpdate, NewAccount, NoteBody, ResetBody,
        RoleBody, TrainingBody,
    };
    use kiban_registry::incidents::{Complaint, Contract, Contractor, Incident, LeakReport};
    use kiban_registry::{Provider, Run};
    // schemars 0.8: its dependencies leave the workspace's serde_json features as they are (1.x adds
    // `alloc`, which rebuilds every crate that uses serde_json).
    let mut settings = schemars::r#gen::SchemaSettings::draft2019_09();
    settings.definitions_path = "#/components/schemas/".into();
    let mut g = settings.into_generator();
    macro_rules! s {
        ($t:ty) => {
            serde_json::to_value(g.subschema_for::<$t>()).expect("a schema serializes")
        };
    }
    let v = vec![
        Typed::new("GET", "/api/me", None, s!(Me)),
        Typed::new("POST", "/logout", None, s!(LoggedOut)),
        Typed::new("GET", "/api/providers", None, s!(Vec<Provider>)),
        Typed::new("GET", "/api/runs", None, s!(Vec<Run>)),
        Typed::new("POST", "/api/audit/verify", None, s!(AuditVerified)),
        Typed::new("POST", "/api/alerts/{id}/ack", Some(s!(NoteBody)), s!(Acknowledged)),
        Typed::new("GET", "/api/accounts", None, s!(Vec<Account>)),
        Typed::new("POST", "/api/accounts", Some(s!(NewAccount)), s!(NewAccountAnswer)),
        Typed::new("POST", "/api/accounts/{id}/reset", Some(s!(ResetBody)), s!(SetupToken)),
        Typed::new("POST", "/api/accounts/{id}/lock", Some(s!(NoteBody)), s!(Account)),
        Typed::new("POST", "/api/accounts/{id}/unlock", Some(s!(NoteBody)), s!(Account)),
        Typed::new("POST", "/api/accounts/{id}/role", Some(s!(RoleBody)), s!(Account)),
        Typed::new("POST", "/api/accounts/{id}/training", Some(s!(TrainingBody)), s!(TrainingRecorded)),
        Typed::new("GET", "/api/incidents", None, s!(Vec<Incident>)),
        Typed::new("POST", "/api/incidents", Some(s!(IncidentBody)), s!(Incident)),
        Typed::new("POST", "/api/incidents/{id}/escalate", Some(s!(EscalateBody)), s!(Incident)),
        Typed::new("GET", "/api/leaks", None, s!(Leaks)),
        Typed::new("POST", "/api/leaks", Some(s!(LeakBody)), s!(LeakReport)),
        Typed::new("POST", "/api/leaks/{id}", Some(s!(LeakUpdate)), s!(LeakReport)),
        Typed::new("GET", "/api/complaints", None, s!(Vec<Complaint>)),
        Typed::new("POST", "/api/complaints", Some(s!(ComplaintBody)), s!(Complaint)),
        Typed::new("GET", "/api/contractors", None, s!(Vec<Contractor>)),
        Typed::new("POST", "/api/contractors", Some(s!(Contract)), s!(Contractor)),
        Typed::new("POST", "/api/contractors/{id}/audits", Some(s!(AuditBody)), s!(Contractor)),
    ];
    defs.extend(
        g.take_definitions().into_iter().map(|(k, v)| (k, serde_json::to_value(v).expect("a schema serializes"))),
    );
    v
}

/// One typed route: its request body's schema (when it takes JSON) and its 200 body's.
pub struct Typed {
    /// HTTP method.
    pub method: &'static str,
    /// Path pattern.
    pub path: &'static str,
    /// The JSON request body's schema.
    pub request: Option<serde_json::Value>,
    /// The 200 body's schema.
    pub response: serde_json::Value,
}

impl Typed {
    fn new(
        method: &'static str,
        path: &'static str,
        request: Option<serde_json::Value>,
        response: serde_json::Value,
    ) -> Self {
        Typed { method, path, request, response }
    }
}
