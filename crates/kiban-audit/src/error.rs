//! Errors of the audit crate; none carries key material or event content.

use std::path::PathBuf;

/// What can go wrong opening, appending to or reading the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file operation failed.
    #[error("audit log I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The checkpoint key is shorter than allowed.
    #[error("checkpoint key is {len} bytes; at least {min} are required")]
    KeyTooShort {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The checkpoint key text is not hexadecimal.
    #[error("checkpoint key is not hexadecimal")]
    KeyNotHex,
    /// Another process holds the log open for writing.
    #[error("audit log {path} is locked by another writer")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A file does not have the audit log's format.
    #[error("audit log file {path} at offset {offset}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The byte offset of the bad line.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The tail of the log is behind its last signed checkpoint: entries were removed.
    #[error(
        "audit log is behind its signed checkpoint #{checkpoint} (seq {checkpoint_seq}); \
         the log ends at seq {log_seq}: run `kiban audit verify`"
    )]
    BehindCheckpoint {
        /// The checkpoint's number.
        checkpoint: u64,
        /// The sequence number it signed.
        checkpoint_seq: u64,
        /// The last sequence number in the log.
        log_seq: u64,
    },
    /// The log was changed behind the writer's back; run verification for the details.
    #[error("audit log tampering suspected: {0}")]
    Tampered(String),
    /// The monitoring rules could not be read.
    #[error("monitoring rules: {0}")]
    Rules(String),
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuditError {
        let path = path.into();
        move |source| AuditError::Io { path, source }
    }
}
