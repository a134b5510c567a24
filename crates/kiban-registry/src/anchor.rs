//! Anchors of the append-only statutory tables (X6): a change made to the registry's database behind
//! kiban's back — an edited, deleted or back-dated row — is caught by `kiban audit verify`.
//!
//! An anchor lists every row of the append-only tables as its key and the SHA-256 of all its columns.
//! The caller keeps the anchor's own SHA-256 in the hash-chained, checkpoint-signed audit log, so
//! neither the rows nor the anchor can be changed unseen. [`check`] compares the rows with the last
//! anchor: an anchored row that changed, or is gone without a retention purge recorded for it, is a
//! finding; rows written since are counted and go into the next anchor.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::store::{Backend, Registry, RegistryError, now};

/// The append-only tables an anchor covers: the statutory records of `retention::RECORD_KINDS`
/// (accounts are left out: their state changes by design; their events are in).
pub const ANCHORED_TABLES: &[&str] = &[
    "optout_confirmations",
    "receipt_records",
    "provision_records",
    "deletion_records",
    "notices",
    "complaints",
    "provider_publications",
    "provider_filings",
    "optouts",
    "bulk_records",
    "ledger_entries",
    "review_events",
    "sanctions",
    "violations",
    "contracts",
    "committee_members",
    "leak_reports",
    "incidents",
    "account_events",
    "account_provider_scopes",
    "handler_vetting",
    "training_records",
    "purge_records",
    "output_approvals",
];

/// The format tag of an anchor file.
pub const ANCHOR_FORMAT: &str = "kiban-registry-anchor/1";

/// Every anchored row as `(key, SHA-256 hex)`, per table, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// [`ANCHOR_FORMAT`].
    pub format: String,
    /// When it was made (RFC 3339, the registry's clock).
    pub made_at: String,
    /// Table → rows.
    pub tables: BTreeMap<String, Vec<(String, String)>>,
}

impl Anchor {
    /// Rows in all tables.
    pub fn rows(&self) -> usize {
        self.tables.values().map(Vec::len).sum()
    }

    /// The canonical bytes (JSON) whose SHA-256 the audit log keeps.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an anchor serializes")
    }

    /// SHA-256 (hex) of [`Anchor::to_bytes`].
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.to_bytes()))
    }
}

/// An anchored row that is no longer as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchorFinding {
    /// The table.
    pub table: String,
    /// The row's key (its id; never a personal value: keys are kiban's ids).
    pub key: String,
    /// `changed` or `missing`.
    pub what: &'static str,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AnchorCheck {
    /// Rows the last anchor covered.
    pub anchored: usize,
    /// Rows written since (not covered yet).
    pub new_rows: usize,
    /// Anchored rows gone because a recorded retention purge removed them.
    pub purged: usize,
    /// Anchored rows changed or gone otherwise.
    pub findings: Vec<AnchorFinding>,
}

impl AnchorCheck {
    /// Whether every anchored row is as it was (or was purged by the retention job).
    pub fn is_intact(&self) -> bool {
        self.findings.is_empty()
    }
}

fn row_digest(cols: &[String], row: &sqlx::any::AnyRow) -> Result<String, RegistryError> {
    let mut h = Sha256::new();
    for (i, c) in cols.iter().enumerate() {
        h.update(c.as_bytes());
        h.update([0x1f]);
        match row.try_get::<Option<String>, _>(i)? {
            Some(v) => h.update(v.as_bytes()),
            None => h.update([0xff]),
        }
        h.update([0x1e]);
    }
    Ok(hex::encode(h.finalize()))
}

impl Registry {
    async fn columns(&self, table: &str) -> Result<Vec<String>, RegistryError> {
        let q = match self.backend() {
            Backend::Sqlite => "SELECT name FROM pragma_table_info($1) ORDER BY cid",
            Backend::Postgres => {
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
            }
        };
        let rows = sqlx::query(q).bind(table).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>(0)?)).collect()
    }

    /// Makes an anchor of the append-only tables as they are now.
    pub async fn anchor(&self) -> Result<Anchor, RegistryError> {
        let made_at = now();
        let mut tables = BTreeMap::new();
        for &t in ANCHORED_TABLES {
            let cols = self.columns(t).await?;
            let select: Vec<String> = cols.iter().map(|c| format!("CAST({c} AS TEXT)")).collect();
            let sql = format!("SELECT {} FROM {t}", select.join(", "));
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in &rows {
                let key = r.try_get::<Option<String>, _>(0)?.unwrap_or_default();
                v.push((key, row_digest(&cols, r)?));
            }
            v.sort();
            tables.insert(t.to_owned(), v);
        }
        Ok(Anchor { format: ANCHOR_FORMAT.to_owned(), made_at, tables })
    }

    /// Compares the rows now (`current`, from [`Registry::anchor`]) with the anchor `last`. Rows gone
    /// from a table are explained only by purge records written after `last`: by the purged ids'
    /// digest when one purge touched the table, else by their count.
    pub async fn check_anchor(&self, last: &Anchor, current: &Anchor) -> Result<AnchorCheck, RegistryError> {
        let purges = sqlx::query("SELECT table_name, purged, ids_sha256, recorded_at FROM purge_records")
            .fetch_all(&self.pool)
            .await?;
        let mut purges_by_table: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        for p in &purges {
            let at: String = p.try_get(3)?;
            let purged: i64 = p.try_get(1)?;
            // Same-second timestamps count as after: the clock's resolution is a second.
            if purged > 0 && at.as_str() >= last.made_at.as_str() {
                purges_by_table.entry(p.try_get(0)?).or_default().push((purged, p.try_get(2)?));
            }
        }
        let mut out = AnchorCheck { anchored: last.rows(), ..Default::default() };
        let empty = Vec::new();
        for (table, rows) in &last.tables {
            let now_rows = current.tables.get(table).unwrap_or(&empty);
            let mut now_by_key: HashMap<&str, Vec<&str>> = HashMap::new();
            for (k, d) in now_rows {
                now_by_key.entry(k).or_default().push(d);
            }
            let mut consumed = 0usize;
            let mut missing: Vec<String> = Vec::new();
            for (k, d) in rows {
                match now_by_key.get_mut(k.as_str()) {
                    Some(ds) => match ds.iter().position(|x| x == d) {
                        Some(i) => {
                            ds.swap_remove(i);
                            consumed += 1;
                        }
                        None => {
                            out.findings.push(AnchorFinding { table: table.clone(), key: k.clone(), what: "changed" })
                        }
                    },
                    None => missing.push(k.clone()),
                }
            }
            out.new_rows += now_rows.len() - consumed;
            missing.dedup();
            if missing.is_empty() {
                continue;
            }
            let explained = match purges_by_table.get(table.as_str()).map(Vec::as_slice) {
                Some([(_, ids_sha256)]) => *ids_sha256 == crate::retention::ids_digest(&missing),
                Some(ps) => ps.iter().map(|p| p.0).sum::<i64>() == missing.len() as i64,
                None => false,
            };
            if explained {
                out.purged += missing.len();
            } else {
                out.findings.extend(missing.into_iter().map(|key| AnchorFinding {
                    table: table.clone(),
                    key,
                    what: "missing",
                }));
            }
        }
        // A table the last anchor did not know (a newer schema) is all new.
        out.new_rows +=
            current.tables.iter().filter(|(t, _)| !last.tables.contains_key(*t)).map(|(_, v)| v.len()).sum::<usize>();
        Ok(out)
    }
}
