//! Errors of the publication checker: bad input files, never a rule finding (those are data).

/// Something the checker could not read or do, naming the file, row and field.
#[derive(Debug, thiserror::Error)]
pub enum DisclosureError {
    /// An input file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The declaration (TOML) is malformed or inconsistent with the table.
    #[error("declaration: {0}")]
    Declaration(String),
    /// A table row or cell is malformed.
    #[error("table {file} row {row}: {message}")]
    Table {
        /// The table file (or "<memory>").
        file: String,
        /// 1-based row number in the file (header is row 1), 0 when not row-specific.
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// The 二次医療圏 population table is invalid; each entry names a row.
    #[error("area population table: {}", .0.join("; "))]
    Areas(Vec<String>),
    /// The publication history is malformed.
    #[error("history line {line}: {message}")]
    History {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The LP solver failed on an audit problem.
    #[error("LP audit: {0}")]
    Lp(String),
    /// An approval was requested for a product that did not pass.
    #[error("not approvable: {0}")]
    NotApprovable(String),
}

impl DisclosureError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        DisclosureError::Io { path: path.as_ref().display().to_string(), source }
    }
}
