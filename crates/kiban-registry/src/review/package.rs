//! Provision as one step (R9, D6): build the encrypted per-recipient package of a dataset, record
//! the release (and so the ledger entry) and only then hand the package to the release gateway.
//! The CLI (`kiban release package`) and the HTTP API share it.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use zeroize::Zeroizing;

use super::db::ReviewError;
use super::workflow::{Command, Medium, ReleaseSpec, State};
use crate::Registry;
use crate::ledger::LedgerEntry;

/// Why a package was not made; the release was not recorded in every case.
#[derive(Debug, thiserror::Error)]
pub enum PackageStepError {
    /// A field names something that is not an id.
    #[error("{field} {value:?} is not a plain id (letters, digits, '-', '_', '.')")]
    BadId {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// Building the package failed.
    #[error("release package: {0}")]
    Package(#[from] kiban_formats::package::PackageError),
    /// The workflow refused the release (not approved, period over, banned …).
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// A file-system error while handing the package to the gateway.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A package delivered to the release gateway's outbox; the key is the recipient's, shown once.
pub struct Delivered {
    /// The release id recorded.
    pub release_id: String,
    /// Where the release gateway serves it from.
    pub package: PathBuf,
    /// The recipient's key (never stored by kiban; hand it over apart from the package).
    pub key: Zeroizing<[u8; 32]>,
    /// The application's state after the release.
    pub state: State,
    /// The ledger entries written (R9).
    pub ledger: Vec<LedgerEntry>,
}

/// What to release to whom.
pub struct PackageRequest<'a> {
    /// The application.
    pub application_id: &'a str,
    /// The dataset directory (with its manifest).
    pub dataset: &'a Path,
    /// The recipient's account id (the release gateway serves only them).
    pub recipient: &'a str,
    /// Items provided.
    pub items: Vec<String>,
    /// Portable media, if any.
    pub media: Vec<Medium>,
    /// Date of provision.
    pub on: NaiveDate,
    /// Opens a dataset sealed at rest (the data directory's key store).
    pub sealer: Option<&'a dyn kiban_formats::Sealer>,
}

/// True for a plain id that cannot name a path outside its directory.
pub fn is_plain_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Builds the package under `<data_dir>/staging`, records the release, then moves the package into
/// `<data_dir>/releases/outbox/<recipient>/`. A refused release leaves no package behind.
pub async fn release_package(
    reg: &Registry,
    data_dir: &Path,
    req: PackageRequest<'_>,
) -> Result<Delivered, PackageStepError> {
    if !is_plain_id(req.recipient) {
        return Err(PackageStepError::BadId { field: "recipient", value: req.recipient.to_owned() });
    }
    let release_id = format!("rel-{:016x}", rand::random::<u64>());
    let key = kiban_formats::package::new_recipient_key();
    let staging = data_dir.join("staging");
    std::fs::create_dir_all(&staging).map_err(|source| PackageStepError::Io { path: staging.clone(), source })?;
    let staged = staging.join(format!("{release_id}.kbp"));
    let h = kiban_formats::package::write_package(
        req.dataset,
        &staged,
        &key,
        req.application_id,
        &release_id,
        req.recipient,
        req.sealer,
    )?;
    let spec = ReleaseSpec {
        release_id: release_id.clone(),
        on: req.on,
        manifest_sha256: h.manifest_sha256,
        items: req.items,
        media: req.media,
        // A7: the policy the dataset was processed under, as its manifest records it.
        policy_sha256: kiban_formats::read_manifest(req.dataset)
            .ok()
            .and_then(|m| m.provenance.get("policy_sha256").and_then(|v| v.as_str()).map(str::to_owned)),
    };
    let (state, ledger) = match reg.execute_review(req.application_id, &Command::Release { spec }).await {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e.into());
        }
    };
    let outbox = data_dir.join("releases").join("outbox").join(req.recipient);
    std::fs::create_dir_all(&outbox).map_err(|source| PackageStepError::Io { path: outbox.clone(), source })?;
    let package = outbox.join(format!("{release_id}.kbp"));
    std::fs::rename(&staged, &package).map_err(|source| PackageStepError::Io { path: package.clone(), source })?;
    Ok(Delivered { release_id, package, key, state, ledger })
}
