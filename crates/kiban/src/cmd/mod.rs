//! One module per subcommand: each has `Args` (clap) and `run`.

pub mod bench;
pub mod check_output;
pub mod demo;
pub mod doctor;
pub mod init;
pub mod synth;
