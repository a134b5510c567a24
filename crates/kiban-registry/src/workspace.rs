//! Visiting-environment workspaces (R4–R7, R13, D9): the registry side. One workspace per approved
//! Type II application, for the handlers named on it, open only during the usage period; its event
//! log is append-only like an application's. [`handle`] is pure (no SQL, no clock): a command and the
//! state give events or a typed error naming the rule. Closing and deleting a workspace write the R5
//! deletion record: a `Deleted` event, a ledger row, and the application's deletion certificate for
//! each place of use (Type II: the creator deletes).

use chrono::NaiveDate;
use kiban_model::retention::RetentionRule;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::ledger::{LedgerEntry, LedgerInput, LedgerKind, insert_ledger};
use crate::records::{RecordError, new_id};
use crate::review::agreement::UserType;
use crate::review::db::ReviewError;
use crate::review::workflow::{Command, Phase, RequestKind, State as AppState};
use crate::store::{Registry, now};

/// A handler of a workspace: the account that logs in and the name on the application's roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsHandler {
    /// Account id.
    pub account_id: String,
    /// Name as on the application's handler list (R5 roster).
    pub name: String,
}

/// An upload carried by an R7 request, as recorded (no values): the digest the creator approves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsUpload {
    /// The quarantine id in the workspace (`upl-…`).
    pub staged_id: String,
    /// The table or tool name it will have.
    pub name: String,
    /// SHA-256 of the uploaded bytes or tool text.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// `csv`, `parquet` or `sql`.
    pub format: String,
    /// Rows (own data).
    pub rows: u64,
    /// Column names (own data) or tables read (tool).
    pub columns: Vec<String>,
}

/// Where a workspace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WsPhase {
    /// Handlers may work in it (within the usage period).
    Open,
    /// Closed: nobody may work in it; its data waits for deletion.
    Closed,
    /// Its data, scripts and results are deleted and recorded (R5).
    Deleted,
}

/// A command to a workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "command")]
pub enum WsCommand {
    /// A released dataset is copied in as a table.
    AddDataset {
        /// Table name.
        table: String,
        /// The release it came from.
        release_id: String,
        /// Rows.
        rows: u64,
    },
    /// A handler asks to bring in own data or tools (R7).
    Request {
        /// Handler account.
        account_id: String,
        /// Own data or own tools.
        kind: RequestKind,
        /// What and why.
        detail: String,
        /// The file or tool text that came with it, held in quarantine.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upload: Option<WsUpload>,
    },
    /// The creator decides a request (R7).
    DecideRequest {
        /// Index of the request.
        index: usize,
        /// Granted.
        granted: bool,
        /// Reason.
        reason: String,
        /// Who decided (account id).
        by: String,
    },
    /// Own data approved under request `index` was brought in as `table` (R7).
    AddOwnData {
        /// The granted request.
        index: usize,
        /// Table name.
        table: String,
        /// Rows.
        rows: u64,
    },
    /// An own tool approved under request `index` was installed (R7): exactly the text of `sha256`.
    AddTool {
        /// The granted request.
        index: usize,
        /// Tool name.
        name: String,
        /// SHA-256 of the approved text.
        sha256: String,
    },
    /// A take-out was checked (D9).
    TakeoutChecked {
        /// Take-out id.
        takeout_id: String,
        /// The result.
        result_id: String,
        /// Handler account.
        account_id: String,
        /// Passed the publication rules.
        passed: bool,
    },
    /// A checker decided a take-out (D9).
    TakeoutDecided {
        /// Take-out id.
        takeout_id: String,
        /// Approved.
        approved: bool,
        /// Checker account.
        checker: String,
        /// SHA-256 of the approved table (approved only).
        table_sha256: Option<String>,
    },
    /// Stop use for now (R6: unexpected use is controlled); data stay, nobody may work in it.
    Suspend {
        /// Day.
        on: NaiveDate,
        /// Why.
        reason: String,
        /// Who (account id).
        by: String,
    },
    /// Lift a stop.
    Resume {
        /// Day.
        on: NaiveDate,
        /// Who.
        by: String,
    },
    /// A handler joins the roster (R5: each handler change is checked against the application).
    AddHandler {
        /// The handler.
        handler: WsHandler,
        /// Day.
        on: NaiveDate,
    },
    /// A handler leaves the roster.
    RemoveHandler {
        /// Account id.
        account_id: String,
        /// Day.
        on: NaiveDate,
        /// Why.
        reason: String,
    },
    /// Close the workspace.
    Close {
        /// Day.
        on: NaiveDate,
        /// Why (period ended, terminated, sanction …).
        reason: String,
    },
    /// The workspace's contents were deleted (R5).
    RecordDeletion {
        /// Day.
        on: NaiveDate,
        /// Who deleted (account id or `kiban`).
        by: String,
        /// What went (counts from the workspace).
        summary: serde_json::Value,
    },
}

/// What happened; the stored log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum WsEvent {
    /// Opened.
    Opened {
        /// The application.
        application_id: String,
        /// First day of use.
        usage_from: NaiveDate,
        /// Last day of use.
        usage_to: NaiveDate,
        /// Handlers.
        handlers: Vec<WsHandler>,
        /// Releases it holds.
        release_ids: Vec<String>,
        /// Day opened.
        on: NaiveDate,
    },
    /// See [`WsCommand::AddDataset`].
    DatasetAdded {
        /// Table.
        table: String,
        /// Release.
        release_id: String,
        /// Rows.
        rows: u64,
    },
    /// See [`WsCommand::Request`].
    RequestReceived {
        /// Handler account.
        account_id: String,
        /// Kind.
        kind: RequestKind,
        /// Detail.
        detail: String,
        /// The upload held in quarantine.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upload: Option<WsUpload>,
    },
    /// See [`WsCommand::DecideRequest`].
    RequestDecided {
        /// Index.
        index: usize,
        /// Granted.
        granted: bool,
        /// Reason.
        reason: String,
        /// Decided by.
        by: String,
    },
    /// See [`WsCommand::AddOwnData`].
    OwnDataAdded {
        /// Request index.
        index: usize,
        /// Table.
        table: String,
        /// Rows.
        rows: u64,
    },
    /// See [`WsCommand::AddTool`].
    ToolAdded {
        /// Request index.
        index: usize,
        /// Tool.
        name: String,
        /// Approved digest.
        sha256: String,
    },
    /// See [`WsCommand::Suspend`].
    Suspended {
        /// Day.
        on: NaiveDate,
        /// Why.
        reason: String,
        /// By.
        by: String,
    },
    /// See [`WsCommand::Resume`].
    Resumed {
        /// Day.
        on: NaiveDate,
        /// By.
        by: String,
    },
    /// See [`WsCommand::AddHandler`].
    HandlerAdded {
        /// The handler.
        handler: WsHandler,
        /// Day.
        on: NaiveDate,
    },
    /// See [`WsCommand::RemoveHandler`].
    HandlerRemoved {
        /// Account id.
        account_id: String,
        /// Day.
        on: NaiveDate,
        /// Why.
        reason: String,
    },
    /// See [`WsCommand::TakeoutChecked`].
    TakeoutChecked {
        /// Take-out id.
        takeout_id: String,
        /// Result.
        result_id: String,
        /// Handler.
        account_id: String,
        /// Passed.
        passed: bool,
    },
    /// See [`WsCommand::TakeoutDecided`].
    TakeoutDecided {
        /// Take-out id.
        takeout_id: String,
        /// Approved.
        approved: bool,
        /// Checker.
        checker: String,
        /// Approved table digest.
        table_sha256: Option<String>,
    },
    /// Closed.
    Closed {
        /// Day.
        on: NaiveDate,
        /// Why.
        reason: String,
    },
    /// Contents deleted (R5).
    Deleted {
        /// Day.
        on: NaiveDate,
        /// By.
        by: String,
        /// What went.
        summary: serde_json::Value,
    },
}

impl WsEvent {
    /// Stored kind.
    pub fn kind(&self) -> &'static str {
        match self {
            WsEvent::Opened { .. } => "opened",
            WsEvent::DatasetAdded { .. } => "dataset_added",
            WsEvent::RequestReceived { .. } => "request_received",
            WsEvent::RequestDecided { .. } => "request_decided",
            WsEvent::OwnDataAdded { .. } => "own_data_added",
            WsEvent::ToolAdded { .. } => "tool_added",
            WsEvent::Suspended { .. } => "suspended",
            WsEvent::Resumed { .. } => "resumed",
            WsEvent::HandlerAdded { .. } => "handler_added",
            WsEvent::HandlerRemoved { .. } => "handler_removed",
            WsEvent::TakeoutChecked { .. } => "takeout_checked",
            WsEvent::TakeoutDecided { .. } => "takeout_decided",
            WsEvent::Closed { .. } => "closed",
            WsEvent::Deleted { .. } => "deleted",
        }
    }
}

/// A request of a handler and its decision (R7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsRequest {
    /// Handler account.
    pub account_id: String,
    /// Kind.
    pub kind: RequestKind,
    /// Detail.
    pub detail: String,
    /// Granted, reason, by.
    pub decision: Option<(bool, String, String)>,
    /// Own data or tool brought in under it (table or tool name).
    pub fulfilled: Option<String>,
    /// The upload it carries (held in quarantine until decided).
    pub upload: Option<WsUpload>,
}

/// A take-out as the registry records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsTakeout {
    /// Id.
    pub takeout_id: String,
    /// Result.
    pub result_id: String,
    /// Handler.
    pub account_id: String,
    /// Passed the rules.
    pub passed: bool,
    /// Checker's decision: approved, checker.
    pub decision: Option<(bool, String)>,
}

/// The state of a workspace, rebuilt from its events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WsState {
    /// Id.
    pub workspace_id: String,
    /// Application.
    pub application_id: String,
    /// Phase.
    pub phase: WsPhase,
    /// Usage period.
    pub usage_from: NaiveDate,
    /// Last day of use.
    pub usage_to: NaiveDate,
    /// Handlers.
    pub handlers: Vec<WsHandler>,
    /// Releases.
    pub release_ids: Vec<String>,
    /// Tables (released datasets and approved own data).
    pub tables: Vec<String>,
    /// Approved tools: name and the SHA-256 of the approved text.
    pub tools: Vec<(String, String)>,
    /// Use stopped on, and why (R6); `None` when not stopped.
    pub suspended: Option<(NaiveDate, String)>,
    /// Roster changes after opening: day, account, `added`/`removed: why`.
    pub roster_changes: Vec<(NaiveDate, String, String)>,
    /// Requests.
    pub requests: Vec<WsRequest>,
    /// Take-outs.
    pub takeouts: Vec<WsTakeout>,
    /// Closed on, and why.
    pub closed: Option<(NaiveDate, String)>,
    /// Deleted on, by, and what.
    pub deleted: Option<(NaiveDate, String, serde_json::Value)>,
}

/// Why a workspace step was refused.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// A rule refused it.
    #[error("{field}: {message} (rule {rule})")]
    Rule {
        /// Field.
        field: &'static str,
        /// Rule id.
        rule: &'static str,
        /// Message.
        message: String,
    },
    /// The application workflow refused a step.
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// A record or the registry failed.
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl From<sqlx::Error> for WsError {
    fn from(e: sqlx::Error) -> Self {
        WsError::Record(e.into())
    }
}

fn rule(field: &'static str, rule: &'static str, message: impl Into<String>) -> WsError {
    WsError::Rule { field, rule, message: message.into() }
}

impl WsState {
    /// The handler entry of `account_id`, if the account is a handler of this workspace.
    pub fn handler(&self, account_id: &str) -> Option<&WsHandler> {
        self.handlers.iter().find(|h| h.account_id == account_id)
    }

    /// Whether `account_id` may work in the workspace on `on`: open, a handler, inside the period (R4, R13).
    pub fn may_use(&self, account_id: &str, on: NaiveDate) -> Result<&WsHandler, WsError> {
        let h = self.handler(account_id).ok_or_else(|| {
            rule("account_id", "R5", format!("{account_id} is not a handler of workspace {}", self.workspace_id))
        })?;
        if self.phase != WsPhase::Open {
            return Err(rule("workspace", "R5", format!("workspace {} is {:?}", self.workspace_id, self.phase)));
        }
        if let Some((on, why)) = &self.suspended {
            return Err(rule(
                "workspace",
                "R6",
                format!("use of workspace {} is stopped since {on}: {why}", self.workspace_id),
            ));
        }
        if on < self.usage_from || on > self.usage_to {
            return Err(rule(
                "on",
                "R4",
                format!("{on} is outside the usage period {}..{}", self.usage_from, self.usage_to),
            ));
        }
        Ok(h)
    }
}

/// Decides what a command does to a workspace in `s`.
pub fn handle(s: &WsState, cmd: &WsCommand) -> Result<Vec<WsEvent>, WsError> {
    let open = |what: &str| {
        if s.phase == WsPhase::Open {
            Ok(())
        } else {
            Err(rule("workspace", "R5", format!("{what}: workspace {} is {:?}", s.workspace_id, s.phase)))
        }
    };
    match cmd {
        WsCommand::AddDataset { table, release_id, rows } => {
            open("add dataset")?;
            if !s.release_ids.contains(release_id) {
                return Err(rule("release_id", "R4", format!("{release_id} was not released to this workspace")));
            }
            if s.tables.contains(table) {
                return Err(rule("table", "R13", format!("table {table} already exists")));
            }
            Ok(vec![WsEvent::DatasetAdded { table: table.clone(), release_id: release_id.clone(), rows: *rows }])
        }
        WsCommand::Request { account_id, kind, detail, upload } => {
            open("request")?;
            if s.handler(account_id).is_none() {
                return Err(rule("account_id", "R5", format!("{account_id} is not a handler here")));
            }
            if *kind == RequestKind::OutputTakeOut {
                return Err(rule(
                    "kind",
                    "D9",
                    "outputs leave through a take-out request, which runs the publication check",
                ));
            }
            if detail.trim().is_empty() {
                return Err(rule("detail", "R7", "a request says what is to be brought in and why"));
            }
            if let Some(u) = upload {
                if *kind == RequestKind::OwnData && u.format == "sql"
                    || *kind == RequestKind::OwnTools && u.format != "sql"
                {
                    return Err(rule("upload", "R7", format!("a {} upload does not fit a {kind:?} request", u.format)));
                }
                if u.sha256.len() != 64 || !u.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(rule("upload", "R7", "the upload's SHA-256 is not 64 hex digits"));
                }
            }
            Ok(vec![WsEvent::RequestReceived {
                account_id: account_id.clone(),
                kind: *kind,
                detail: detail.clone(),
                upload: upload.clone(),
            }])
        }
        WsCommand::DecideRequest { index, granted, reason, by } => match s.requests.get(*index) {
            None => Err(rule("index", "R7", format!("no request #{index}"))),
            Some(r) if r.decision.is_some() => Err(rule("index", "R7", "already decided")),
            Some(_) if reason.trim().is_empty() => Err(rule("reason", "R7", "a decision states its reason")),
            Some(r) if &r.account_id == by => Err(rule("by", "R7", "a handler does not decide their own request")),
            Some(_) => {
                open("decide request")?;
                Ok(vec![WsEvent::RequestDecided {
                    index: *index,
                    granted: *granted,
                    reason: reason.clone(),
                    by: by.clone(),
                }])
            }
        },
        WsCommand::AddOwnData { index, table, rows } => {
            open("add own data")?;
            match s.requests.get(*index) {
                Some(WsRequest {
                    kind: RequestKind::OwnData,
                    decision: Some((true, _, _)),
                    fulfilled: None,
                    upload,
                    ..
                }) => {
                    if let Some(u) = upload
                        && &u.name != table
                    {
                        return Err(rule("table", "R7", format!("request #{index} was granted for table {}", u.name)));
                    }
                }
                _ => {
                    return Err(rule(
                        "index",
                        "R7",
                        format!("request #{index} is not a granted, unused own-data request"),
                    ));
                }
            }
            if s.tables.contains(table) {
                return Err(rule("table", "R13", format!("table {table} already exists")));
            }
            Ok(vec![WsEvent::OwnDataAdded { index: *index, table: table.clone(), rows: *rows }])
        }
        WsCommand::AddTool { index, name, sha256 } => {
            open("add tool")?;
            match s.requests.get(*index) {
                Some(WsRequest {
                    kind: RequestKind::OwnTools,
                    decision: Some((true, _, _)),
                    fulfilled: None,
                    upload: Some(u),
                    ..
                }) if &u.name == name && &u.sha256 == sha256 => {}
                _ => {
                    return Err(rule(
                        "index",
                        "R7",
                        format!("request #{index} is not a granted, unused request for tool {name} with this text"),
                    ));
                }
            }
            if s.tables.contains(name) {
                return Err(rule("name", "R13", format!("a table {name} exists")));
            }
            Ok(vec![WsEvent::ToolAdded { index: *index, name: name.clone(), sha256: sha256.clone() }])
        }
        WsCommand::Suspend { on, reason, by } => {
            open("stop use")?;
            if s.suspended.is_some() {
                return Err(rule("workspace", "R6", "use is already stopped"));
            }
            if reason.trim().is_empty() {
                return Err(rule("reason", "R6", "stopping use states its reason"));
            }
            Ok(vec![WsEvent::Suspended { on: *on, reason: reason.clone(), by: by.clone() }])
        }
        WsCommand::Resume { on, by } => {
            open("resume use")?;
            if s.suspended.is_none() {
                return Err(rule("workspace", "R6", "use is not stopped"));
            }
            Ok(vec![WsEvent::Resumed { on: *on, by: by.clone() }])
        }
        WsCommand::AddHandler { handler, on } => {
            open("add handler")?;
            if s.handler(&handler.account_id).is_some() {
                return Err(rule("account_id", "R5", format!("{} is already a handler here", handler.account_id)));
            }
            Ok(vec![WsEvent::HandlerAdded { handler: handler.clone(), on: *on }])
        }
        WsCommand::RemoveHandler { account_id, on, reason } => {
            open("remove handler")?;
            if s.handler(account_id).is_none() {
                return Err(rule("account_id", "R5", format!("{account_id} is not a handler here")));
            }
            if reason.trim().is_empty() {
                return Err(rule("reason", "R5", "a roster change states its reason"));
            }
            Ok(vec![WsEvent::HandlerRemoved { account_id: account_id.clone(), on: *on, reason: reason.clone() }])
        }
        WsCommand::TakeoutChecked { takeout_id, result_id, account_id, passed } => {
            open("take-out")?;
            if s.handler(account_id).is_none() {
                return Err(rule("account_id", "R5", format!("{account_id} is not a handler here")));
            }
            Ok(vec![WsEvent::TakeoutChecked {
                takeout_id: takeout_id.clone(),
                result_id: result_id.clone(),
                account_id: account_id.clone(),
                passed: *passed,
            }])
        }
        WsCommand::TakeoutDecided { takeout_id, approved, checker, table_sha256 } => {
            let Some(t) = s.takeouts.iter().find(|t| &t.takeout_id == takeout_id) else {
                return Err(rule("takeout_id", "D9", format!("no take-out {takeout_id}")));
            };
            if t.decision.is_some() {
                return Err(rule("takeout_id", "D9", "already decided"));
            }
            if *approved && !t.passed {
                return Err(rule("takeout_id", "D9", "a table that failed the publication rules cannot be approved"));
            }
            if &t.account_id == checker || s.handler(checker).is_some() {
                return Err(rule("checker", "D9", "the checker is not a handler of this workspace"));
            }
            Ok(vec![WsEvent::TakeoutDecided {
                takeout_id: takeout_id.clone(),
                approved: *approved,
                checker: checker.clone(),
                table_sha256: table_sha256.clone(),
            }])
        }
        WsCommand::Close { on, reason } => {
            open("close")?;
            Ok(vec![WsEvent::Closed { on: *on, reason: reason.clone() }])
        }
        WsCommand::RecordDeletion { on, by, summary } => {
            if s.phase != WsPhase::Closed {
                return Err(rule(
                    "workspace",
                    "R5",
                    format!("workspace {} is {:?}; close it first", s.workspace_id, s.phase),
                ));
            }
            Ok(vec![WsEvent::Deleted { on: *on, by: by.clone(), summary: summary.clone() }])
        }
    }
}

/// Applies one event.
pub fn apply(s: &mut WsState, e: &WsEvent) {
    match e {
        WsEvent::Opened { application_id, usage_from, usage_to, handlers, release_ids, .. } => {
            s.application_id = application_id.clone();
            s.usage_from = *usage_from;
            s.usage_to = *usage_to;
            s.handlers = handlers.clone();
            s.release_ids = release_ids.clone();
            s.phase = WsPhase::Open;
        }
        WsEvent::DatasetAdded { table, .. } => s.tables.push(table.clone()),
        WsEvent::RequestReceived { account_id, kind, detail, upload } => s.requests.push(WsRequest {
            account_id: account_id.clone(),
            kind: *kind,
            detail: detail.clone(),
            decision: None,
            fulfilled: None,
            upload: upload.clone(),
        }),
        WsEvent::RequestDecided { index, granted, reason, by } => {
            if let Some(r) = s.requests.get_mut(*index) {
                r.decision = Some((*granted, reason.clone(), by.clone()));
            }
        }
        WsEvent::OwnDataAdded { index, table, .. } => {
            if let Some(r) = s.requests.get_mut(*index) {
                r.fulfilled = Some(table.clone());
            }
            s.tables.push(table.clone());
        }
        WsEvent::ToolAdded { index, name, sha256 } => {
            if let Some(r) = s.requests.get_mut(*index) {
                r.fulfilled = Some(name.clone());
            }
            match s.tools.iter_mut().find(|t| &t.0 == name) {
                Some(t) => t.1 = sha256.clone(),
                None => s.tools.push((name.clone(), sha256.clone())),
            }
        }
        WsEvent::Suspended { on, reason, .. } => s.suspended = Some((*on, reason.clone())),
        WsEvent::Resumed { .. } => s.suspended = None,
        WsEvent::HandlerAdded { handler, on } => {
            s.roster_changes.push((*on, handler.account_id.clone(), "added".into()));
            s.handlers.push(handler.clone());
        }
        WsEvent::HandlerRemoved { account_id, on, reason } => {
            s.roster_changes.push((*on, account_id.clone(), format!("removed: {reason}")));
            s.handlers.retain(|h| &h.account_id != account_id);
        }
        WsEvent::TakeoutChecked { takeout_id, result_id, account_id, passed } => s.takeouts.push(WsTakeout {
            takeout_id: takeout_id.clone(),
            result_id: result_id.clone(),
            account_id: account_id.clone(),
            passed: *passed,
            decision: None,
        }),
        WsEvent::TakeoutDecided { takeout_id, approved, checker, .. } => {
            if let Some(t) = s.takeouts.iter_mut().find(|t| &t.takeout_id == takeout_id) {
                t.decision = Some((*approved, checker.clone()));
            }
        }
        WsEvent::Closed { on, reason } => {
            s.closed = Some((*on, reason.clone()));
            s.phase = WsPhase::Closed;
        }
        WsEvent::Deleted { on, by, summary } => {
            s.deleted = Some((*on, by.clone(), summary.clone()));
            s.phase = WsPhase::Deleted;
        }
    }
}

/// Rebuilds a state from its events.
pub fn replay(id: &str, events: &[WsEvent]) -> WsState {
    let mut s = WsState {
        workspace_id: id.to_owned(),
        application_id: String::new(),
        phase: WsPhase::Closed,
        usage_from: NaiveDate::MIN,
        usage_to: NaiveDate::MIN,
        handlers: Vec::new(),
        release_ids: Vec::new(),
        tables: Vec::new(),
        tools: Vec::new(),
        suspended: None,
        roster_changes: Vec::new(),
        requests: Vec::new(),
        takeouts: Vec::new(),
        closed: None,
        deleted: None,
    };
    for e in events {
        apply(&mut s, e);
    }
    s
}

/// Checks that `app` may have a Visiting workspace opened on `on` for `handlers` holding `release_ids`.
pub fn check_open(
    app: &AppState,
    handlers: &[WsHandler],
    release_ids: &[String],
    on: NaiveDate,
) -> Result<(), WsError> {
    if app.phase() != Phase::Approved {
        return Err(rule("application", "R4", format!("the application is {:?}, not approved", app.phase())));
    }
    let a = app.application.as_ref().expect("approved");
    let agreement = app.agreement.as_ref().ok_or_else(|| rule("agreement", "R3", "no agreement signed"))?;
    if agreement.user_type != UserType::TypeII {
        return Err(rule(
            "user_type",
            "R4",
            format!("the user is {:?}; the Visiting environment is for Type II users", agreement.user_type),
        ));
    }
    if on < a.usage_from || on > a.usage_to {
        return Err(rule("on", "R4", format!("{on} is outside the usage period {}..{}", a.usage_from, a.usage_to)));
    }
    if app.suspended_on(on) {
        return Err(rule("on", "D8", "use is stopped by a sanction"));
    }
    if handlers.is_empty() {
        return Err(rule("handlers", "R5", "a workspace has at least one handler"));
    }
    for h in handlers {
        check_handler(app, h)?;
    }
    if release_ids.is_empty() {
        return Err(rule("release_ids", "R4", "a workspace holds at least one release"));
    }
    for r in release_ids {
        if !app.releases.iter().any(|x| &x.spec.release_id == r) {
            return Err(rule("release_ids", "R4", format!("{r} is not a release of this application")));
        }
    }
    Ok(())
}

/// Checks that `h` is a handler named on the application and under its agreement (R5, R3).
pub fn check_handler(app: &AppState, h: &WsHandler) -> Result<(), WsError> {
    let a = app.application.as_ref().ok_or_else(|| rule("application", "R4", "no application"))?;
    let agreement = app.agreement.as_ref().ok_or_else(|| rule("agreement", "R3", "no agreement signed"))?;
    if !a.handlers.iter().any(|x| x.name.trim() == h.name.trim()) {
        return Err(rule("handlers", "R5", format!("{} is not a handler on the application", h.name)));
    }
    if !agreement.handlers.iter().any(|x| x.trim() == h.name.trim()) {
        return Err(rule("handlers", "R3", format!("{} is not a handler under the agreement", h.name)));
    }
    Ok(())
}

/// One line of the workspace list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WsSummary {
    /// Id.
    pub workspace_id: String,
    /// Application.
    pub application_id: String,
    /// Phase.
    pub phase: WsPhase,
    /// Last day of use.
    pub usage_to: NaiveDate,
    /// Handlers' names.
    pub handlers: Vec<String>,
    /// Deleted on.
    pub deleted_on: Option<NaiveDate>,
}

impl Registry {
    /// Opens a workspace for an approved Type II application (R4): its handlers, its releases.
    pub async fn open_workspace(
        &self,
        application_id: &str,
        handlers: &[WsHandler],
        release_ids: &[String],
        on: NaiveDate,
    ) -> Result<WsState, WsError> {
        let app = self.application_state(application_id).await?;
        check_open(&app, handlers, release_ids, on)?;
        for w in self.workspaces().await? {
            if w.application_id == application_id && w.phase == WsPhase::Open {
                return Err(rule("application", "R4", format!("workspace {} is already open for it", w.workspace_id)));
            }
        }
        let a = app.application.as_ref().expect("checked");
        let id = new_id("ws");
        let ev = WsEvent::Opened {
            application_id: application_id.to_owned(),
            usage_from: a.usage_from,
            usage_to: a.usage_to,
            handlers: handlers.to_vec(),
            release_ids: release_ids.to_vec(),
            on,
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO workspaces (workspace_id, application_id, created_at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(application_id)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        append(&mut tx, &id, 0, std::slice::from_ref(&ev)).await?;
        tx.commit().await?;
        self.workspace_state(&id).await
    }

    /// Adds a handler to a workspace's roster, checked against the application and agreement (R5).
    pub async fn add_workspace_handler(
        &self,
        id: &str,
        handler: &WsHandler,
        on: NaiveDate,
    ) -> Result<WsState, WsError> {
        let s = self.workspace_state(id).await?;
        let app = self.application_state(&s.application_id).await?;
        check_handler(&app, handler)?;
        self.execute_workspace(id, &WsCommand::AddHandler { handler: handler.clone(), on }).await
    }

    /// A workspace's events.
    pub async fn workspace_events(&self, id: &str) -> Result<Vec<WsEvent>, WsError> {
        Ok(crate::records::event_log(&self.pool, "workspace_events", "workspace_id", id, "workspace", "R5").await?)
    }

    /// A workspace's state.
    pub async fn workspace_state(&self, id: &str) -> Result<WsState, WsError> {
        Ok(replay(id, &self.workspace_events(id).await?))
    }

    /// Every workspace.
    pub async fn workspaces(&self) -> Result<Vec<WsSummary>, WsError> {
        let ids: Vec<String> = sqlx::query("SELECT workspace_id FROM workspaces ORDER BY created_at, workspace_id")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let mut v = Vec::new();
        for id in ids {
            let s = self.workspace_state(&id).await?;
            v.push(WsSummary {
                workspace_id: id,
                application_id: s.application_id,
                phase: s.phase,
                usage_to: s.usage_to,
                handlers: s.handlers.iter().map(|h| h.name.clone()).collect(),
                deleted_on: s.deleted.as_ref().map(|d| d.0),
            });
        }
        Ok(v)
    }

    /// The open workspaces `account_id` is a handler of.
    pub async fn workspaces_of(&self, account_id: &str) -> Result<Vec<WsState>, WsError> {
        let mut v = Vec::new();
        for w in self.workspaces().await? {
            let s = self.workspace_state(&w.workspace_id).await?;
            if s.handler(account_id).is_some() {
                v.push(s);
            }
        }
        Ok(v)
    }

    /// Runs a command on a workspace and stores its events.
    pub async fn execute_workspace(&self, id: &str, cmd: &WsCommand) -> Result<WsState, WsError> {
        let events = self.workspace_events(id).await?;
        let state = replay(id, &events);
        let new = handle(&state, cmd)?;
        let mut tx = self.pool.begin().await?;
        append(&mut tx, id, events.len() as i64, &new).await?;
        tx.commit().await?;
        let mut s = state;
        for e in &new {
            apply(&mut s, e);
        }
        Ok(s)
    }

    /// The sweep (R4, R5): closes every open workspace whose usage period ended before `as_of`, or whose
    /// application is no longer approved or is stopped by a sanction. Returns the ids closed.
    pub async fn expire_workspaces(&self, as_of: NaiveDate) -> Result<Vec<String>, WsError> {
        let mut closed = Vec::new();
        for w in self.workspaces().await? {
            if w.phase != WsPhase::Open {
                continue;
            }
            let app = self.application_state(&w.application_id).await?;
            let reason = if as_of > w.usage_to {
                Some(format!("usage period ended on {}", w.usage_to))
            } else if app.phase() != Phase::Approved {
                Some(format!("the application is {:?}", app.phase()))
            } else if app.suspended_on(as_of) {
                Some("use stopped by a sanction (D8)".to_owned())
            } else {
                None
            };
            if let Some(reason) = reason {
                self.execute_workspace(&w.workspace_id, &WsCommand::Close { on: as_of, reason }).await?;
                closed.push(w.workspace_id);
            }
        }
        Ok(closed)
    }

    /// Records the deletion of a closed workspace's contents (R5, Type II): the workspace's `Deleted`
    /// event and a ledger row in one transaction, then the application's deletion certificate for each
    /// place of use not yet certified (deleted by the creator).
    pub async fn record_workspace_deletion(
        &self,
        id: &str,
        on: NaiveDate,
        by: &str,
        summary: serde_json::Value,
    ) -> Result<(WsState, LedgerEntry), WsError> {
        let events = self.workspace_events(id).await?;
        let state = replay(id, &events);
        let new = handle(&state, &WsCommand::RecordDeletion { on, by: by.to_owned(), summary: summary.clone() })?;
        let app = self.application_state(&state.application_id).await?;
        let party =
            app.agreement.as_ref().map(|a| (a.user_name.clone(), a.user_address.clone(), a.user_detail.clone()));
        let (party_name, party_address, party_detail) =
            party.ok_or_else(|| rule("agreement", "R3", "the application has no agreement"))?;
        let input = LedgerInput {
            kind: LedgerKind::Deletion,
            application_id: Some(state.application_id.clone()),
            release_id: state.release_ids.first().cloned(),
            party_name,
            party_address,
            party_detail,
            second_party: String::new(),
            event_date: on,
            items: if state.tables.is_empty() { vec![format!("workspace {id}")] } else { state.tables.clone() },
            media: vec![format!("Visiting環境 {id}")],
            manifest_sha256: String::new(),
            note: format!(
                "Ⅱ型利用者のVisiting環境のデータ・スクリプト・中間生成物を作成事業者が消去（R5）: {}",
                serde_json::to_string(&summary).expect("json")
            ),
        };
        let mut tx = self.pool.begin().await?;
        append(&mut tx, id, events.len() as i64, &new).await?;
        let entry = insert_ledger(&mut tx, &input, None).await?;
        tx.commit().await?;
        if let Some(a) = app.application.as_ref() {
            for p in &a.places {
                if app.deletions.contains_key(&p.place_id) {
                    continue;
                }
                let cmd = Command::DeletionCertificate {
                    place_id: p.place_id.clone(),
                    on,
                    deleted_by: "creator".to_owned(),
                    certificate_sha256: None,
                };
                self.execute_review(&state.application_id, &cmd).await?;
            }
        }
        let mut s = state;
        for e in &new {
            apply(&mut s, e);
        }
        Ok((s, entry))
    }
}

async fn append(tx: &mut sqlx::AnyConnection, id: &str, start: i64, events: &[WsEvent]) -> Result<(), WsError> {
    let recorded_at = now();
    let day = NaiveDate::parse_from_str(&recorded_at[..10], "%Y-%m-%d").expect("now() is ISO");
    for (i, e) in events.iter().enumerate() {
        sqlx::query(
            "INSERT INTO workspace_events (workspace_id, seq, kind, event_json, recorded_at, retention_end) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(start + i as i64)
        .bind(e.kind())
        .bind(serde_json::to_string(e).expect("json"))
        .bind(&recorded_at)
        .bind(RetentionRule::ThreeYears.end_date(day).to_string())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
