//! One module per subcommand: each has `Args` (clap) and `run`.

pub mod account;
pub mod anonymize;
pub mod audit;
pub mod backup;
pub mod application;
pub mod bench;
pub mod check_output;
pub mod compliance;
pub mod committee;
pub mod demo;
pub mod doctor;
pub mod init;
pub mod intake;
pub mod ledger;
pub mod notice;
pub mod optout;
pub mod provider;
pub mod pseudonymize;
pub mod serve;
pub mod retention;
pub mod release;
pub mod synth;
