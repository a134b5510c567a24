//! The Visiting environment (R4–R7, R13, D9): a workspace per approved Type II application, where
//! handlers run SQL against the datasets released to it and nothing else.
//!
//! Start at [`Workspace`]: a directory under the data directory holding sealed copies of the
//! released datasets (`datasets/`), sealed query results (`results/`), sealed saved scripts
//! (`scripts/`) and take-out requests (`takeouts/`). [`sandbox`] runs one query in a fresh
//! DataFusion context that knows only this workspace's tables (decrypted into memory for that query),
//! refuses anything but a single `SELECT`, has no file or URL tables, no object stores, no spilling to
//! disk, and stops at a memory pool limit, a row limit and a timeout. [`takeout`] puts a result through
//! kiban-disclosure's publication check and a checker's approval; only the approved version leaves.
//!
//! Invariants: no SQL of the registry here (the binary and the server pass records between this crate
//! and kiban-registry); plaintext of a dataset or a result exists only in memory; results are shown
//! paged, never offered as files; errors name the table, result or rule, never a medical value.

pub mod chart;
pub mod own;
pub mod sandbox;
pub mod store;
pub mod takeout;

pub use own::{Staged, StagedKind, Tool};
pub use sandbox::{Limits, QueryOutcome};
pub use store::{DeletionSummary, Page, ResultInfo, Workspace};
pub use takeout::{TakeoutCheck, TakeoutStatus};

/// Why a workspace operation failed; names the table, result or rule.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The query or request is not allowed in the Visiting environment.
    #[error("refused ({rule}): {reason}")]
    Refused {
        /// The requirement the refusal rests on.
        rule: &'static str,
        /// Why.
        reason: String,
    },
    /// A resource limit stopped the query.
    #[error("stopped by the {limit} limit: {detail}")]
    Limit {
        /// Which limit: memory, rows, time.
        limit: &'static str,
        /// What was reached.
        detail: String,
    },
    /// DataFusion could not plan or run the query (a mistake in the SQL).
    #[error("query error: {0}")]
    Sql(String),
    /// A dataset or result file failed to read, decrypt or write.
    #[error(transparent)]
    Dataset(#[from] kiban_formats::dataset::DatasetError),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No such result, script, table or take-out in this workspace.
    #[error("{kind} {id} does not exist in this workspace")]
    NotFound {
        /// What was looked for.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The publication check could not run.
    #[error("publication check: {0}")]
    Disclosure(String),
}

impl WorkspaceError {
    /// Whether this refusal is an attempt to reach something outside the workspace (monitored, R6).
    pub fn is_outside_reach(&self) -> bool {
        matches!(self, WorkspaceError::Refused { rule: "R13", .. })
    }
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> WorkspaceError + '_ {
    move |source| WorkspaceError::Io { path: path.to_owned(), source }
}

/// Whether `name` is a plain identifier usable as a table, result or script name
/// (`[a-z][a-z0-9_]{0,62}`), so no name can carry a path or a quote.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// Whether `id` is an id kiban generated (`<prefix>-<16 hex>`), so ids from URLs cannot walk paths.
pub fn valid_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
}

/// A fresh id `<prefix>-<16 hex>`.
pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source works");
    format!("{prefix}-{}", hex::encode(b))
}
