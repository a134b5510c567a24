//! Readers and writers: every medical file format kiban takes in or sends out, and its own datasets.
//!
//! Today this crate holds [`dataset`]: a dataset is a directory of Parquet (or CSV) part files with a
//! `manifest.json` (schema, row counts, SHA-256 of each file, what made it), written to a staging
//! directory and committed by rename so a crash never leaves half a dataset. The readers for
//! SS-MIX2, UKE receipts, DPC, FHIR JP-Core, 特定健診 CDA and DICOM arrive with the formats issue.
//! Architecture invariants: readers never fail on a bad record (they return the good records and
//! the quarantined ones); legacy encodings are decoded here, at the boundary, and nowhere else.

pub mod dataset;
pub mod dicom;
pub mod package;

pub use dataset::{
    DatasetError, DatasetWriter, FileFormat, Manifest, ManifestFile, SEALED_EXT, Sealer, read_part, verify_dataset,
};
