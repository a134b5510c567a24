//! Versioned, forward-only schema migrations shared by SQLite and PostgreSQL.

use sha2::{Digest, Sha256};

/// One migration: a version, a name and portable SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Strictly increasing version number.
    pub version: i64,
    /// Short name, for messages.
    pub name: &'static str,
    /// The SQL, which may hold several statements.
    pub sql: &'static str,
}

impl Migration {
    /// SHA-256 of the SQL, recorded when applied so an edited migration is detected.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// Every migration this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "foundation", sql: include_str!("../migrations/0001_foundation.sql") },
    Migration { version: 2, name: "intake", sql: include_str!("../migrations/0002_intake.sql") },
    Migration { version: 10, name: "security", sql: include_str!("../migrations/0010_security.sql") },
    Migration { version: 20, name: "review", sql: include_str!("../migrations/0020_review.sql") },
    Migration { version: 30, name: "compliance", sql: include_str!("../migrations/0030_compliance.sql") },
    Migration { version: 40, name: "contracts", sql: include_str!("../migrations/0040_contracts.sql") },
    Migration { version: 41, name: "account_scopes", sql: include_str!("../migrations/0041_account_scopes.sql") },
    Migration { version: 50, name: "workspace", sql: include_str!("../migrations/0050_workspace.sql") },
    Migration { version: 60, name: "output_approvals", sql: include_str!("../migrations/0060_output_approvals.sql") },
];

/// Where a registry stands against this build's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Versions applied in the database.
    pub applied: Vec<i64>,
    /// Versions this build knows but the database has not applied.
    pub pending: Vec<i64>,
}

impl MigrationStatus {
    /// True when nothing is pending.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }
}
