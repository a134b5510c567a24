//! One file or a folder tree through de-identification: read, clean attributes, clean pixels, write,
//! with a per-file report. Bad files are reported and not written.

use std::path::{Path, PathBuf};

use kiban_formats::dicom;
use serde::Serialize;

use crate::deid::{Config, Keyring, Stats, deidentify_attributes};
use crate::pixels::{DeclaredRegion, PixelChecks, PixelReport, clean_pixels};
use crate::profile::{Profile, ProfileOption};

/// SOP class assumed for a header-less data set that does not name its own.
const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";

/// Settings of a run beyond the profile options.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run Tesseract on images that need a text check (else declared regions only).
    pub ocr: bool,
    /// Declared annotation regions.
    pub regions: Vec<DeclaredRegion>,
    /// Scratch directory for images handed to OCR and face detection (deleted after each file).
    pub tmp: PathBuf,
    /// Also take data sets stored without the Part 10 header (old files); off by default, so such files
    /// are reported as errors.
    pub accept_no_meta: bool,
    /// Deface head CT (voxels outside the skull mask set to air); off by default, head volumes are flagged.
    pub deface: bool,
    /// Keep the input's relative paths for the outputs. Off by default: folder and file names often
    /// carry patient names or IDs, so outputs go to `<pseudonym[..16]>/<study>/<series>/<instance>.dcm`
    /// under the new UIDs.
    pub keep_paths: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            ocr: true,
            regions: crate::pixels::standard_regions(),
            tmp: std::env::temp_dir(),
            accept_no_meta: false,
            deface: false,
            keep_paths: false,
        }
    }
}

/// The outcome of one file (no original values, no keys).
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Input path (relative to the input root).
    pub input: String,
    /// Output path, when written.
    pub output: Option<String>,
    /// Error, when the file was not written.
    pub error: Option<String>,
    /// Attribute counts.
    pub stats: Option<Stats>,
    /// Pixel checks.
    pub pixels: Option<PixelReport>,
}

/// De-identifies one file held in memory; `Err` names why it cannot leave.
pub fn process_bytes(
    bytes: &[u8],
    profile: &Profile,
    cfg: &Config,
    keys: &Keyring,
    opts: &RunOptions,
) -> Result<(Vec<u8>, Stats, PixelReport), String> {
    let f = match dicom::read(bytes) {
        Err(dicom::DicomError::NoMetaHeader) if opts.accept_no_meta => {
            dicom::read_without_meta(bytes, SECONDARY_CAPTURE).map_err(|e| format!("no meta header, and {e}"))?
        }
        r => r.map_err(|e| e.to_string())?,
    };
    let (mut out, stats) = deidentify_attributes(&f, profile, cfg, keys).map_err(|e| e.to_string())?;
    let checks = PixelChecks {
        text: cfg.options.contains(&ProfileOption::CleanPixelData),
        faces: cfg.options.contains(&ProfileOption::CleanRecognizableVisualFeatures),
        ocr: opts.ocr,
        deface: opts.deface,
    };
    let px = clean_pixels(&mut out, checks, &opts.regions, &opts.tmp)?;
    Ok((dicom::write(&out), stats, px))
}

/// `<patient>/<study>/<series>/<instance>.dcm` from the de-identified values (never the input's names).
fn uid_path(bytes: &[u8]) -> PathBuf {
    let Ok((f, _)) = dicom::read_metadata(bytes) else { return PathBuf::from("unnamed.dcm") };
    let ds = &f.dataset;
    let part = |t: dicom::Tag, n: usize| -> String {
        let v = ds.ascii(t).unwrap_or_default();
        let v: String = v.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.').take(n).collect();
        if v.is_empty() { "unknown".into() } else { v }
    };
    PathBuf::from(part(dicom::Tag(0x0010, 0x0020), 16))
        .join(part(dicom::Tag(0x0020, 0x000D), 64))
        .join(part(dicom::Tag(0x0020, 0x000E), 64))
        .join(format!("{}.dcm", part(dicom::Tag(0x0008, 0x0018), 64)))
}

/// De-identifies every file under `input` (a file or folder) into `out_dir` (named by new UIDs, or by
/// relative path with `keep_paths`).
/// `progress` is called after each file. Files that fail are in the reports with their error only.
pub fn process_tree(
    input: &Path,
    out_dir: &Path,
    profile: &Profile,
    cfg: &Config,
    keys: &Keyring,
    opts: &RunOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Vec<FileReport> {
    let files = dicom::files_under(input);
    let root =
        if input.is_dir() { input.to_path_buf() } else { input.parent().map(Path::to_path_buf).unwrap_or_default() };
    let mut reports = Vec::with_capacity(files.len());
    let mut taken = std::collections::HashSet::new();
    for (i, p) in files.iter().enumerate() {
        let rel = p.strip_prefix(&root).unwrap_or(p).to_path_buf();
        let mut rep =
            FileReport { input: rel.display().to_string(), output: None, error: None, stats: None, pixels: None };
        let res = std::fs::read(p).map_err(|e| e.to_string()).and_then(|b| process_bytes(&b, profile, cfg, keys, opts));
        match res {
            Ok((bytes, stats, px)) => {
                let mut dest = if opts.keep_paths { out_dir.join(&rel) } else { out_dir.join(uid_path(&bytes)) };
                // Two inputs with the same instance UID (copies, variants) must not overwrite each other.
                let stem = dest.with_extension("");
                let mut k = 1;
                while !taken.insert(dest.clone()) {
                    k += 1;
                    dest = PathBuf::from(format!("{}-{k}.dcm", stem.display()));
                }
                let written = dest.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|_| {
                    let tmp = dest.with_extension("partial");
                    std::fs::write(&tmp, &bytes)?;
                    std::fs::rename(&tmp, &dest)
                });
                match written {
                    Ok(()) => {
                        rep.output = Some(dest.display().to_string());
                        rep.stats = Some(stats);
                        rep.pixels = Some(px);
                    }
                    Err(e) => rep.error = Some(format!("write: {e}")),
                }
            }
            Err(e) => rep.error = Some(e),
        }
        reports.push(rep);
        progress(i + 1, files.len());
    }
    reports
}
