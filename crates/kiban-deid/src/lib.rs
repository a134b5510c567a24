//! kiban-deid owns anonymization (匿名加工, A1–A7) as one engine driven by a processing policy: it
//! validates the policy (every column has a role; nothing is kept silently), builds the
//! generalization hierarchies (ARX-format files or builders), deletes identifier and financial
//! columns, replaces id_code columns by random tokens and link_code columns by a per-release keyed
//! function, suppresses and top/bottom-codes unusual values (A4), searches the hierarchy lattice for
//! the full-domain generalization that meets k-anonymity (optionally ℓ-diversity, t-closeness) within
//! a record-suppression limit at the least information loss (A5), applies it in a second streaming
//! pass, and writes a processing report with risk before and after. Invariants: no mapping from a
//! token to its original value is ever stored — token keys are random, live only for one run and are
//! wiped; the report, logs and errors carry no key, token, mapping or hierarchy content (A6); every
//! output class is at least k records unless the report says otherwise; the search works only on
//! the frequency table of distinct quasi-identifier tuples, so the data itself is streamed, never
//! held whole.

pub mod apply;
pub mod engine;
pub mod error;
#[cfg(feature = "datafusion")]
pub mod frequency;
pub mod hierarchy;
pub mod io;
pub mod policy;
pub mod pseudo;
pub mod pseudo_bench;
pub mod reid;
pub mod report;
pub mod risk;
pub mod search;
pub mod text;
pub mod textgen;
pub mod textgen_heldout;

pub use engine::{Outcome, Progress, Rekey, RunOptions, anonymize};
pub use error::{DeidError, Result};
pub use hierarchy::{Builder, Hierarchy, MissingRule};
pub use io::{Input, Output};
pub use policy::{Metric, Policy};
pub use pseudo::{PseudoOptions, PseudoPolicy, PseudoReport, ReleaseKey, pseudonymize};
pub use report::Report;
pub use risk::Risk;
