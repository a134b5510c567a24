//! Provision as one step (R9, D6): build the encrypted per-recipient package of a dataset, record
//! the release (and so the ledger entry) and only then hand the package to the release gateway.
//! The CLI (`kiban release package`) and the HTTP API share it.
//!
//! A pseudonymized release (S1–S3, A7) is made here, not brought in: the approved processing
//! policy (its hash checked against the committee's decision before any work) runs over the source
//! data with the release's own token key — derived by the caller from the release's pseudonym
//! domain (kiban-identity `release.rs`), shared with an earlier release only when the approved
//! application asks for that linkage — and the result is sealed under `<data-dir>/datasets/<release>`.
//! An anonymized release may be made the same way under its approved anonymization policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use zeroize::Zeroizing;

use super::application::ApplicationKind;
use super::db::ReviewError;
use super::workflow::{Command, Decision, Medium, Phase, ReleaseSpec, State};
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
    /// A rule refused the release before anything was processed or recorded.
    #[error("{field}: {reason} (rule {rule})")]
    Refused {
        /// The field or input at fault.
        field: &'static str,
        /// The requirement id.
        rule: &'static str,
        /// Why.
        reason: String,
    },
    /// Running the approved policy over the source data failed (names the column or part).
    #[error("processing: {0}")]
    Processing(#[from] crate::processing::ProcessingError),
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

/// The earlier release whose pseudonym domain a new release may join, with the approval behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkageAllowed {
    /// The earlier release.
    pub earlier_release: String,
    /// Where the approval is recorded (application id and the linkage it names).
    pub decision: String,
}

/// The token key of one release and the pseudonym domain it comes from (no key material in `Debug`).
pub struct ReleaseDomainKey {
    /// The key of tokens and date offsets.
    pub key: kiban_deid::ReleaseKey,
    /// The pseudonym domain (`release/<id>`, or the linked release's).
    pub domain: String,
}

/// Derives a release's token key from its pseudonym domain: given the release id and the allowed
/// linkage, if any. Implemented by the caller over the key store (kiban-identity `release.rs`).
pub type ReleaseKeyFn<'a> =
    &'a (dyn Fn(&str, Option<&LinkageAllowed>) -> Result<ReleaseDomainKey, String> + Send + Sync);

/// The release is made by running the approved policy over source data.
pub struct Processing<'a> {
    /// The source dataset directory (e.g. a clinical table), sealed or plain.
    pub source: &'a Path,
    /// The policy file (its hash must be the one the committee approved, A7): pseudonymization for
    /// a pseudonymized application, anonymization for an anonymized one.
    pub policy: &'a Path,
    /// Join the tokens of this earlier release (the approved application must name it under linkage).
    pub link_to: Option<&'a str>,
    /// The release's token key from its pseudonym domain.
    pub release_key: ReleaseKeyFn<'a>,
    /// Seals the processed dataset at rest.
    pub sealer: Arc<dyn kiban_formats::Sealer>,
}

/// What is released.
pub enum ReleaseData<'a> {
    /// A processed dataset directory (with its manifest, whose policy hash is checked, A7):
    /// anonymized applications only.
    Dataset(&'a Path),
    /// Made now by running the approved policy over source data (required for pseudonymized data;
    /// an anonymization policy for anonymized applications).
    Process(Processing<'a>),
}

/// What to release to whom.
pub struct PackageRequest<'a> {
    /// The application.
    pub application_id: &'a str,
    /// The dataset, or how to make it.
    pub data: ReleaseData<'a>,
    /// The recipient's account id (the release gateway serves only them).
    pub recipient: &'a str,
    /// Items provided.
    pub items: Vec<String>,
    /// Portable media, if any.
    pub media: Vec<Medium>,
    /// Date of provision.
    pub on: NaiveDate,
    /// Opens a dataset sealed at rest (the data directory's key store).
    pub sealer: Option<Arc<dyn kiban_formats::Sealer>>,
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
    let (dataset, produced) = match &req.data {
        ReleaseData::Dataset(p) => {
            let st = reg.application_state(req.application_id).await?;
            if st.application.as_ref().is_some_and(|a| a.kind == ApplicationKind::Pseudonymized) {
                return Err(PackageStepError::Refused {
                    field: "dataset",
                    rule: "A7",
                    reason: "a pseudonymized release is made by running the approved policy over the source data \
                             (give the source and the policy), not packaged from a dataset made elsewhere"
                        .into(),
                });
            }
            (p.to_path_buf(), false)
        }
        ReleaseData::Process(p) => {
            (process(reg, data_dir, req.application_id, &release_id, p, req.sealer.clone()).await?, true)
        }
    };
    let r = package_dataset(reg, data_dir, &req, &release_id, &dataset).await;
    if r.is_err() && produced {
        // Nothing was released: the dataset made for this release goes too.
        let _ = std::fs::remove_dir_all(&dataset);
    }
    r
}

/// Checks the approval (phase, kind, policy hash, linkage) before any work, then runs the policy
/// over the source with the release's key into `<data_dir>/datasets/<release_id>` (sealed).
async fn process(
    reg: &Registry,
    data_dir: &Path,
    application_id: &str,
    release_id: &str,
    p: &Processing<'_>,
    source_sealer: Option<Arc<dyn kiban_formats::Sealer>>,
) -> Result<PathBuf, PackageStepError> {
    let refused = |field, rule, reason: String| PackageStepError::Refused { field, rule, reason };
    let st = reg.application_state(application_id).await?;
    if st.phase() != Phase::Approved {
        return Err(refused("application", "R2", format!("{application_id} is {:?}, not approved", st.phase())));
    }
    let app = st.application.as_ref().expect("an approved application has its content");
    let perr = crate::processing::ProcessingError::from;
    // Anonymized data (004 style): the approved anonymization policy over the whole source (k-anonymity
    // counts every record, in a first pass over the parts); its codes are re-keyed by a key destroyed
    // after the run (A3).
    let anonymized = app.kind == ApplicationKind::Anonymized;
    let (hash, pseudo, anon) = if anonymized {
        let policy = kiban_deid::Policy::load(p.policy).map_err(perr)?;
        (policy.hash.clone(), None, Some(policy))
    } else {
        let policy = kiban_deid::PseudoPolicy::load(p.policy).map_err(perr)?;
        (policy.hash.clone(), Some(policy), None)
    };
    let approved = match &st.decision {
        Some((Decision::Approve { processing_policy_sha256: Some(h), .. }, _)) => h.clone(),
        _ => {
            return Err(refused(
                "policy",
                "A7",
                "the committee's decision names no processing policy: the degree of processing is set per use".into(),
            ));
        }
    };
    if hash != approved {
        return Err(refused(
            "policy",
            "A7",
            format!(
                "the committee approved processing policy {}; {} is {}",
                &approved[..approved.len().min(12)],
                p.policy.display(),
                &hash[..hash.len().min(12)]
            ),
        ));
    }
    let dir = data_dir.join("datasets").join(release_id);
    if let Some(policy) = anon {
        if p.link_to.is_some() {
            return Err(refused("link_to", "A3", "anonymized releases are never linked with another release".into()));
        }
        let extra = serde_json::json!({"application": application_id, "release": release_id});
        let (source, out_sealer, name, out) =
            (p.source.to_owned(), p.sealer.clone(), release_id.to_owned(), dir.clone());
        // Part by part (bounded memory): each pass of the engine opens the source's parts one at a time.
        off_runtime(move || {
            let opts = kiban_deid::RunOptions::default();
            crate::processing::anonymize_dataset_to_dataset(
                &policy,
                &source,
                source_sealer,
                &opts,
                &out,
                &name,
                out_sealer,
                extra,
            )?;
            Ok(())
        })
        .await?;
        return Ok(dir);
    }
    let policy = pseudo.expect("pseudonymization policy");
    let linkage = match p.link_to {
        None => None,
        Some(earlier) => Some(linkage_allowed(&st, application_id, earlier)?),
    };
    let key = (p.release_key)(release_id, linkage.as_ref()).map_err(|reason| refused("release_key", "A3", reason))?;
    let extra = serde_json::json!({
        "application": application_id,
        "release": release_id,
        "pseudonym_domain": key.domain,
        "linked_to": linkage.as_ref().map(|l| l.earlier_release.clone()),
    });
    let opts = kiban_deid::PseudoOptions::new(key.key);
    let (source, out_sealer, name, out) = (p.source.to_owned(), p.sealer.clone(), release_id.to_owned(), dir.clone());
    off_runtime(move || {
        let source = crate::processing::Source::Dataset { dir: &source, sealer: source_sealer.as_deref() };
        crate::processing::pseudonymize_to_dataset(&policy, source, &opts, &out, &name, out_sealer, extra)?;
        Ok(())
    })
    .await?;
    Ok(dir)
}

/// Runs CPU-bound release work (processing a whole source, encrypting a package) on tokio's
/// blocking pool, so that the server's other requests are answered meanwhile; a panic there is
/// re-raised here.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PackageStepError> + Send + 'static,
) -> Result<T, PackageStepError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => {
            Err(PackageStepError::Io { path: PathBuf::from("<release worker>"), source: std::io::Error::other(e) })
        }
    }
}

/// Whether the approved application `application_id` (its state `st`) allows linking a new release
/// with `earlier`: the committee approved an application whose linkage (D1 ⑤) names that release
/// (`rel-…` or `release:rel-…`). Anything else keeps the releases' tokens apart (A3).
pub fn linkage_allowed(st: &State, application_id: &str, earlier: &str) -> Result<LinkageAllowed, PackageStepError> {
    let refused = |reason: String| PackageStepError::Refused { field: "link_to", rule: "A3", reason };
    if st.phase() != Phase::Approved {
        return Err(refused(format!("linkage needs an approved application; {application_id} is {:?}", st.phase())));
    }
    let named = st
        .application
        .as_ref()
        .is_some_and(|a| a.plan.linkage.iter().any(|l| l == earlier || l.strip_prefix("release:") == Some(earlier)));
    if !named {
        return Err(refused(format!(
            "linkage with release {earlier} is not in the approved application {application_id} (D1 linkage)"
        )));
    }
    Ok(LinkageAllowed {
        earlier_release: earlier.to_owned(),
        decision: format!("application/{application_id}/linkage/{earlier}"),
    })
}

async fn package_dataset(
    reg: &Registry,
    data_dir: &Path,
    req: &PackageRequest<'_>,
    release_id: &str,
    dataset: &Path,
) -> Result<Delivered, PackageStepError> {
    let release_id = release_id.to_owned();
    let key = kiban_formats::package::new_recipient_key();
    let staging = data_dir.join("staging");
    std::fs::create_dir_all(&staging).map_err(|source| PackageStepError::Io { path: staging.clone(), source })?;
    let staged = staging.join(format!("{release_id}.kbp"));
    let h = {
        let (dataset, staged, key) = (dataset.to_owned(), staged.clone(), key.clone());
        let (app, rel, to, sealer) =
            (req.application_id.to_owned(), release_id.clone(), req.recipient.to_owned(), req.sealer.clone());
        off_runtime(move || {
            Ok(kiban_formats::package::write_package(&dataset, &staged, &key, &app, &rel, &to, sealer.as_deref())?)
        })
        .await?
    };
    let spec = ReleaseSpec {
        release_id: release_id.clone(),
        on: req.on,
        manifest_sha256: h.manifest_sha256,
        items: req.items.clone(),
        media: req.media.clone(),
        // A7: the policy the dataset was processed under, as its manifest records it.
        policy_sha256: kiban_formats::read_manifest(dataset)
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
