//! One module per subcommand: each has `Args` (clap) and `run`.

pub mod account;
pub mod anonymize;
pub mod audit;
pub mod bench;
pub mod check_output;
pub mod demo;
pub mod doctor;
pub mod init;
pub mod intake;
pub mod notice;
pub mod optout;
pub mod provider;
pub mod serve;
pub mod synth;
