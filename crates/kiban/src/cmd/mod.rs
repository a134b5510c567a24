//! One module per subcommand: each has `Args` (clap) and `run`.

pub mod account;
pub mod anonymize;
pub mod application;
pub mod audit;
pub mod backup;
pub mod bench;
pub mod check_output;
pub mod committee;
pub mod compliance;
pub mod demo;
pub mod dicom;
pub mod doctor;
pub mod formats;
pub mod identity;
pub mod incident;
pub mod init;
pub mod intake;
pub mod ledger;
pub mod notice;
pub mod optout;
pub mod provider;
pub mod pseudonymize;
pub mod release;
pub mod retention;
pub mod serve;
pub mod synth;
