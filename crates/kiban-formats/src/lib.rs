//! Readers and writers: every medical file format kiban takes in or sends out, and its own datasets.
//!
//! Readers turn a provider's files into the canonical tables of [`canonical`] — identity
//! (`patients`, for the identity vault) apart from clinical rows keyed by the provider's patient
//! id — streaming into a [`canonical::Sink`], and quarantine what they cannot parse with the file,
//! place (line, message/segment, entry) and field. Formats: SS-MIX2 storage with HL7 v2.5
//! ([`ssmix2`], [`hl7`]), UKE receipts ([`uke`]), DPC EF files and 様式1 ([`dpc`]), FHIR R4 /
//! JP-Core ([`fhir`]), 特定健診 CDA ([`cda`]) and CSV/Parquet with a schema file ([`tabular`]).
//! [`dataset`] writes kiban's own datasets: part files plus a `manifest.json` committed by rename.
//! Architecture invariants: readers never fail on a bad record (they return the good records and
//! the quarantined ones); legacy encodings are decoded here ([`encoding`]), at the boundary, and
//! nowhere else.

pub mod bench;
pub mod bench_stream;
pub mod canonical;
pub mod cda;
pub mod convert;
pub mod dataset;
pub mod dicom;
pub mod dpc;
pub mod encoding;
pub mod fhir;
pub mod hl7;
pub mod masters;
pub mod package;
pub mod ssmix2;
pub mod tabular;
pub mod uke;

pub use canonical::{Collected, Quarantined, Record, Sink, Table};
pub use dataset::{
    DatasetError, DatasetWriter, FileFormat, Manifest, ManifestFile, SEALED_EXT, Sealer, part_plaintext, read_manifest,
    read_part, verify_dataset, verify_dataset_opens,
};
