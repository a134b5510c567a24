//! Business administration and compliance evidence (B1–B3, X7): documents the operator keeps
//! (business plans, budgets, reports, statements; attachments to certification criteria), backups
//! made, the figures the registry knows for a fiscal year, and the facts the self-assessment reads.
//! Tables that a later migration adds are read only when present, so this works on any schema.

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::Row;

use crate::records::{RecordError, invalid, new_id};
use crate::store::{Backend, Registry, now};

/// A document kept as evidence.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Document {
    /// Id.
    pub document_id: String,
    /// `criterion` or `business`.
    pub category: String,
    /// Criterion id or business kind.
    pub item: String,
    /// Fiscal year (business documents).
    pub fiscal_year: Option<i64>,
    /// Original file name.
    pub file_name: String,
    /// Where it is kept, relative to the data directory.
    pub stored_path: String,
    /// SHA-256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Submitted to the minister on.
    pub submitted_on: Option<String>,
    /// Published on.
    pub published_on: Option<String>,
    /// Who recorded it.
    pub recorded_by: String,
    /// When.
    pub recorded_at: String,
}

/// A backup as recorded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackupRecord {
    /// Id (also inside the backup file).
    pub backup_id: String,
    /// When it was made.
    pub created_at: String,
    /// File name.
    pub file_name: String,
    /// SHA-256 of the encrypted file.
    pub sha256: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Sealed chunks.
    pub chunks: i64,
    /// Registry backend.
    pub backend: String,
}

/// What the registry knows of a fiscal year (B1 business report).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct YearFigures {
    /// Fiscal year (April of `year` to March of `year + 1`).
    pub fiscal_year: i64,
    /// Providers registered by the end of the year.
    pub providers: i64,
    /// Providers whose filing was published by the end of the year.
    pub providers_published: i64,
    /// Batches received in the year.
    pub receipts: i64,
    /// Distinct patients received in the year (per provider patient id).
    pub patients: i64,
    /// Opt-outs received in the year.
    pub optouts: i64,
    /// Deletions recorded in the year.
    pub deletions: i64,
    /// Releases to users in the year (0 until releases exist in the registry).
    pub releases: i64,
    /// Accounts at the end of the year (absent table: 0).
    pub users: i64,
    /// Incidents detected in the year.
    pub incidents: i64,
    /// Leak reports in the year.
    pub leak_reports: i64,
    /// Complaints received in the year.
    pub complaints: i64,
    /// Which of these the registry could not count (its table is absent).
    pub unknown: Vec<String>,
}

/// Facts of the security and organisation evidence (B2, X1–X7).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Evidence {
    /// Providers registered.
    pub providers: i64,
    /// Providers with a published filing.
    pub providers_published: i64,
    /// Providers whose transmission security was confirmed (C4).
    pub providers_security_checked: i64,
    /// Accounts table present.
    pub accounts_present: bool,
    /// Active accounts.
    pub accounts_active: i64,
    /// Accounts by role: `(role, count)`.
    pub roles: Vec<(String, i64)>,
    /// Active accounts with a second factor enrolled.
    pub accounts_2fa: i64,
    /// Active accounts with a vetting record (X2).
    pub accounts_vetted: i64,
    /// Active accounts with a training record not expired on the day asked.
    pub accounts_trained: i64,
    /// Committee members sitting on the day asked (`None`: no roster recorded).
    pub committee_members: Option<i64>,
    /// The R1 composition rules the sitting committee breaks (empty when it is valid).
    pub committee_problems: Vec<String>,
    /// Contractors and audits (I4).
    pub contractors: i64,
    /// Incidents recorded (I2).
    pub incidents: i64,
    /// Complaints recorded (I3).
    pub complaints: i64,
    /// Purge runs recorded (C5).
    pub purge_runs: i64,
}

fn fy_bounds(year: i64) -> (String, String) {
    (format!("{year:04}-04-01"), format!("{:04}-04-01", year + 1))
}

impl Registry {
    /// True when `table` exists (names come from kiban's code, never from input).
    pub async fn table_exists(&self, table: &str) -> Result<bool, RecordError> {
        if !table.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(invalid("table", "B2", format!("{table:?} is not a table name")));
        }
        let q = match self.backend() {
            Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        let n: i64 = sqlx::query(q).bind(table).fetch_one(&self.pool).await?.try_get(0)?;
        Ok(n > 0)
    }

    async fn count(&self, sql: &str, binds: &[&str]) -> Result<i64, RecordError> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
        for b in binds {
            q = q.bind(b.to_string());
        }
        Ok(q.fetch_one(&self.pool).await?.try_get::<i64, _>(0)?)
    }

    /// Counts rows of `table` where `col` lies in `[from, to)` (ISO text compare), or `None` when
    /// the table is absent.
    async fn count_between(&self, table: &str, col: &str, from: &str, to: &str) -> Result<Option<i64>, RecordError> {
        if !self.table_exists(table).await? {
            return Ok(None);
        }
        Ok(Some(
            self.count(&format!("SELECT COUNT(*) FROM {table} WHERE {col} >= $1 AND {col} < $2"), &[from, to]).await?,
        ))
    }

    /// Keeps a document as evidence (the file itself is copied by the caller to `stored_path`).
    #[allow(clippy::too_many_arguments)]
    pub async fn add_document(
        &self,
        category: &str,
        item: &str,
        fiscal_year: Option<i64>,
        file_name: &str,
        stored_path: &str,
        sha256: &str,
        size_bytes: i64,
        submitted_on: Option<NaiveDate>,
        published_on: Option<NaiveDate>,
        by: &str,
    ) -> Result<Document, RecordError> {
        if category != "criterion" && category != "business" {
            return Err(invalid("category", "B2", format!("{category:?} is neither criterion nor business")));
        }
        let doc = Document {
            document_id: new_id("doc"),
            category: category.to_owned(),
            item: item.to_owned(),
            fiscal_year,
            file_name: file_name.to_owned(),
            stored_path: stored_path.to_owned(),
            sha256: sha256.to_owned(),
            size_bytes,
            submitted_on: submitted_on.map(|d| d.to_string()),
            published_on: published_on.map(|d| d.to_string()),
            recorded_by: by.to_owned(),
            recorded_at: now(),
        };
        sqlx::query(
            "INSERT INTO evidence_documents (document_id, category, item, fiscal_year, file_name, stored_path, sha256, \
             size_bytes, submitted_on, published_on, recorded_by, recorded_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
        )
        .bind(&doc.document_id)
        .bind(&doc.category)
        .bind(&doc.item)
        .bind(doc.fiscal_year)
        .bind(&doc.file_name)
        .bind(&doc.stored_path)
        .bind(&doc.sha256)
        .bind(doc.size_bytes)
        .bind(&doc.submitted_on)
        .bind(&doc.published_on)
        .bind(&doc.recorded_by)
        .bind(&doc.recorded_at)
        .execute(&self.pool)
        .await?;
        Ok(doc)
    }

    /// Documents of a category, oldest first.
    pub async fn documents(&self, category: &str) -> Result<Vec<Document>, RecordError> {
        let rows = sqlx::query(
            "SELECT document_id, category, item, fiscal_year, file_name, stored_path, sha256, size_bytes, submitted_on, \
             published_on, recorded_by, recorded_at FROM evidence_documents WHERE category = $1 \
             ORDER BY recorded_at, document_id",
        )
        .bind(category)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Document {
                    document_id: r.try_get(0)?,
                    category: r.try_get(1)?,
                    item: r.try_get(2)?,
                    fiscal_year: r.try_get(3)?,
                    file_name: r.try_get(4)?,
                    stored_path: r.try_get(5)?,
                    sha256: r.try_get(6)?,
                    size_bytes: r.try_get(7)?,
                    submitted_on: r.try_get(8)?,
                    published_on: r.try_get(9)?,
                    recorded_by: r.try_get(10)?,
                    recorded_at: r.try_get(11)?,
                })
            })
            .collect()
    }

    /// Records a backup made (X7).
    pub async fn record_backup(&self, b: &BackupRecord) -> Result<(), RecordError> {
        sqlx::query(
            "INSERT INTO backup_records (backup_id, created_at, file_name, sha256, size_bytes, chunks, backend, \
             recorded_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        )
        .bind(&b.backup_id)
        .bind(&b.created_at)
        .bind(&b.file_name)
        .bind(&b.sha256)
        .bind(b.size_bytes)
        .bind(b.chunks)
        .bind(&b.backend)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The most recent backup, if any.
    pub async fn last_backup(&self) -> Result<Option<BackupRecord>, RecordError> {
        let row = sqlx::query(
            "SELECT backup_id, created_at, file_name, sha256, size_bytes, chunks, backend FROM backup_records \
             ORDER BY created_at DESC, backup_id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(BackupRecord {
                backup_id: r.try_get(0)?,
                created_at: r.try_get(1)?,
                file_name: r.try_get(2)?,
                sha256: r.try_get(3)?,
                size_bytes: r.try_get(4)?,
                chunks: r.try_get(5)?,
                backend: r.try_get(6)?,
            })
        })
        .transpose()
    }

    /// Writes an online-consistent copy of a SQLite registry to `path` (`VACUUM INTO`).
    pub async fn snapshot_sqlite(&self, path: &std::path::Path) -> Result<(), RecordError> {
        if self.backend() != Backend::Sqlite {
            return Err(invalid("backend", "X7", "VACUUM INTO is for a SQLite registry; use pg_dump for PostgreSQL"));
        }
        let p = path.to_str().ok_or_else(|| invalid("path", "X7", "the snapshot path is not UTF-8"))?;
        sqlx::query("VACUUM INTO $1").bind(p).execute(&self.pool).await?;
        Ok(())
    }

    /// The figures of fiscal year `year` (April `year` to March `year + 1`) for the business report.
    pub async fn year_figures(&self, year: i64) -> Result<YearFigures, RecordError> {
        let (from, to) = fy_bounds(year);
        let mut f = YearFigures { fiscal_year: year, ..Default::default() };
        let mut unknown = Vec::new();
        let mut get = |v: Option<i64>, name: &str| {
            if v.is_none() {
                unknown.push(name.to_owned());
            }
            v.unwrap_or(0)
        };
        f.providers = get(self.count_between("providers", "registered_at", "0000", &to).await?, "providers");
        f.providers_published = get(
            if self.table_exists("provider_publications").await? {
                Some(
                    self.count(
                        "SELECT COUNT(DISTINCT provider_id) FROM provider_publications WHERE provider_published_on < $1",
                        &[&to],
                    )
                    .await?,
                )
            } else {
                None
            },
            "providers_published",
        );
        f.receipts = get(self.count_between("receipt_records", "received_on", &from, &to).await?, "receipts");
        f.patients = get(
            if self.table_exists("receipt_records").await? {
                let rows = sqlx::query(
                    "SELECT provider_id, persons FROM receipt_records WHERE received_on >= $1 AND received_on < $2",
                )
                .bind(&from)
                .bind(&to)
                .fetch_all(&self.pool)
                .await?;
                let mut set = std::collections::BTreeSet::new();
                for r in rows {
                    let p: String = r.try_get(0)?;
                    let persons: String = r.try_get(1)?;
                    for line in persons.lines().filter(|l| !l.is_empty()) {
                        set.insert((p.clone(), line.to_owned()));
                    }
                }
                Some(set.len() as i64)
            } else {
                None
            },
            "patients",
        );
        f.optouts = get(self.count_between("optouts", "effective_on", &from, &to).await?, "optouts");
        f.deletions = get(self.count_between("deletion_records", "deleted_on", &from, &to).await?, "deletions");
        f.releases = get(self.count_between("releases", "released_on", &from, &to).await?, "releases");
        f.users = get(self.count_between("accounts", "created_at", "0000", &to).await?, "users");
        f.incidents = get(self.count_between("incidents", "detected_at", &from, &to).await?, "incidents");
        f.leak_reports = get(self.count_between("leak_reports", "detected_at", &from, &to).await?, "leak_reports");
        f.complaints = get(self.count_between("complaints", "received_on", &from, &to).await?, "complaints");
        f.unknown = unknown;
        Ok(f)
    }

    /// The facts the certification self-assessment reads, judged on `today`.
    pub async fn evidence(&self, today: NaiveDate) -> Result<Evidence, RecordError> {
        let mut e =
            Evidence { providers: self.count("SELECT COUNT(*) FROM providers", &[]).await?, ..Default::default() };
        if self.table_exists("provider_filings").await? {
            e.providers_published =
                self.count("SELECT COUNT(DISTINCT provider_id) FROM provider_publications", &[]).await?;
            e.providers_security_checked = self
                .count(
                    "SELECT COUNT(DISTINCT provider_id) FROM provider_filings WHERE security_checked_on IS NOT NULL",
                    &[],
                )
                .await?;
        }
        e.accounts_present = self.table_exists("accounts").await?;
        if e.accounts_present {
            let active = "status = 'active'";
            e.accounts_active = self.count(&format!("SELECT COUNT(*) FROM accounts WHERE {active}"), &[]).await?;
            e.accounts_2fa = self
                .count(&format!("SELECT COUNT(*) FROM accounts WHERE {active} AND totp_sealed IS NOT NULL"), &[])
                .await?;
            let rows = sqlx::query("SELECT role, COUNT(*) FROM accounts GROUP BY role ORDER BY role")
                .fetch_all(&self.pool)
                .await?;
            for r in rows {
                e.roles.push((r.try_get(0)?, r.try_get(1)?));
            }
            if self.table_exists("handler_vetting").await? {
                e.accounts_vetted = self
                    .count(
                        &format!(
                            "SELECT COUNT(*) FROM accounts WHERE {active} AND account_id IN \
                             (SELECT account_id FROM handler_vetting)"
                        ),
                        &[],
                    )
                    .await?;
            }
            if self.table_exists("training_records").await? {
                e.accounts_trained = self
                    .count(
                        &format!(
                            "SELECT COUNT(*) FROM accounts WHERE {active} AND account_id IN \
                             (SELECT account_id FROM training_records WHERE expires_on >= $1)"
                        ),
                        &[&today.to_string()],
                    )
                    .await?;
            }
        }
        let members = self.committee().await.map_err(|e| match e {
            crate::review::db::ReviewError::Record(r) => r,
            other => RecordError::Invalid { field: "committee", rule: "R1", message: other.to_string() },
        })?;
        if !members.is_empty() {
            e.committee_members = Some(members.iter().filter(|m| m.sits_on(today)).count() as i64);
            e.committee_problems = crate::review::committee::check_composition(&members, today)
                .into_iter()
                .map(|v| v.to_string())
                .collect();
        }
        if self.table_exists("contractors").await? {
            e.contractors = self.count("SELECT COUNT(*) FROM contractors", &[]).await?;
        }
        if self.table_exists("incidents").await? {
            e.incidents = self.count("SELECT COUNT(*) FROM incidents", &[]).await?;
        }
        if self.table_exists("complaints").await? {
            e.complaints = self.count("SELECT COUNT(*) FROM complaints", &[]).await?;
        }
        e.purge_runs = self.count("SELECT COUNT(DISTINCT run_id) FROM purge_records", &[]).await?;
        Ok(e)
    }
}
