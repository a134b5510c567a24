//! The storage interface over SQLite and PostgreSQL.

use std::path::Path;

use chrono::{SecondsFormat, Utc};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::migrate::{MIGRATIONS, MigrationStatus};

/// Which database a registry runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file (the default).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// What went wrong in the registry, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The URL names no supported database.
    #[error("registry URL must start with sqlite: or postgres:// (got {0:?})")]
    UnsupportedUrl(String),
    /// The database could not be reached or opened.
    #[error("cannot open the registry at {target}: {source}")]
    Open {
        /// The database, with any password removed.
        target: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The database holds a migration this build does not know (it was made by a newer kiban).
    #[error(
        "the registry has migration {0} which this kiban does not know: upgrade kiban (migrations are forward-only)"
    )]
    NewerSchema(i64),
    /// An applied migration differs from this build's text.
    #[error(
        "migration {version} ({name}) was changed after it was applied (checksum differs); restore the original migration"
    )]
    ChecksumMismatch {
        /// The migration version.
        version: i64,
        /// Its name.
        name: String,
    },
    /// The schema is behind this build.
    #[error(
        "the registry schema is not current (pending migrations {0:?}): run `kiban init` on this data directory to migrate"
    )]
    Pending(Vec<i64>),
    /// A record was not found.
    #[error("{kind} {id:?} is not in the registry")]
    NotFound {
        /// What was looked for.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// A query failed.
    #[error("registry query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// A provider as registered.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Provider {
    /// kiban's id for the provider.
    pub provider_id: String,
    /// Name.
    pub name: String,
    /// JIS prefecture code.
    pub pref_code: i64,
    /// When it was registered (RFC 3339).
    pub registered_at: String,
}

/// One pipeline run (demo, intake, processing …) as logged.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Run {
    /// Run id.
    pub run_id: String,
    /// What ran.
    pub kind: String,
    /// Start time.
    pub started_at: String,
    /// End time, when finished.
    pub finished_at: Option<String>,
    /// Summary as JSON text.
    pub summary_json: Option<String>,
}

/// The registry: one connection pool and the backend it talks to.
#[derive(Debug, Clone)]
pub struct Registry {
    pub(crate) pool: AnyPool,
    backend: Backend,
}

/// Current time as stored (RFC 3339, UTC, seconds).
pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn redact(url: &str) -> String {
    // postgres://user:secret@host → postgres://user:***@host
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Registry {
    /// The URL of the SQLite registry file at `path` (created on open if missing).
    pub fn sqlite_url(path: &Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    /// Opens a registry by URL (`sqlite://…` or `postgres://…`) without migrating.
    pub async fn open(url: &str) -> Result<Self, RegistryError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(RegistryError::UnsupportedUrl(redact(url)));
        };
        // SQLite allows one writer: a single connection avoids "database is locked" under load.
        let max = if backend == Backend::Sqlite { 1 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|source| RegistryError::Open { target: redact(url), source })?;
        if backend == Backend::Sqlite {
            sqlx::raw_sql("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;")
                .execute(&pool)
                .await?;
        }
        Ok(Registry { pool, backend })
    }

    /// Opens and requires the schema to be current.
    pub async fn open_current(url: &str) -> Result<Self, RegistryError> {
        let reg = Self::open(url).await?;
        let status = reg.migration_status().await?;
        if !status.is_current() {
            return Err(RegistryError::Pending(status.pending));
        }
        Ok(reg)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn ensure_migration_table(&self) -> Result<(), RegistryError> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS kiban_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             checksum TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Compares the database's applied migrations with this build's, checking checksums.
    pub async fn migration_status(&self) -> Result<MigrationStatus, RegistryError> {
        self.ensure_migration_table().await?;
        let rows = sqlx::query("SELECT version, name, checksum FROM kiban_migrations ORDER BY version")
            .fetch_all(&self.pool)
            .await?;
        let mut applied = Vec::new();
        for row in rows {
            let version: i64 = row.try_get(0)?;
            let checksum: String = row.try_get(2)?;
            match MIGRATIONS.iter().find(|m| m.version == version) {
                None => return Err(RegistryError::NewerSchema(version)),
                Some(m) if m.checksum() != checksum => {
                    return Err(RegistryError::ChecksumMismatch { version, name: m.name.to_owned() });
                }
                Some(_) => applied.push(version),
            }
        }
        let pending = MIGRATIONS.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect();
        Ok(MigrationStatus { applied, pending })
    }

    /// Applies every pending migration, each in its own transaction; returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<i64>, RegistryError> {
        let status = self.migration_status().await?;
        let mut done = Vec::new();
        for m in MIGRATIONS.iter().filter(|m| status.pending.contains(&m.version)) {
            let mut tx = self.pool.begin().await?;
            sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO kiban_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
                .bind(m.version)
                .bind(m.name)
                .bind(m.checksum())
                .bind(now())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            done.push(m.version);
        }
        Ok(done)
    }

    /// Reads a value of the registry's own facts (data directory id, creation time).
    pub async fn meta(&self, key: &str) -> Result<Option<String>, RegistryError> {
        let row =
            sqlx::query("SELECT value FROM registry_meta WHERE key = $1").bind(key).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Sets a registry fact once; an existing key keeps its first value (facts are not rewritten).
    pub async fn set_meta_once(&self, key: &str, value: &str) -> Result<String, RegistryError> {
        if let Some(v) = self.meta(key).await? {
            return Ok(v);
        }
        sqlx::query("INSERT INTO registry_meta (key, value) VALUES ($1, $2)")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(value.to_owned())
    }

    /// Registers a provider, or returns the existing one with the same id unchanged.
    pub async fn register_provider(&self, id: &str, name: &str, pref_code: i64) -> Result<Provider, RegistryError> {
        if let Some(p) = self.provider(id).await? {
            return Ok(p);
        }
        sqlx::query("INSERT INTO providers (provider_id, name, pref_code, registered_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(name)
            .bind(pref_code)
            .bind(now())
            .execute(&self.pool)
            .await?;
        self.provider(id).await?.ok_or_else(|| RegistryError::NotFound { kind: "provider", id: id.to_owned() })
    }

    /// Looks a provider up.
    pub async fn provider(&self, id: &str) -> Result<Option<Provider>, RegistryError> {
        let row =
            sqlx::query("SELECT provider_id, name, pref_code, registered_at FROM providers WHERE provider_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(Provider {
                provider_id: r.try_get(0)?,
                name: r.try_get(1)?,
                pref_code: r.try_get(2)?,
                registered_at: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// All providers, by id.
    pub async fn providers(&self) -> Result<Vec<Provider>, RegistryError> {
        let rows =
            sqlx::query("SELECT provider_id, name, pref_code, registered_at FROM providers ORDER BY provider_id")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Provider {
                    provider_id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    pref_code: r.try_get(2)?,
                    registered_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Records the start of a pipeline run.
    pub async fn start_run(&self, run_id: &str, kind: &str) -> Result<(), RegistryError> {
        sqlx::query("INSERT INTO pipeline_runs (run_id, kind, started_at) VALUES ($1, $2, $3)")
            .bind(run_id)
            .bind(kind)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the end of a pipeline run with its summary.
    pub async fn finish_run(&self, run_id: &str, summary: &serde_json::Value) -> Result<(), RegistryError> {
        let n = sqlx::query(
            "UPDATE pipeline_runs SET finished_at = $1, summary_json = $2 WHERE run_id = $3 AND finished_at IS NULL",
        )
        .bind(now())
        .bind(summary.to_string())
        .bind(run_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(RegistryError::NotFound { kind: "open run", id: run_id.to_owned() });
        }
        Ok(())
    }

    /// The most recent runs, newest first.
    pub async fn runs(&self, limit: i64) -> Result<Vec<Run>, RegistryError> {
        let rows = sqlx::query(
            "SELECT run_id, kind, started_at, finished_at, summary_json FROM pipeline_runs ORDER BY started_at DESC, run_id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Run {
                    run_id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    started_at: r.try_get(2)?,
                    finished_at: r.try_get(3)?,
                    summary_json: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Runs one administrative statement (tests and `kiban doctor` repairs); not for records.
    pub async fn execute_admin(&self, sql: &str) -> Result<u64, RegistryError> {
        Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&self.pool).await?.rows_affected())
    }

    /// Closes the pool, flushing SQLite's WAL.
    pub async fn close(self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("postgres://kiban:s3cret@127.0.0.1:5433/db"), "postgres://kiban:***@127.0.0.1:5433/db");
        assert_eq!(redact("sqlite:///tmp/x.sqlite"), "sqlite:///tmp/x.sqlite");
    }
}
