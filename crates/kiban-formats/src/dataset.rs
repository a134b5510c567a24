//! kiban datasets on disk: part files plus a manifest, committed atomically.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
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
    /// The parts are encrypted at rest (R12): each is sealed with its own data key, wrapped by the
    /// master key, and bound to its dataset name and path.
    #[serde(default)]
    pub sealed: bool,
}

/// Writes one dataset: parts go to `<dir>.staging`, and [`DatasetWriter::commit`] renames into place.
/// Parts may be written from several threads at once.
pub struct DatasetWriter {
    sealer: Option<Arc<dyn Sealer>>,
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
            sealer: None,
            target: dir.to_owned(),
            staging,
            schema,
            format,
            files: Default::default(),
            name: name.to_owned(),
        })
    }

    /// Encrypts every part at rest with `sealer` (R12); plaintext never touches the disk.
    pub fn sealed(mut self, sealer: Arc<dyn Sealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Writes one part file holding `batches` (the part name must be unique, e.g. `part-00003`).
    pub fn write_part(&self, part: &str, batches: &[RecordBatch]) -> Result<(), DatasetError> {
        let Some(sealer) = &self.sealer else {
            return self.write_plain_part(part, batches);
        };
        let rel = format!("{part}.{}.{SEALED_EXT}", self.format.extension());
        let path = self.staging.join(&rel);
        let enc = |e: &dyn std::fmt::Display| DatasetError::Encode { path: path.clone(), message: e.to_string() };
        let (rows, plain) = encode(Vec::new(), self.schema.clone(), self.format, batches).map_err(|e| enc(&e))?;
        let sealed = sealer.seal(&part_aad(&self.name, &rel), &plain);
        let mut f = File::create(&path).map_err(io(&path))?;
        f.write_all(&sealed).and_then(|_| f.sync_data()).map_err(io(&path))?;
        let (bytes, sha256) = digest(&path)?;
        self.files.lock().expect("no panics while holding the lock").push(ManifestFile {
            path: rel,
            rows,
            bytes,
            sha256,
        });
        Ok(())
    }

    fn write_plain_part(&self, part: &str, batches: &[RecordBatch]) -> Result<(), DatasetError> {
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
            sealed: self.sealer.is_some(),
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
    let (rows, mut inner) = encode(BufWriter::new(file), schema, format, batches).map_err(|e| enc(&e))?;
    inner.flush().map_err(io(path))?;
    Ok(rows)
}

/// Encodes batches in `format` into `out`; returns the row count and `out`.
fn encode<W: Write + Send>(
    out: W,
    schema: SchemaRef,
    format: FileFormat,
    batches: &[RecordBatch],
) -> Result<(u64, W), Box<dyn std::error::Error>> {
    let mut rows = 0u64;
    match format {
        FileFormat::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level")))
                .build();
            let mut w = ArrowWriter::try_new(out, schema, Some(props))?;
            for b in batches {
                rows += b.num_rows() as u64;
                w.write(b)?;
            }
            Ok((rows, w.into_inner()?))
        }
        FileFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(out);
            for b in batches {
                rows += b.num_rows() as u64;
                w.write(b)?;
            }
            Ok((rows, w.into_inner()))
        }
    }
}

/// The extension added to a sealed part (`part-00000.parquet.kbs`).
pub const SEALED_EXT: &str = "kbs";

/// Encrypts and decrypts part files at rest (implemented over the key store: a fresh data key per
/// file, wrapped by the master key). `aad` binds a file to its dataset and path.
pub trait Sealer: Send + Sync {
    /// Seals `plain`.
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8>;
    /// Opens a sealed file; a wrong key, a moved file or any damage is an error, never garbage.
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String>;
}

fn part_aad(dataset: &str, rel: &str) -> Vec<u8> {
    format!("kiban dataset part v1\0{dataset}\0{rel}").into_bytes()
}

/// Reads one part of a dataset (checked against the manifest first), decrypting a sealed one with
/// `sealer`. CSV parts come back as text columns, enough to filter rows and write them back.
pub fn read_part(
    dir: &Path,
    manifest: &Manifest,
    file: &ManifestFile,
    sealer: Option<&dyn Sealer>,
) -> Result<Vec<RecordBatch>, DatasetError> {
    let path = dir.join(&file.path);
    let plain = part_plaintext(dir, manifest, file, sealer)?;
    let dec = |e: &dyn std::fmt::Display| DatasetError::Mismatch { path: path.clone(), problem: e.to_string() };
    match manifest.format {
        FileFormat::Parquet => {
            let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(plain))
                .and_then(|b| b.with_batch_size(64 * 1024).build())
                .map_err(|e| dec(&e))?;
            r.collect::<Result<Vec<_>, _>>().map_err(|e| dec(&e))
        }
        FileFormat::Csv => {
            let mut r = csv::Reader::from_reader(plain.as_slice());
            let header: Vec<String> = r.headers().map_err(|e| dec(&e))?.iter().map(str::to_owned).collect();
            let mut cols: Vec<Vec<String>> = vec![Vec::new(); header.len()];
            for rec in r.records() {
                let rec = rec.map_err(|e| dec(&e))?;
                for (c, v) in cols.iter_mut().zip(rec.iter()) {
                    c.push(v.to_owned());
                }
            }
            let fields: Vec<Field> = header.iter().map(|h| Field::new(h, DataType::Utf8, false)).collect();
            let arrays: Vec<ArrayRef> = cols.into_iter().map(|c| Arc::new(StringArray::from(c)) as ArrayRef).collect();
            Ok(vec![RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| dec(&e))?])
        }
    }
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

/// Reads a dataset's manifest without checking the files (each [`read_part`] checks its own).
pub fn read_manifest(dir: &Path) -> Result<Manifest, DatasetError> {
    let mpath = dir.join("manifest.json");
    let text = fs::read(&mpath).map_err(io(&mpath))?;
    serde_json::from_slice(&text)
        .map_err(|e| DatasetError::Mismatch { path: mpath.clone(), problem: format!("manifest does not parse: {e}") })
}

/// Reads a dataset's manifest and checks every file's size and SHA-256.
pub fn verify_dataset(dir: &Path) -> Result<Manifest, DatasetError> {
    let manifest = read_manifest(dir)?;
    for f in &manifest.files {
        let path = dir.join(&f.path);
        let (bytes, sha) = digest(&path)?;
        if bytes != f.bytes || sha != f.sha256 {
            return Err(DatasetError::Mismatch { path, problem: "SHA-256 differs from the manifest".into() });
        }
    }
    Ok(manifest)
}

/// The bytes of one part as written before sealing (checked against the manifest, then opened with
/// `sealer` if the dataset is sealed), without parsing them.
pub fn part_plaintext(
    dir: &Path,
    manifest: &Manifest,
    file: &ManifestFile,
    sealer: Option<&dyn Sealer>,
) -> Result<Vec<u8>, DatasetError> {
    let path = dir.join(&file.path);
    let raw = fs::read(&path).map_err(io(&path))?;
    if raw.len() as u64 != file.bytes || hex::encode(Sha256::digest(&raw)) != file.sha256 {
        return Err(DatasetError::Mismatch { path, problem: "SHA-256 differs from the manifest".into() });
    }
    if !manifest.sealed {
        return Ok(raw);
    }
    let Some(s) = sealer else {
        return Err(DatasetError::Mismatch {
            path,
            problem: "the dataset is encrypted at rest; open it with the data directory's key store".into(),
        });
    };
    s.open(&part_aad(&manifest.name, &file.path), &raw)
        .map_err(|e| DatasetError::Mismatch { path: path.clone(), problem: format!("does not decrypt: {e}") })
}

/// [`verify_dataset`], and for a sealed dataset also opens every part with `sealer`: proves the
/// keys in use still decrypt the data (after a key rotation, for instance), without parsing it.
pub fn verify_dataset_opens(dir: &Path, sealer: &dyn Sealer) -> Result<Manifest, DatasetError> {
    let manifest = verify_dataset(dir)?;
    if manifest.sealed {
        for f in &manifest.files {
            let path = dir.join(&f.path);
            let raw = fs::read(&path).map_err(io(&path))?;
            sealer
                .open(&part_aad(&manifest.name, &f.path), &raw)
                .map_err(|e| DatasetError::Mismatch { path, problem: format!("does not decrypt: {e}") })?;
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

    /// A test sealer: XOR with a key byte plus the AAD as a tag (the binary uses the key store).
    struct XorSealer(u8);
    impl Sealer for XorSealer {
        fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
            let mut v: Vec<u8> = plain.iter().map(|b| b ^ self.0).collect();
            v.push(self.0);
            v.extend_from_slice(aad);
            v
        }
        fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
            let body = sealed.strip_suffix(aad).ok_or("wrong associated data")?;
            let body = body.strip_suffix(&[self.0]).ok_or("wrong key")?;
            Ok(body.iter().map(|b| b ^ self.0).collect())
        }
    }

    #[test]
    fn r12_sealed_parts_hold_no_plaintext_and_read_back_only_with_the_sealer() {
        for format in [FileFormat::Parquet, FileFormat::Csv] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("t");
            let w =
                DatasetWriter::create(&dir, "t", batch().schema(), format).unwrap().sealed(Arc::new(XorSealer(0x5a)));
            w.write_part("part-00000", &[batch()]).unwrap();
            let m = w.commit(serde_json::json!({})).unwrap();
            assert!(m.sealed && m.files[0].path.ends_with(".kbs"));
            let raw = std::fs::read(dir.join(&m.files[0].path)).unwrap();
            let needle = "東京".as_bytes();
            assert!(!raw.windows(needle.len()).any(|w| w == needle), "plaintext on disk");
            let m = verify_dataset(&dir).unwrap();
            let got = read_part(&dir, &m, &m.files[0], Some(&XorSealer(0x5a))).unwrap();
            assert!(verify_dataset_opens(&dir, &XorSealer(0x5a)).is_ok());
            assert!(verify_dataset_opens(&dir, &XorSealer(0x11)).unwrap_err().to_string().contains("does not decrypt"));
            assert_eq!(got.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
            let text = format!("{:?}", got[0].column(1));
            assert!(text.contains("東京") && text.contains("ｶﾅ"), "{text}");
            let err = read_part(&dir, &m, &m.files[0], None).unwrap_err().to_string();
            assert!(err.contains("encrypted"), "{err}");
            // A part moved to another name does not open: the AAD binds it to its place.
            let mut moved = m.clone();
            moved.name = "other".into();
            assert!(read_part(&dir, &moved, &m.files[0], Some(&XorSealer(0x5a))).is_err());
        }
    }
}
