//! DICOM de-identification for kiban: the PS3.15 Annex E Attribute Confidentiality Profile as data
//! ([`profile`], Table E.1-1 in `data/`), its application with keyed UIDs, per-person date shifts and
//! release pseudonyms ([`deid`]) under the release's own pseudonym domain ([`release`]), burned-in text and faces in the pixels ([`pixels`]), and the
//! per-file processing of a file or folder tree with its report ([`run`]).
//!
//! A crate of its own because it needs three siblings: `kiban-formats` (the DICOM reader and the
//! Japanese character sets), `kiban-identity` (the release domain's pseudonym key) and `kiban-deid`
//! (the Japanese free-text de-identifier). Invariants: a file that cannot be read or cleaned is
//! reported and never copied to the output; keys and original values never reach the report.

pub mod deid;
pub mod pixels;
pub mod profile;
pub mod release;
pub mod run;
pub mod synth;

pub use deid::{Config, Keyring, Stats, deidentify_attributes};
pub use profile::{Action, Profile, ProfileOption};
pub use release::ReleaseKeys;
pub use run::{FileReport, RunOptions, process_bytes, process_tree};
