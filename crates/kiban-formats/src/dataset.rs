//! kiban datasets on disk: part files plus a manifest, committed atomically.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// File format of a dataset's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Apache Parquet, zstd-compressed.
    Parquet,
    /// CSV with a header row, UTF-8.
    Csv,
}

impl FileFormat {
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Csv => "csv",
        }
    }
}

/// Errors writing or verifying a dataset, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Parquet or Arrow refused the data.
    #[error("{path}: {message}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What the encoder said.
        message: String,
    },
    /// The target already holds a dataset.
    #[error("{0}: a dataset already exists here; choose another output or remove it first")]
    Exists(PathBuf),
    /// A file does not match its manifest.
    #[error("{path}: {problem} (the dataset was changed or damaged after it was written)")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        problem: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.to_owned(), source }
}

/// One file listed in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the dataset directory.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// What a dataset holds and how to check it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub manifest_version: u32,
    /// Dataset name (usually the table name).
    pub name: String,
    /// Part file format.
    pub format: FileFormat,
    /// Column names and Arrow types, in order.
    pub columns: Vec<(String, String)>,
    /// Total rows.
    pub rows: u64,
    /// The part files.
    pub files: Vec<ManifestFile>,
    /// Free-form provenance: generator and seed, or the policy hash that made it.
    pub provenance: serde_json::Value,
}

enum Sink {
    Parquet(ArrowWriter<File>),
    Csv(arrow::csv::Writer<BufWriter<File>>),
}

/// Writes one dataset: parts go to `<dir>.staging`, and [`DatasetWriter::commit`] renames into place.
/// Parts may be written from several threads at once.
pub struct DatasetWriter {
    target: PathBuf,
    staging: PathBuf,
    schema: SchemaRef,
    format: FileFormat,
    files: std::sync::Mutex<Vec<ManifestFile>>,
    name: String,
}

impl DatasetWriter {
    /// Starts a dataset at `dir` (which must not exist yet).
    pub fn create(dir: &Path, name: &str, schema: SchemaRef, format: FileFormat) -> Result<Self, DatasetError> {
        if dir.exists() {
            return Err(DatasetError::Exists(dir.to_owned()));
        }
        let staging = dir.with_extension("staging");
        if staging.exists() {
            // Left by a crashed run: it was never committed, so it is safe to discard.
            fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        fs::create_dir_all(&staging).map_err(io(&staging))?;
        Ok(DatasetWriter {
            target: dir.to_owned(),
            staging,
            schema,
            format,
            files: Default::default(),
            name: name.to_owned(),
        })
    }

    /// Writes one part file holding `batches` (the part name must be unique, e.g. `part-00003`).
    pub fn write_part(&self, part: &str, batches: &[RecordBatch]) -> Result<(), DatasetError> {
        let rel = format!("{part}.{}", self.format.extension());
        let path = self.staging.join(&rel);
        let rows = write_file(&path, self.schema.clone(), self.format, batches)?;
        let (bytes, sha256) = digest(&path)?;
        self.files.lock().expect("no panics while holding the lock").push(ManifestFile {
            path: rel,
            rows,
            bytes,
            sha256,
        });
        Ok(())
    }

    /// Writes the manifest and renames the staging directory into place.
    pub fn commit(self, provenance: serde_json::Value) -> Result<Manifest, DatasetError> {
        let mut files = self.files.into_inner().expect("no panics while holding the lock");
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = Manifest {
            manifest_version: 1,
            name: self.name.clone(),
            format: self.format,
            columns: self.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().to_string())).collect(),
            rows: files.iter().map(|f| f.rows).sum(),
            files,
            provenance,
        };
        let mpath = self.staging.join("manifest.json");
        let text = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        let mut f = File::create(&mpath).map_err(io(&mpath))?;
        f.write_all(&text).and_then(|_| f.sync_all()).map_err(io(&mpath))?;
        if let Some(parent) = self.target.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::rename(&self.staging, &self.target).map_err(io(&self.target))?;
        Ok(manifest)
    }
}

/// Writes batches to one file in `format`; returns the row count.
pub fn write_file(
    path: &Path,
    schema: SchemaRef,
    format: FileFormat,
    batches: &[RecordBatch],
) -> Result<u64, DatasetError> {
    let file = File::create(path).map_err(io(path))?;
    let enc = |e: &dyn std::fmt::Display| DatasetError::Encode { path: path.to_owned(), message: e.to_string() };
    let mut sink = match format {
        FileFormat::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level")))
                .build();
            Sink::Parquet(ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| enc(&e))?)
        }
        FileFormat::Csv => Sink::Csv(arrow::csv::WriterBuilder::new().with_header(true).build(BufWriter::new(file))),
    };
    let mut rows = 0u64;
    for b in batches {
        rows += b.num_rows() as u64;
        match &mut sink {
            Sink::Parquet(w) => w.write(b).map_err(|e| enc(&e))?,
            Sink::Csv(w) => w.write(b).map_err(|e| enc(&e))?,
        }
    }
    match sink {
        Sink::Parquet(w) => {
            w.close().map_err(|e| enc(&e))?;
        }
        Sink::Csv(w) => {
            let mut inner = w.into_inner();
            inner.flush().map_err(io(path))?;
        }
    }
    Ok(rows)
}

fn digest(path: &Path) -> Result<(u64, String), DatasetError> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io(path))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    Ok((n, hex::encode(h.finalize())))
}

/// Reads a dataset's manifest and checks every file's size and SHA-256.
pub fn verify_dataset(dir: &Path) -> Result<Manifest, DatasetError> {
    let mpath = dir.join("manifest.json");
    let text = fs::read(&mpath).map_err(io(&mpath))?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| DatasetError::Mismatch {
        path: mpath.clone(),
        problem: format!("manifest does not parse: {e}"),
    })?;
    for f in &manifest.files {
        let path = dir.join(&f.path);
        let (bytes, sha) = digest(&path)?;
        if bytes != f.bytes || sha != f.sha256 {
            return Err(DatasetError::Mismatch { path, problem: "SHA-256 differs from the manifest".into() });
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(StringArray::from(vec!["東京", "ｶﾅ"]))],
        )
        .unwrap()
    }

    #[test]
    fn committed_dataset_verifies_and_detects_tampering() {
        for format in [FileFormat::Parquet, FileFormat::Csv] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("t");
            let b = batch();
            let w = DatasetWriter::create(&dir, "t", b.schema(), format).unwrap();
            assert!(dir.with_extension("staging").exists() && !dir.exists(), "nothing visible before commit");
            w.write_part("part-00000", &[b.clone(), b]).unwrap();
            let m = w.commit(serde_json::json!({"test": true})).unwrap();
            assert_eq!(m.rows, 4);
            assert_eq!(verify_dataset(&dir).unwrap(), m);
            let part = dir.join(&m.files[0].path);
            let mut bytes = fs::read(&part).unwrap();
            let last = bytes.len() - 10;
            bytes[last] ^= 1;
            fs::write(&part, bytes).unwrap();
            let err = verify_dataset(&dir).unwrap_err().to_string();
            assert!(err.contains("SHA-256 differs"), "{err}");
            assert!(matches!(DatasetWriter::create(&dir, "t", batch().schema(), format), Err(DatasetError::Exists(_))));
        }
    }

    #[test]
    fn csv_keeps_japanese_text_as_utf8() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.csv");
        write_file(&path, batch().schema(), FileFormat::Csv, &[batch()]).unwrap();
        assert_eq!(fs::read_to_string(path).unwrap(), "a,b\n1,東京\n2,ｶﾅ\n");
    }
}
