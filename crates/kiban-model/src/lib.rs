//! The vocabulary every other kiban crate speaks.
//!
//! Typed values are parsed once at the boundary and are valid by construction inside the code:
//! [`wareki::WarekiDate`] and Japanese-era dates, [`id`] newtypes for providers, persons and batches,
//! [`insurer::InsurerNumber`] with its check digit, [`person::Sex`], the column roles of a
//! processing policy ([`dataset::ColumnRole`]) and the retention rules of statutory records
//! ([`retention`]). [`synth`] generates a deterministic synthetic Japanese patient population with
//! the messiness that breaks linkage in practice; it never contains a real person.
//!
//! Architecture invariant: this crate does no I/O beyond reading its own embedded lists, and knows
//! nothing of SQL, HTTP, Parquet files or keys.

pub mod dataset;
pub mod error;
pub mod id;
pub mod insurer;
pub mod person;
pub mod retention;
pub mod synth;
pub mod wareki;

pub use error::ModelError;
