//! The bulk passes as Apache DataFusion plans, run in-process or on a DataFusion Ballista cluster.
//!
//! Start at [`runner`]: one [`Runner`] executes a DataFusion plan either in this process
//! (`SessionContext`) or on a Ballista scheduler (`--cluster URL`, feature `cluster`), and writes the
//! result as a kiban dataset in a deterministic order, so both runs give the same bytes.
//! [`plans`] builds the passes (the opt-out gate, pseudonym tokens, the QI frequency count) with
//! kiban's own UDFs from [`udf`]. Secrets travel only sealed for one job ([`seal`]): a UDF carries
//! a job id, a salt and ciphertext; executors open it with the cluster secret from their own key file.
//! With the feature, [`codec`] ships the UDFs inside plans and [`node`] runs a scheduler or an executor.

pub mod anonymize;
pub mod bench;
#[cfg(feature = "cluster")]
pub mod codec;
pub mod deid_udf;
pub mod intake;
pub mod jobfile;
#[cfg(feature = "cluster")]
pub mod node;
pub mod plans;
#[cfg(feature = "cluster")]
pub mod release;
pub mod runner;
pub mod seal;
pub mod synth;
pub mod udf;

pub use runner::{Output, Runner};
pub use seal::{ClusterSecret, SealedJob};
pub use udf::{GateFacts, GateUdf, TokenUdf, job_file_beside};

/// Errors of this crate; each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A DataFusion or Ballista error while planning or executing.
    #[error("plan {stage}: {source}")]
    DataFusion {
        /// What was being done.
        stage: &'static str,
        /// The engine's error.
        #[source]
        source: datafusion::error::DataFusionError,
    },
    /// Writing the output dataset failed.
    #[error("output dataset: {0}")]
    Dataset(#[from] kiban_formats::dataset::DatasetError),
    /// A secret or a sealed job payload could not be used (never carries key bytes).
    #[error("job secret: {0}")]
    Secret(String),
    /// Bad input: names the field and the rule.
    #[error("{field}: {rule}")]
    Input {
        /// The field or column.
        field: String,
        /// What was wrong.
        rule: String,
    },
    /// The anonymization engine refused or failed (its error names the column and rule).
    #[error("anonymization: {0}")]
    Deid(#[from] kiban_deid::DeidError),
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, ClusterError>;

/// Maps an I/O error on `path` into [`ClusterError::Io`].
pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ClusterError + use<> {
    let path = path.display().to_string();
    move |source| ClusterError::Io { path, source }
}

pub(crate) fn df(stage: &'static str) -> impl FnOnce(datafusion::error::DataFusionError) -> ClusterError {
    move |source| ClusterError::DataFusion { stage, source }
}
