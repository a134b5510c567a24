//! kiban-disclosure owns the publication check of aggregate tables (004 第7-2; O1–O9, D9): it reads
//! a table (CSV, Parquet or XLSX, long or wide, with or without margins) and a TOML declaration of what
//! each dimension and the count are, applies rules O1–O8 exactly as worded (each finding names the
//! cell, the rule id and the threshold), chooses secondary suppressions by linear programming one primary
//! at a time with a cleanup pass over cubes with all margins and linked tables sharing margins (single
//! tables above 2,500 cells by the same LP over a small sub-table around each primary, weighed against
//! the cheapest hypercube), audits every suppressed cell with the
//! interval an attacker can infer by linear programming (or a verified feasible perturbation when a
//! component is too large), flags differencing against a project's publication history, and writes a
//! JSON report, a self-contained Japanese HTML page and the protected CSV; its invariants are that a
//! table passes only when no finding is left and every primary cell's audited interval meets the
//! declared protection, that a product is intermediate until it passes and only a passing product gets
//! an approval record bound to the SHA-256 of the table, that true values of suppressed cells never
//! reach the protected CSV, and that it reads no data directory, registry or key — everything a
//! researcher needs to run it on their own machine is in its inputs.

pub mod api;
pub mod areas;
pub mod audit;
pub mod catalogue;
pub mod decl;
pub mod error;
pub mod history;
pub mod lpsup;
pub mod modular;
pub mod report;
pub mod rules;
pub mod stats;
pub mod suppress;
pub mod table;
pub mod workflow;

pub use error::DisclosureError;
