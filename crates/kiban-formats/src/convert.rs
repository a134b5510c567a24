//! One provider's submission in any supported format → canonical Parquet tables, with identity
//! (`patients`) written apart from the clinical tables and every quarantined record kept as a JSON
//! line. Streams: memory holds one batch per table plus what the format's reader holds (one
//! message, receipt, line or document).

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

use crate::canonical::{BatchSink, Quarantined, Table};
use crate::masters::Masters;
use crate::tabular::SchemaFile;
use crate::{cda, dpc, fhir, ssmix2, tabular, uke};

/// A format a submission comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// SS-MIX2 standardized storage (a directory tree).
    Ssmix2,
    /// UKE receipt files (`*.uke`), masters in `masters/`.
    Uke,
    /// DPC 様式1 (`*form1*`, `*ff1*`) and EF (`*ef*`) files, drug master in `masters/`.
    Dpc,
    /// FHIR `*.json` / `*.ndjson`.
    Fhir,
    /// 特定健診 CDA `*.xml`.
    Cda,
    /// CSV files with `schema.toml`.
    Csv,
    /// Parquet files with `schema.toml`.
    Parquet,
}

impl InputFormat {
    /// Parses a format name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ssmix2" => Self::Ssmix2,
            "uke" => Self::Uke,
            "dpc" => Self::Dpc,
            "fhir" => Self::Fhir,
            "cda" => Self::Cda,
            "csv" => Self::Csv,
            "parquet" => Self::Parquet,
            _ => return None,
        })
    }
}

/// What a conversion did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConvertReport {
    /// Files read.
    pub files: u64,
    /// Records per table.
    pub rows: Vec<(String, u64)>,
    /// Records quarantined.
    pub quarantined: u64,
    /// Where the quarantine list is (JSON lines), when anything was quarantined.
    pub quarantine_file: Option<PathBuf>,
}

/// Errors that stop a conversion (a bad record never does).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What happened.
        message: String,
    },
}

fn ferr(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> ConvertError + '_ {
    move |e| ConvertError::File { path: path.to_owned(), message: e.to_string() }
}

fn files_in(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, ConvertError> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| ferr(dir)(&e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && keep(&p.file_name().unwrap_or_default().to_string_lossy().to_lowercase()))
        .collect();
    v.sort();
    Ok(v)
}

/// Reads `input` in `format` for `provider_id` and writes `<clinical>/<table>/part-00000.parquet`
/// for each clinical table with rows, `<identity>/patients/part-00000.parquet`, and
/// `<quarantine>/quarantine.jsonl` (directories are created).
pub fn convert(
    format: InputFormat,
    input: &Path,
    provider_id: &str,
    clinical: &Path,
    identity: &Path,
    quarantine: &Path,
) -> Result<ConvertReport, ConvertError> {
    let mut writers: Vec<Option<(PathBuf, ArrowWriter<File>)>> = Table::ALL.iter().map(|_| None).collect();
    let mut counts = [0u64; Table::ALL.len()];
    let mut qfile: Option<BufWriter<File>> = None;
    let qpath = quarantine.join("quarantine.jsonl");
    let mut nq = 0u64;
    let mut first_err: Option<ConvertError> = None;
    let mut files = 0u64;
    {
        let flush = |t: Table, b: RecordBatch| {
            let i = Table::ALL.iter().position(|&x| x == t).expect("listed");
            counts[i] += b.num_rows() as u64;
            if first_err.is_some() {
                return;
            }
            if writers[i].is_none() {
                let dir = if t.is_identity() { identity } else { clinical }.join(t.name());
                let path = dir.join("part-00000.parquet");
                let w = fs::create_dir_all(&dir)
                    .map_err(|e| ferr(&dir)(&e))
                    .and_then(|_| File::create(&path).map_err(|e| ferr(&path)(&e)))
                    .and_then(|f| {
                        // Small row groups: the writer buffers one row group, so memory stays bounded.
                        let props = parquet::file::properties::WriterProperties::builder()
                            .set_max_row_group_row_count(Some(128 * 1024))
                            .build();
                        ArrowWriter::try_new(f, t.schema(), Some(props)).map_err(|e| ferr(&path)(&e))
                    });
                match w {
                    Ok(w) => writers[i] = Some((path, w)),
                    Err(e) => {
                        first_err = Some(e);
                        return;
                    }
                }
            }
            let (path, w) = writers[i].as_mut().expect("created");
            if let Err(e) = w.write(&b) {
                first_err = Some(ferr(path)(&e));
            }
        };
        let q = |q: Quarantined| {
            nq += 1;
            if qfile.is_none() {
                let _ = fs::create_dir_all(quarantine);
                qfile = File::create(&qpath).ok().map(BufWriter::new);
            }
            if let Some(f) = qfile.as_mut() {
                let _ = serde_json::to_writer(&mut *f, &q);
                let _ = f.write_all(b"\n");
            }
        };
        let mut sink = BatchSink::new(64 * 1024, flush, q);
        let masters = || -> Result<Masters, ConvertError> {
            let m = input.join("masters");
            if m.exists() { Masters::load_dir(&m).map_err(|e| ferr(&m)(&e)) } else { Ok(Masters::default()) }
        };
        let open = |p: &Path| File::open(p).map(BufReader::new).map_err(|e| ferr(p)(&e));
        let name = |p: &Path| p.file_name().unwrap_or_default().to_string_lossy().into_owned();
        match format {
            InputFormat::Ssmix2 => files += ssmix2::walk(input, provider_id, &mut sink).files,
            InputFormat::Uke => {
                let m = masters()?;
                for f in files_in(input, |n| n.ends_with(".uke"))? {
                    files += 1;
                    uke::read(open(&f)?, &name(&f), provider_id, &m, &mut sink).map_err(|e| ferr(&f)(&e))?;
                }
            }
            InputFormat::Dpc => {
                let m = masters()?;
                for f in files_in(input, |n| n.ends_with(".txt"))? {
                    files += 1;
                    let n = name(&f).to_lowercase();
                    let kind =
                        if n.contains("form1") || n.contains("ff1") { dpc::DpcFile::Form1 } else { dpc::DpcFile::Ef };
                    dpc::read(open(&f)?, kind, &n, provider_id, &m, &mut sink).map_err(|e| ferr(&f)(&e))?;
                }
            }
            InputFormat::Fhir => {
                for f in files_in(input, |n| n.ends_with(".json") || n.ends_with(".ndjson"))? {
                    files += 1;
                    if name(&f).ends_with(".ndjson") {
                        fhir::read_ndjson(open(&f)?, &name(&f), provider_id, &mut sink).map_err(|e| ferr(&f)(&e))?;
                    } else {
                        // Streamed twice from the file (a Bundle can be larger than memory).
                        let bom_free = || -> std::io::Result<_> {
                            let mut r = std::io::BufReader::new(fs::File::open(&f)?);
                            if std::io::BufRead::fill_buf(&mut r)?.starts_with(b"\xEF\xBB\xBF") {
                                std::io::BufRead::consume(&mut r, 3);
                            }
                            Ok(r)
                        };
                        fhir::read_json_stream(bom_free, &name(&f), provider_id, &mut sink)
                            .map_err(|e| ferr(&f)(&e))?;
                    }
                }
            }
            InputFormat::Cda => {
                for f in files_in(input, |n| n.ends_with(".xml"))? {
                    files += 1;
                    cda::read(open(&f)?, &name(&f), provider_id, &mut sink);
                }
            }
            InputFormat::Csv | InputFormat::Parquet => {
                let sp = input.join("schema.toml");
                let text = fs::read_to_string(&sp).map_err(|e| ferr(&sp)(&e))?;
                let (schema, table) = SchemaFile::parse(&text).map_err(|e| ferr(&sp)(&e))?;
                let ext = if format == InputFormat::Csv { ".csv" } else { ".parquet" };
                for f in files_in(input, |n| n.ends_with(ext))? {
                    files += 1;
                    if format == InputFormat::Csv {
                        tabular::read_csv(open(&f)?, &schema, table, &name(&f), &mut sink);
                    } else {
                        tabular::read_parquet(&f, &schema, table, &mut sink);
                    }
                }
            }
        }
        sink.finish();
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    for (path, w) in writers.into_iter().flatten() {
        w.close().map_err(|e| ferr(&path)(&e))?;
    }
    if let Some(mut f) = qfile {
        f.flush().map_err(|e| ferr(&qpath)(&e))?;
    }
    Ok(ConvertReport {
        files,
        rows: Table::ALL.iter().zip(counts).map(|(t, n)| (t.name().to_owned(), n)).collect(),
        quarantined: nq,
        quarantine_file: (nq > 0).then_some(qpath),
    })
}

/// Writes one provider's records in `format` under `dir` (file names carry `part`, so several
/// parts may go to one directory); codes invented for receipt files are added to `masters`, which
/// the caller saves once with [`Masters::save_dir`] into `dir/masters`. Returns files written and
/// records refused (characters the format's encoding cannot hold), with the reason.
pub fn write_format(
    format: InputFormat,
    records: &[crate::Record],
    dir: &Path,
    part: u64,
    masters: &mut Masters,
) -> Result<(u64, Vec<String>), ConvertError> {
    fs::create_dir_all(dir).map_err(|e| ferr(dir)(&e))?;
    let create = |name: String| -> Result<(PathBuf, BufWriter<File>), ConvertError> {
        let p = dir.join(name);
        let f = File::create(&p).map_err(|e| ferr(&p)(&e))?;
        Ok((p, BufWriter::new(f)))
    };
    let done = |p: &Path, mut w: BufWriter<File>| w.flush().map_err(|e| ferr(p)(&e));
    match format {
        InputFormat::Ssmix2 => {
            let st = ssmix2::write(dir, records).map_err(|e| ferr(dir)(&e))?;
            Ok((st.files, st.refused))
        }
        InputFormat::Uke => {
            let (p, mut w) = create(format!("receipts-{part:05}.uke"))?;
            let (_, refused) =
                uke::write(&mut w, records, "1", uke::Variant::Medical, masters).map_err(|e| ferr(&p)(&e))?;
            done(&p, w)?;
            Ok((1, refused))
        }
        InputFormat::Dpc => {
            let (p1, mut w1) = create(format!("form1-{part:05}.txt"))?;
            let (p2, mut w2) = create(format!("ef-{part:05}.txt"))?;
            dpc::write(&mut w1, &mut w2, records, "1", masters).map_err(|e| ferr(&p1)(&e))?;
            done(&p1, w1)?;
            done(&p2, w2)?;
            Ok((2, vec![]))
        }
        InputFormat::Fhir => {
            let (p, mut w) = create(format!("bundles-{part:05}.ndjson"))?;
            fhir::write_ndjson(&mut w, records).map_err(|e| ferr(&p)(&e))?;
            done(&p, w)?;
            Ok((1, vec![]))
        }
        InputFormat::Cda => {
            let docs = cda::documents(records);
            for (_, enc, xml) in &docs {
                let p = dir.join(format!("{}.xml", enc.replace(['/', '\\', ':'], "_")));
                fs::write(&p, xml).map_err(|e| ferr(&p)(&e))?;
            }
            Ok((docs.len() as u64, vec![]))
        }
        InputFormat::Csv | InputFormat::Parquet => Ok((0, vec![])),
    }
}
