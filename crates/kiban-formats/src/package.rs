//! Release packages (R3, R12): a dataset sealed for one recipient with a key of its own.
//!
//! A package is one file: the line `kiban-release-package v1`, a JSON header line (ids, recipient,
//! the dataset manifest's SHA-256, the archive's SHA-256 and chunk count), then the dataset
//! directory as a tar archive, encrypted with AES-256-GCM in 1 MiB chunks under the recipient key.
//! Each chunk's associated data binds it to the header, its index and the count, so a chunk that
//! is altered, reordered, dropped or taken from another package fails to open. The key is given
//! to the recipient out of band and is never stored by the creator.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::dataset::{Manifest, ManifestFile, SEALED_EXT, Sealer, part_plaintext, verify_dataset};

const MAGIC: &str = "kiban-release-package v1";
const CHUNK: usize = 1 << 20;

/// What a package says about itself (readable without the key; holds no personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageHeader {
    /// Package id.
    pub package_id: String,
    /// The application it was released under.
    pub application_id: String,
    /// The release it belongs to.
    pub release_id: String,
    /// The recipient's account id.
    pub recipient: String,
    /// SHA-256 of the dataset's manifest.json (recorded in the ledger).
    pub manifest_sha256: String,
    /// SHA-256 of the archive before encryption.
    pub tar_sha256: String,
    /// Encrypted chunks.
    pub chunks: u64,
}

/// Why a package could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The dataset failed verification.
    #[error(transparent)]
    Dataset(#[from] crate::DatasetError),
    /// The package is damaged, was made for another key, or is not a package.
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io { path: path.to_owned(), source }
}

/// A fresh recipient key (32 random bytes); show it once, never store it.
pub fn new_recipient_key() -> Zeroizing<[u8; 32]> {
    let mut k = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut k[..]).expect("operating system random source");
    k
}

fn aad(header_sha: &[u8], i: u64, n: u64) -> Vec<u8> {
    let mut a = header_sha.to_vec();
    a.extend_from_slice(&i.to_le_bytes());
    a.extend_from_slice(&n.to_le_bytes());
    a
}

/// Seals the verified dataset at `dataset` into `out` for one recipient; returns the header. A dataset
/// sealed at rest is opened with `sealer` and packed as the plain dataset it holds (parts under their
/// plain names, a manifest of the plain parts): the recipient gets a dataset, never kiban's sealing.
pub fn write_package(
    dataset: &Path,
    out: &Path,
    key: &[u8; 32],
    application_id: &str,
    release_id: &str,
    recipient: &str,
    sealer: Option<&dyn Sealer>,
) -> Result<PackageHeader, PackageError> {
    let manifest: Manifest = verify_dataset(dataset)?;
    let mut parts = Vec::with_capacity(manifest.files.len());
    let mut plain_files = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        let bytes = part_plaintext(dataset, &manifest, f, sealer)?;
        let name = f.path.strip_suffix(&format!(".{SEALED_EXT}")).unwrap_or(&f.path).to_owned();
        plain_files.push(ManifestFile {
            path: name.clone(),
            rows: f.rows,
            bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
        parts.push((name, bytes));
    }
    let manifest_bytes = if manifest.sealed {
        let plain = Manifest { files: plain_files, sealed: false, ..manifest.clone() };
        serde_json::to_vec_pretty(&plain).expect("manifest serializes")
    } else {
        let mpath = dataset.join("manifest.json");
        fs::read(&mpath).map_err(io(&mpath))?
    };
    let manifest_sha256 = hex::encode(Sha256::digest(&manifest_bytes));
    let mut tar_bytes = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        let mut entry = |name: &str, bytes: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, bytes).map_err(io(dataset))
        };
        entry("manifest.json", &manifest_bytes)?;
        for (name, bytes) in &parts {
            entry(name, bytes)?;
        }
        b.finish().map_err(io(dataset))?;
    }
    let chunks = tar_bytes.len().div_ceil(CHUNK).max(1) as u64;
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).expect("operating system random source");
    let header = PackageHeader {
        package_id: format!("pkg-{}", hex::encode(id)),
        application_id: application_id.to_owned(),
        release_id: release_id.to_owned(),
        recipient: recipient.to_owned(),
        manifest_sha256,
        tar_sha256: hex::encode(Sha256::digest(&tar_bytes)),
        chunks,
    };
    let line = serde_json::to_string(&header).expect("header serializes");
    let header_sha = Sha256::digest(line.as_bytes());
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let tmp = out.with_extension("partial");
    let mut w = BufWriter::new(File::create(&tmp).map_err(io(&tmp))?);
    writeln!(w, "{MAGIC}\n{line}").map_err(io(&tmp))?;
    let pieces: Vec<&[u8]> = if tar_bytes.is_empty() { vec![&[][..]] } else { tar_bytes.chunks(CHUNK).collect() };
    for (i, piece) in pieces.into_iter().enumerate() {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("operating system random source");
        let ct = cipher
            .encrypt(&nonce.into(), Payload { msg: piece, aad: &aad(&header_sha, i as u64, chunks) })
            .expect("AES-GCM encryption of a 1 MiB chunk");
        w.write_all(&((ct.len() + 12) as u64).to_le_bytes()).map_err(io(&tmp))?;
        w.write_all(&nonce).map_err(io(&tmp))?;
        w.write_all(&ct).map_err(io(&tmp))?;
    }
    let f = w.into_inner().map_err(|e| PackageError::Io { path: tmp.clone(), source: e.into_error() })?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, out).map_err(io(out))?;
    Ok(header)
}

/// Reads a package's header without the key.
pub fn read_header(path: &Path) -> Result<PackageHeader, PackageError> {
    let mut r = BufReader::new(File::open(path).map_err(io(path))?);
    header_of(&mut r, path).map(|(h, _)| h)
}

fn header_of(r: &mut impl BufRead, path: &Path) -> Result<(PackageHeader, Vec<u8>), PackageError> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(io(path))?;
    if line.trim_end() != MAGIC {
        return Err(PackageError::Invalid(format!("{} is not a kiban release package", path.display())));
    }
    line.clear();
    r.read_line(&mut line).map_err(io(path))?;
    let text = line.trim_end_matches('\n');
    let h: PackageHeader =
        serde_json::from_str(text).map_err(|e| PackageError::Invalid(format!("package header is damaged: {e}")))?;
    Ok((h, Sha256::digest(text.as_bytes()).to_vec()))
}

/// Opens a package with the recipient key into the empty or new directory `into`, and verifies the
/// dataset it holds (every part's SHA-256 against its manifest, the manifest against the header).
pub fn open_package(path: &Path, key: &[u8; 32], into: &Path) -> Result<(PackageHeader, Manifest), PackageError> {
    if into.exists() && fs::read_dir(into).map_err(io(into))?.next().is_some() {
        return Err(PackageError::Invalid(format!("{} is not empty", into.display())));
    }
    let mut r = BufReader::new(File::open(path).map_err(io(path))?);
    let (h, header_sha) = header_of(&mut r, path)?;
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let mut tar_bytes = Vec::new();
    for i in 0..h.chunks {
        let mut len = [0u8; 8];
        r.read_exact(&mut len).map_err(|_| PackageError::Invalid("the package is truncated".into()))?;
        let len = u64::from_le_bytes(len) as usize;
        if !(12 + 16..=CHUNK + 12 + 16).contains(&len) {
            return Err(PackageError::Invalid(format!("chunk {i} is damaged")));
        }
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf).map_err(|_| PackageError::Invalid("the package is truncated".into()))?;
        let (nonce, ct) = buf.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().expect("12 bytes");
        let plain =
            cipher.decrypt(&nonce.into(), Payload { msg: ct, aad: &aad(&header_sha, i, h.chunks) }).map_err(|_| {
                PackageError::Invalid(format!("chunk {i} does not open: wrong key, or the package is damaged"))
            })?;
        tar_bytes.extend_from_slice(&plain);
    }
    if r.read(&mut [0u8; 1]).map_err(io(path))? != 0 {
        return Err(PackageError::Invalid("trailing data after the last chunk: damaged".into()));
    }
    if hex::encode(Sha256::digest(&tar_bytes)) != h.tar_sha256 {
        return Err(PackageError::Invalid("the archive does not match the header's digest".into()));
    }
    fs::create_dir_all(into).map_err(io(into))?;
    tar::Archive::new(tar_bytes.as_slice()).unpack(into).map_err(io(into))?;
    let m = verify_dataset(into)?;
    let sha = hex::encode(Sha256::digest(fs::read(into.join("manifest.json")).map_err(io(into))?));
    if sha != h.manifest_sha256 {
        return Err(PackageError::Invalid("the manifest does not match the one recorded for the release".into()));
    }
    Ok((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DatasetWriter, FileFormat};
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    fn dataset(dir: &Path) {
        dataset_with(dir, None)
    }

    fn dataset_with(dir: &Path, sealer: Option<Arc<dyn Sealer>>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("age_band", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["40-44", "45-49"])), Arc::new(Int64Array::from(vec![12, 30]))],
        )
        .unwrap();
        let mut w = DatasetWriter::create(dir, "extract", schema, FileFormat::Csv).unwrap();
        if let Some(s) = sealer {
            w = w.sealed(s);
        }
        w.write_part("part-00000", &[b]).unwrap();
        w.commit(serde_json::json!({})).unwrap();
    }

    #[test]
    fn r3_r12_package_opens_only_with_its_key_and_verifies_the_dataset() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = tmp.path().join("ds");
        dataset(&ds);
        let key = new_recipient_key();
        let pkg = tmp.path().join("p.kbp");
        let h = write_package(&ds, &pkg, &key, "app-1", "rel-1", "acct-9", None).unwrap();
        let raw = fs::read(&pkg).unwrap();
        assert!(!raw.windows(5).any(|w| w == b"40-44"), "the content is encrypted");
        assert_eq!(read_header(&pkg).unwrap(), h);
        let (h2, m) = open_package(&pkg, &key, &tmp.path().join("out")).unwrap();
        assert_eq!((h2.release_id.as_str(), m.rows), ("rel-1", 2));
        // Another key, a flipped bit or a truncated file: a clear error, never data.
        let other = new_recipient_key();
        let e = open_package(&pkg, &other, &tmp.path().join("o2")).unwrap_err().to_string();
        assert!(e.contains("wrong key"), "{e}");
        let mut bad = raw.clone();
        let last = bad.len() - 5;
        bad[last] ^= 1;
        fs::write(tmp.path().join("bad.kbp"), &bad).unwrap();
        assert!(open_package(&tmp.path().join("bad.kbp"), &key, &tmp.path().join("o3")).is_err());
        fs::write(tmp.path().join("short.kbp"), &raw[..raw.len() - 10]).unwrap();
        let e = open_package(&tmp.path().join("short.kbp"), &key, &tmp.path().join("o4")).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    struct Xor;
    impl Sealer for Xor {
        fn seal(&self, _: &[u8], p: &[u8]) -> Vec<u8> {
            p.iter().map(|b| b ^ 0x5a).collect()
        }
        fn open(&self, _: &[u8], s: &[u8]) -> Result<Vec<u8>, String> {
            Ok(s.iter().map(|b| b ^ 0x5a).collect())
        }
    }

    #[test]
    fn r12_a_dataset_sealed_at_rest_is_packed_as_the_plain_dataset_it_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = tmp.path().join("ds");
        dataset_with(&ds, Some(Arc::new(Xor)));
        let key = new_recipient_key();
        let pkg = tmp.path().join("p.kbp");
        let e = write_package(&ds, &pkg, &key, "app-1", "rel-1", "acct-9", None).unwrap_err().to_string();
        assert!(e.contains("encrypted at rest"), "{e}");
        let h = write_package(&ds, &pkg, &key, "app-1", "rel-1", "acct-9", Some(&Xor)).unwrap();
        let out = tmp.path().join("out");
        let (_, m) = open_package(&pkg, &key, &out).unwrap();
        assert!(!m.sealed && m.rows == 2 && m.files[0].path == "part-00000.csv", "{m:?}");
        assert_eq!(h.manifest_sha256, hex::encode(Sha256::digest(fs::read(out.join("manifest.json")).unwrap())));
        assert!(fs::read_to_string(out.join("part-00000.csv")).unwrap().contains("40-44"));
        // The same sealed dataset packs to the same manifest digest every time (the ledger's key).
        let h2 = write_package(&ds, &tmp.path().join("p2.kbp"), &key, "app-1", "rel-2", "acct-9", Some(&Xor)).unwrap();
        assert_eq!(h.manifest_sha256, h2.manifest_sha256);
    }
}
