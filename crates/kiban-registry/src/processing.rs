//! Processed datasets (A7, S1–S3, R12): a processing policy run over source data and written as a
//! kiban dataset sealed at rest under `<data-dir>/datasets/`, whose manifest names the policy hash
//! and carries the processing report (never a key, token mapping or value). `kiban pseudonymize`,
//! `kiban anonymize` and the release pipeline ([`crate::review::package`]) share it, so processed
//! medical data reaches the disk only sealed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use kiban_deid::{Input, Output, Policy, PseudoOptions, PseudoPolicy, PseudoReport, RunOptions};
use kiban_formats::dataset::{DatasetWriter, FileFormat, Manifest};
use kiban_formats::{DatasetError, Sealer};

/// Why a processed dataset was not written (nothing is left behind in every case).
#[derive(Debug, thiserror::Error)]
pub enum ProcessingError {
    /// The policy or the data broke a rule of the de-identifier (names the column and the rule).
    #[error(transparent)]
    Deid(#[from] kiban_deid::DeidError),
    /// Reading the source dataset or writing the processed one.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The source holds no records.
    #[error("{0}: no records to process (rule: a processed dataset holds the processed records)")]
    Empty(String),
}

/// Where the records come from.
pub enum Source<'a> {
    /// A CSV (with a header) or Parquet file.
    File(&'a Path),
    /// A kiban dataset (e.g. a clinical table of the store), opened with the key store when sealed.
    Dataset {
        /// Its directory (with `manifest.json`).
        dir: &'a Path,
        /// Opens sealed parts.
        sealer: Option<&'a dyn Sealer>,
    },
}

/// A processed dataset, committed.
#[derive(Debug)]
pub struct Processed {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest (provenance: process, policy hash and name, source digest, report).
    pub manifest: Manifest,
    /// The processing report as JSON (also in the manifest).
    pub report: serde_json::Value,
    /// Records read.
    pub records_in: u64,
    /// Records written.
    pub records_out: u64,
    /// The policy hash (A7).
    pub policy_sha256: String,
}

/// Rows per part file of a processed dataset.
const PART_ROWS: usize = 1 << 20;

/// Writes `batches` as parts of at most [`PART_ROWS`] rows; the writer is made at the first batch.
struct Parts {
    dir: PathBuf,
    name: String,
    sealer: Arc<dyn Sealer>,
    writer: Option<DatasetWriter>,
    pending: Vec<RecordBatch>,
    rows: usize,
    next: usize,
}

impl Parts {
    /// No parts written yet.
    fn new(dir: &Path, name: &str, sealer: Arc<dyn Sealer>) -> Self {
        Parts {
            dir: dir.to_owned(),
            name: name.to_owned(),
            sealer,
            writer: None,
            pending: Vec::new(),
            rows: 0,
            next: 0,
        }
    }

    fn push(&mut self, batches: Vec<RecordBatch>) -> Result<(), ProcessingError> {
        for b in batches {
            if self.writer.is_none() {
                let w = DatasetWriter::create(&self.dir, &self.name, b.schema(), FileFormat::Parquet)?
                    .sealed(self.sealer.clone());
                self.writer = Some(w);
            }
            self.rows += b.num_rows();
            self.pending.push(b);
            if self.rows >= PART_ROWS {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ProcessingError> {
        if let Some(w) = &self.writer
            && !self.pending.is_empty()
        {
            w.write_part(&format!("part-{:05}", self.next), &self.pending)?;
            self.next += 1;
            self.pending.clear();
            self.rows = 0;
        }
        Ok(())
    }

    fn commit(mut self, what: &str, provenance: serde_json::Value) -> Result<Manifest, ProcessingError> {
        self.flush()?;
        match self.writer.take() {
            Some(w) => Ok(w.commit(provenance)?),
            None => Err(ProcessingError::Empty(what.to_owned())),
        }
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        // A run that failed leaves no staging directory with (sealed) parts behind.
        if self.writer.is_some() {
            let _ = std::fs::remove_dir_all(self.dir.with_extension("staging"));
        }
    }
}

/// Adds the counts of one part's report to the run's report.
fn merge(into: &mut Option<PseudoReport>, r: PseudoReport) {
    let Some(acc) = into else {
        *into = Some(r);
        return;
    };
    acc.records_in += r.records_in;
    acc.records_out += r.records_out;
    acc.millis += r.millis;
    for (k, v) in r.address_levels {
        *acc.address_levels.entry(k).or_default() += v;
    }
    for (a, b) in acc.columns.iter_mut().zip(r.columns) {
        a.changed += b.changed;
        for (k, v) in b.findings {
            *a.findings.entry(k).or_default() += v;
        }
    }
}

/// Pseudonymizes `source` under `policy` (S1–S3, S5, S6) into a sealed dataset at `dir` named
/// `name`. `extra` is added to the manifest's provenance (release id, pseudonym domain …). A source
/// dataset is processed part by part (memory bounded by a part); the tokens of every part come from
/// the one key of `opts`.
pub fn pseudonymize_to_dataset(
    policy: &PseudoPolicy,
    source: Source<'_>,
    opts: &PseudoOptions,
    dir: &Path,
    name: &str,
    sealer: Arc<dyn Sealer>,
    extra: serde_json::Value,
) -> Result<Processed, ProcessingError> {
    let mut parts = Parts::new(dir, name, sealer);
    let mut report: Option<PseudoReport> = None;
    let source_digest = match source {
        Source::File(path) => {
            // The file's SHA-256 is computed; the output's is the manifest's (parts listed there).
            let out = kiban_deid::pseudo::pseudonymize_digested_by_caller(
                policy,
                &Input::from_path(path),
                &Output::Memory,
                opts,
            )?;
            let digest = out.report.input_sha256.clone();
            parts.push(out.batches)?;
            merge(&mut report, out.report);
            digest
        }
        Source::Dataset { dir: src, sealer } => {
            let m = kiban_formats::verify_dataset(src)?;
            for f in &m.files {
                let batches = kiban_formats::read_part(src, &m, f, sealer)?;
                // The source manifest's digest and the parts' stand for the in-memory digests.
                let out = kiban_deid::pseudo::pseudonymize_digested_by_caller(
                    policy,
                    &Input::Batches(batches),
                    &Output::Memory,
                    opts,
                )?;
                parts.push(out.batches)?;
                merge(&mut report, out.report);
            }
            let raw = std::fs::read(src.join("manifest.json"))
                .map_err(|source| DatasetError::Io { path: src.join("manifest.json"), source })?;
            crate::ledger::sha256_hex(&raw)
        }
    };
    let Some(mut report) = report else {
        return Err(ProcessingError::Empty(name.to_owned()));
    };
    report.input_sha256 = source_digest.clone();
    // The output digest is the manifest's: every part's SHA-256 is listed there.
    report.output_sha256 = String::new();
    let report_json = serde_json::to_value(&report).expect("report serializes");
    let mut prov = serde_json::json!({
        "process": "pseudonymization",
        "policy_sha256": policy.hash,
        "policy_name": policy.name,
        "source_sha256": source_digest,
        "report": report_json,
    });
    merge_json(&mut prov, extra);
    let manifest = parts.commit(name, prov)?;
    Ok(Processed {
        dir: dir.to_owned(),
        manifest,
        report: report_json,
        records_in: report.records_in,
        records_out: report.records_out,
        policy_sha256: policy.hash.clone(),
    })
}

/// Anonymizes `input` under `policy` (A1–A6) into a sealed dataset at `dir` named `name`; the
/// manifest's provenance names the policy hash and holds the JSON report.
pub fn anonymize_to_dataset(
    policy: &Policy,
    input: &Input,
    opts: &RunOptions,
    dir: &Path,
    name: &str,
    sealer: Arc<dyn Sealer>,
    extra: serde_json::Value,
) -> Result<Processed, ProcessingError> {
    let out = kiban_deid::anonymize(policy, input, &Output::Memory, opts)?;
    let mut parts = Parts::new(dir, name, sealer);
    parts.push(out.batches)?;
    let report_json: serde_json::Value = serde_json::from_str(&out.report.to_json()).expect("report is JSON");
    commit_anonymized(parts, dir, name, policy, &out.report, report_json, None, extra)
}

/// Commits an anonymized dataset's parts with its provenance (policy, report and, for a dataset
/// made from another, the source's digest) and returns what was made.
#[allow(clippy::too_many_arguments)]
fn commit_anonymized(
    parts: Parts,
    dir: &Path,
    name: &str,
    policy: &Policy,
    report: &kiban_deid::Report,
    report_json: serde_json::Value,
    source_digest: Option<&str>,
    extra: serde_json::Value,
) -> Result<Processed, ProcessingError> {
    let mut prov = serde_json::json!({
        "process": "anonymization",
        "policy_sha256": report.policy_hash,
        "policy_name": policy.name,
    });
    if let Some(d) = source_digest {
        prov["source_sha256"] = serde_json::Value::String(d.to_owned());
    }
    prov["report"] = report_json.clone();
    merge_json(&mut prov, extra);
    let manifest = parts.commit(name, prov)?;
    Ok(Processed {
        dir: dir.to_owned(),
        manifest,
        report: report_json,
        records_in: report.records_in,
        records_out: report.records_out,
        policy_sha256: report.policy_hash.clone(),
    })
}

/// Anonymizes the dataset at `src` (opened with `src_sealer` when sealed) under `policy` (A1–A6)
/// into a sealed dataset at `dir` named `name`, part by part: every pass of the engine opens the
/// source's parts one at a time and the output is written as parts of at most [`PART_ROWS`] rows as
/// it comes, so memory is bounded by a part and the engine's frequency table, not by the source.
/// The manifest's provenance names the policy hash and the source manifest's SHA-256 and holds the
/// JSON report.
#[allow(clippy::too_many_arguments)]
pub fn anonymize_dataset_to_dataset(
    policy: &Policy,
    src: &Path,
    src_sealer: Option<Arc<dyn Sealer>>,
    opts: &RunOptions,
    dir: &Path,
    name: &str,
    sealer: Arc<dyn Sealer>,
    extra: serde_json::Value,
) -> Result<Processed, ProcessingError> {
    let m = kiban_formats::verify_dataset(src)?;
    let raw = std::fs::read(src.join("manifest.json"))
        .map_err(|source| DatasetError::Io { path: src.join("manifest.json"), source })?;
    let source_digest = crate::ledger::sha256_hex(&raw);
    let (from, what) = (src.to_owned(), src.display().to_string());
    let input = Input::Stream(kiban_deid::io::BatchSource::new(what.clone(), move |f| {
        for file in &m.files {
            let batches = kiban_formats::read_part(&from, &m, file, src_sealer.as_deref())
                .map_err(|e| kiban_deid::DeidError::format(&what, e))?;
            for b in batches {
                f(b)?;
            }
        }
        Ok(())
    }));
    let parts = Arc::new(std::sync::Mutex::new(Some(Parts::new(dir, name, sealer))));
    let (to, failed) = (parts.clone(), Arc::new(std::sync::Mutex::new(None)));
    let failure = failed.clone();
    let output = Output::Stream(kiban_deid::io::BatchConsumer::new(move |b| {
        let mut g = to.lock().unwrap_or_else(|p| p.into_inner());
        let p = g.as_mut().expect("parts are taken only after the run");
        p.push(vec![b]).map_err(|e| {
            let msg = e.to_string();
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            kiban_deid::DeidError::format("output", msg)
        })
    }));
    let run = kiban_deid::anonymize(policy, &input, &output, opts);
    drop(output);
    // A failure to write a part is reported as itself, not as the engine's wrapper.
    if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    let out = run?;
    let parts = parts.lock().unwrap_or_else(|p| p.into_inner()).take().expect("parts are taken once");
    let mut report_json: serde_json::Value = serde_json::from_str(&out.report.to_json()).expect("report is JSON");
    report_json["input_sha256"] = serde_json::Value::String(source_digest.clone());
    // The output digest is the manifest's: every part's SHA-256 is listed there.
    report_json["output_sha256"] = serde_json::Value::String(String::new());
    commit_anonymized(parts, dir, name, policy, &out.report, report_json, Some(&source_digest), extra)
}

fn merge_json(into: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), extra) {
        for (k, v) in b {
            a.entry(k).or_insert(v);
        }
    }
}
