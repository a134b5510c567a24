//! Retention of statutory records (design: Records and retention): which record kind keeps which
//! [`RetentionRule`] from which anchor, and the purge job — the only deletion from the append-only
//! tables, and itself recorded in `purge_records`.
//!
//! A row is purged only when all of these hold: its retention end (stored with the row when it was
//! written; for a bulk record, 3 years from the last provision or receipt of the bulk) is on or before
//! the day judged; it is not in force (the provider's current filing and its publication, the latest
//! notice to a person); and no kept row refers to it. Rows past retention but kept for one of the last
//! two reasons are counted as held. Kinds without a purge rule are never touched.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use kiban_model::retention::RetentionRule;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::records::{RecordError, new_id};
use crate::store::{Registry, now};

/// What happens to a record kind when its retention ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposal {
    /// Purged by `kiban retention run` once its retention end has passed.
    Purge,
    /// Kept as long as it is in force (an opt-out never expires while it stands).
    KeepWhileInForce,
    /// No statutory period: kept (the purge job never touches it).
    Keep,
}

/// One statutory record kind and its retention.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RecordKind {
    /// Short kind name (`optout_confirmation` …).
    pub kind: &'static str,
    /// Requirement ids it serves.
    pub requirements: &'static str,
    /// Japanese name of the record.
    pub name_ja: &'static str,
    /// Registry table (or `audit/` for the audit log files).
    pub table: &'static str,
    /// Retention rule, when the law sets one.
    pub rule: Option<RetentionRule>,
    /// What the period runs from.
    pub anchor: &'static str,
    /// What the purge job does with it.
    pub disposal: Disposal,
    /// Legal source of the period.
    pub source: &'static str,
}

/// Every record kind the registry keeps, with its retention. Children come before the rows they
/// refer to, which is the order the purge job visits them in.
pub const RECORD_KINDS: &[RecordKind] = &[
    RecordKind {
        kind: "optout_confirmation",
        requirements: "P4",
        name_ja: "提供停止の求めに係る確認書（写し）",
        table: "optout_confirmations",
        rule: Some(RetentionRule::ThreeYears),
        anchor: "issued_on",
        disposal: Disposal::Purge,
        source: "003 art.32",
    },
    RecordKind {
        kind: "receipt_record",
        requirements: "C2",
        name_ja: "受領記録",
        table: "receipt_records",
        rule: Some(RetentionRule::ThreeYears),
        anchor: "received_on (bulk: the last receipt of the bulk record)",
        disposal: Disposal::Purge,
        source: "003 art.38",
    },
    RecordKind {
        kind: "provision_record",
        requirements: "P6",
        name_ja: "提供記録",
        table: "provision_records",
        rule: Some(RetentionRule::ThreeYears),
        anchor: "provided_on (bulk: the last provision of the bulk record)",
        disposal: Disposal::Purge,
        source: "003 art.35",
    },
    RecordKind {
        kind: "deletion_record",
        requirements: "C5, P7",
        name_ja: "消去記録",
        table: "deletion_records",
        rule: Some(RetentionRule::ThreeYears),
        anchor: "deleted_on",
        disposal: Disposal::Purge,
        source: "003 art.19",
    },
    RecordKind {
        kind: "notice",
        requirements: "P1",
        name_ja: "本人への通知の記録",
        table: "notices",
        rule: Some(RetentionRule::ThreeYears),
        anchor: "notice_date (the latest notice to a person is kept while in force)",
        disposal: Disposal::Purge,
        source: "003 art.28",
    },
    RecordKind {
        kind: "complaint",
        requirements: "I3",
        name_ja: "苦情処理の記録",
        table: "complaints",
        rule: Some(RetentionRule::ThreeYears),
        anchor: "received_on",
        disposal: Disposal::Purge,
        source: "003 art.25",
    },
    RecordKind {
        kind: "provider_publication",
        requirements: "P5, C1",
        name_ja: "届出事項の公表の記録",
        table: "provider_publications",
        rule: Some(RetentionRule::ThreeYears),
        anchor: "provider_published_on (kept while its filing is in force)",
        disposal: Disposal::Purge,
        source: "003 art.29-30",
    },
    RecordKind {
        kind: "provider_filing",
        requirements: "P5, C1, C4",
        name_ja: "医療情報取扱事業者の届出",
        table: "provider_filings",
        rule: Some(RetentionRule::ThreeYears),
        anchor: "filed_on (the provider's latest filing is kept while in force)",
        disposal: Disposal::Purge,
        source: "003 art.28-4, 36",
    },
    RecordKind {
        kind: "optout",
        requirements: "P3",
        name_ja: "提供停止の求め",
        table: "optouts",
        rule: None,
        anchor: "received_at",
        disposal: Disposal::KeepWhileInForce,
        source: "003 art.27",
    },
    RecordKind {
        kind: "bulk_record",
        requirements: "P6, C2",
        name_ja: "一括記録",
        table: "bulk_records",
        rule: Some(RetentionRule::ThreeYearsFromLast),
        anchor: "the last provision or receipt it covers",
        disposal: Disposal::KeepWhileInForce,
        source: "003 art.35, 38",
    },
    RecordKind {
        kind: "ledger_entry",
        requirements: "R9",
        name_ja: "帳簿",
        table: "ledger_entries",
        rule: Some(RetentionRule::ThreeYears),
        anchor: "event_date",
        disposal: Disposal::Purge,
        source: "003 art.12",
    },
    RecordKind {
        kind: "review_record",
        requirements: "R2, D1–D7",
        name_ja: "提供申出・審査・提供の記録",
        table: "review_events",
        rule: Some(RetentionRule::ThreeYears),
        anchor: "each event's day; an application's events go together, after its last event's period",
        disposal: Disposal::Purge,
        source: "design: Records and retention (same period as the R9 ledger it supports)",
    },
    RecordKind {
        kind: "sanction",
        requirements: "D8",
        name_ja: "措置（利用停止等）の記録",
        table: "sanctions",
        rule: Some(RetentionRule::ThreeYears),
        anchor: "decided_on; kept while the ban is in force",
        disposal: Disposal::Purge,
        source: "design: Records and retention",
    },
    RecordKind {
        kind: "violation",
        requirements: "D8, R14",
        name_ja: "違反の認定の記録",
        table: "violations",
        rule: Some(RetentionRule::ThreeYears),
        anchor: "recognized_on; kept while a kept sanction refers to it",
        disposal: Disposal::Purge,
        source: "design: Records and retention",
    },
    RecordKind {
        kind: "contract",
        requirements: "R8, R10",
        name_ja: "共同利用の合意書・作成事業者間の提供契約書",
        table: "contracts",
        rule: None,
        anchor: "signed_on",
        disposal: Disposal::Keep,
        source: "003 art.23 (the contract is kept); 000 §Ⅳ④",
    },
    RecordKind {
        kind: "committee_roster",
        requirements: "R1",
        name_ja: "審査委員会の名簿",
        table: "committee_members",
        rule: None,
        anchor: "recorded_at",
        disposal: Disposal::Keep,
        source: "000 §Ⅱ②(1)",
    },
    RecordKind {
        kind: "leak_report",
        requirements: "I1",
        name_ja: "漏えい等報告",
        table: "leak_reports",
        rule: None,
        anchor: "detected_at",
        disposal: Disposal::Keep,
        source: "003 art.22-2",
    },
    RecordKind {
        kind: "output_approval",
        requirements: "D9",
        name_ja: "公表物確認の承認記録（成果物）",
        table: "output_approvals",
        rule: None,
        anchor: "recorded_at",
        disposal: Disposal::Keep,
        source: "004 第2-13, 第7",
    },
    RecordKind {
        kind: "incident",
        requirements: "I2",
        name_ja: "インシデント記録",
        table: "incidents",
        rule: None,
        anchor: "detected_at",
        disposal: Disposal::Keep,
        source: "000 §Ⅱ⑤",
    },
    RecordKind {
        kind: "handler_record",
        requirements: "X2, X5",
        name_ja: "取扱者の確認・教育訓練・認証の記録",
        table: "accounts, account_events, account_provider_scopes, handler_vetting, training_records",
        rule: None,
        anchor: "recorded_at",
        disposal: Disposal::Keep,
        source: "003 art.6-2",
    },
    RecordKind {
        kind: "access_log",
        requirements: "X6",
        name_ja: "アクセスログ（監査ログ）",
        table: "audit/",
        rule: Some(RetentionRule::OneYearAfterEndOfUse),
        anchor: "end of use",
        disposal: Disposal::Keep,
        source: "004 第6-2(4)",
    },
    RecordKind {
        kind: "purge_record",
        requirements: "C5",
        name_ja: "保存期間経過による消去の記録",
        table: "purge_records",
        rule: None,
        anchor: "recorded_at",
        disposal: Disposal::Keep,
        source: "design: Records and retention",
    },
];

/// How to find, judge and delete the rows of a purgeable kind.
struct PurgeSpec {
    table: &'static str,
    id: &'static str,
    /// `(bulk column, anchor column)` when rows may belong to a bulk record (3 years from the last).
    bulk: Option<(&'static str, &'static str)>,
    /// Ids in force (kept whatever their retention end).
    in_force: Option<&'static str>,
    /// The in-force query takes the day judged as `$1`.
    in_force_on_day: bool,
}

const LATEST_FILINGS: &str = "SELECT f.filing_id FROM provider_filings f WHERE f.seq = \
     (SELECT MAX(g.seq) FROM provider_filings g WHERE g.provider_id = f.provider_id)";

fn spec(table: &str) -> Option<PurgeSpec> {
    Some(match table {
        "optout_confirmations" => PurgeSpec {
            table: "optout_confirmations",
            id: "confirmation_id",
            bulk: None,
            in_force: None,
            in_force_on_day: false,
        },
        "receipt_records" => PurgeSpec {
            table: "receipt_records",
            id: "receipt_id",
            bulk: Some(("bulk_id", "received_on")),
            in_force: None,
            in_force_on_day: false,
        },
        "provision_records" => PurgeSpec {
            table: "provision_records",
            id: "record_id",
            bulk: Some(("bulk_id", "provided_on")),
            in_force: None,
            in_force_on_day: false,
        },
        "deletion_records" => PurgeSpec {
            table: "deletion_records",
            id: "deletion_id",
            bulk: None,
            in_force: None,
            in_force_on_day: false,
        },
        "notices" => PurgeSpec {
            table: "notices",
            id: "notice_id",
            bulk: None,
            in_force: Some(
                "SELECT n.notice_id FROM notices n WHERE n.notice_date = (SELECT MAX(m.notice_date) FROM notices m \
                 WHERE m.provider_id = n.provider_id AND m.patient_id = n.patient_id)",
            ),
            in_force_on_day: false,
        },
        "complaints" => {
            PurgeSpec { table: "complaints", id: "complaint_id", bulk: None, in_force: None, in_force_on_day: false }
        }
        "provider_publications" => PurgeSpec {
            table: "provider_publications",
            id: "publication_id",
            bulk: None,
            in_force: Some(
                "SELECT p.publication_id FROM provider_publications p WHERE p.filing_id IN \
                 (SELECT f.filing_id FROM provider_filings f WHERE f.seq = \
                 (SELECT MAX(g.seq) FROM provider_filings g WHERE g.provider_id = f.provider_id))",
            ),
            in_force_on_day: false,
        },
        "ledger_entries" => {
            PurgeSpec { table: "ledger_entries", id: "entry_id", bulk: None, in_force: None, in_force_on_day: false }
        }
        // An application's events are one record: purged together once the last one's period ends.
        "review_events" => PurgeSpec {
            table: "review_events",
            id: "application_id",
            bulk: None,
            in_force: Some(
                "SELECT application_id FROM review_events GROUP BY application_id HAVING MAX(retention_end) > $1",
            ),
            in_force_on_day: true,
        },
        "sanctions" => PurgeSpec {
            table: "sanctions",
            id: "sanction_id",
            bulk: None,
            in_force: Some("SELECT sanction_id FROM sanctions WHERE ban_until IS NULL OR ban_until > $1"),
            in_force_on_day: true,
        },
        "violations" => {
            PurgeSpec { table: "violations", id: "violation_id", bulk: None, in_force: None, in_force_on_day: false }
        }
        "provider_filings" => PurgeSpec {
            table: "provider_filings",
            id: "filing_id",
            bulk: None,
            in_force: Some(LATEST_FILINGS),
            in_force_on_day: false,
        },
        _ => return None,
    })
}

/// Every column that refers to a row of a purgeable table: `(table, column, referred table)`.
const REFERENCES: &[(&str, &str, &str)] = &[
    ("receipt_records", "filing_id", "provider_filings"),
    ("receipt_records", "publication_id", "provider_publications"),
    ("provider_publications", "filing_id", "provider_filings"),
    ("provider_filings", "supersedes", "provider_filings"),
    ("notices", "corrects", "notices"),
    ("complaints", "supersedes", "complaints"),
    ("ledger_entries", "corrects", "ledger_entries"),
    ("sanctions", "violation_id", "violations"),
];

/// What one kind's purge did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KindPurge {
    /// Record kind.
    pub kind: String,
    /// Table.
    pub table: String,
    /// Rows deleted.
    pub purged: u64,
    /// Rows past retention kept because they are in force or a kept row refers to them.
    pub held: u64,
    /// The purged ids, sorted.
    pub ids: Vec<String>,
    /// SHA-256 of the purged ids, sorted, one a line.
    pub ids_sha256: String,
}

/// What a purge run did (or, for a dry run, would do).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PurgeReport {
    /// Run id (shared by its purge records).
    pub run_id: String,
    /// The day retention was judged against.
    pub as_of: NaiveDate,
    /// True when nothing was deleted or recorded.
    pub dry_run: bool,
    /// One entry per purgeable kind.
    pub kinds: Vec<KindPurge>,
}

impl PurgeReport {
    /// Rows deleted in all.
    pub fn total_purged(&self) -> u64 {
        self.kinds.iter().map(|k| k.purged).sum()
    }
}

/// A purge record as stored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PurgeRecord {
    /// Id.
    pub purge_id: String,
    /// Run id.
    pub run_id: String,
    /// Record kind.
    pub kind: String,
    /// Table.
    pub table_name: String,
    /// Rule applied.
    pub rule: String,
    /// Day judged.
    pub as_of: String,
    /// Rows deleted.
    pub purged: i64,
    /// Rows held.
    pub held: i64,
    /// Digest of the ids.
    pub ids_sha256: String,
    /// Who ran it.
    pub recorded_by: String,
    /// When.
    pub recorded_at: String,
}

/// SHA-256 (hex) of ids, sorted, one a line: what a purge record keeps of the rows it removed.
pub(crate) fn ids_digest(ids: &[String]) -> String {
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

fn iso(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

impl Registry {
    /// Purges every row past retention on `as_of` (see the module docs) in one transaction, and
    /// records one purge record per kind; with `dry_run` nothing is deleted or recorded.
    pub async fn purge_expired(&self, as_of: NaiveDate, by: &str, dry_run: bool) -> Result<PurgeReport, RecordError> {
        let run_id = new_id("purge-run");
        let mut tx = self.pool.begin().await?;
        let mut kinds = Vec::new();
        for k in RECORD_KINDS.iter().filter(|k| k.disposal == Disposal::Purge) {
            let s = spec(k.table).expect("every purgeable kind has a spec");
            let rule = k.rule.expect("every purgeable kind has a rule");
            let mut ends: BTreeMap<String, NaiveDate> = BTreeMap::new();
            let cols = match s.bulk {
                Some((b, _)) => format!("{}, retention_end, {b}", s.id),
                None => format!("{}, retention_end, NULL", s.id),
            };
            let rows =
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {cols} FROM {} WHERE retention_end <= $1", s.table)))
                    .bind(iso(as_of))
                    .fetch_all(&mut *tx)
                    .await?;
            let mut bulk_last: BTreeMap<String, NaiveDate> = BTreeMap::new();
            if let Some((b, anchor)) = s.bulk {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {b}, MAX({anchor}) FROM {} WHERE {b} IS NOT NULL GROUP BY {b}",
                    s.table
                )))
                .fetch_all(&mut *tx)
                .await?;
                for r in rows {
                    let id: String = r.try_get(0)?;
                    let last: String = r.try_get(1)?;
                    bulk_last.insert(id, crate::records::date(&last)?);
                }
            }
            for r in rows {
                let id: String = r.try_get(0)?;
                let end = crate::records::date(&r.try_get::<String, _>(1)?)?;
                let bulk: Option<String> = r.try_get(2)?;
                let end = match bulk.and_then(|b| bulk_last.get(&b).copied()) {
                    Some(last) => end.max(RetentionRule::ThreeYearsFromLast.end_date(last)),
                    None => end,
                };
                if end <= as_of {
                    ends.insert(id, end);
                }
            }
            let mut in_force = BTreeSet::new();
            if let Some(q) = s.in_force {
                let q = if s.in_force_on_day { sqlx::query(q).bind(iso(as_of)) } else { sqlx::query(q) };
                for r in q.fetch_all(&mut *tx).await? {
                    in_force.insert(r.try_get::<String, _>(0)?);
                }
            }
            // Newest first, so a correction goes before the row it corrects; repeat until stable.
            let mut pending: Vec<(NaiveDate, String)> =
                ends.into_iter().filter(|(id, _)| !in_force.contains(id)).map(|(id, e)| (e, id)).collect();
            pending.sort_by(|a, b| b.cmp(a));
            let mut purged = Vec::new();
            loop {
                let before = purged.len();
                let mut rest = Vec::new();
                for (end, id) in pending {
                    let mut referred = false;
                    for (t, c, _) in REFERENCES.iter().filter(|r| r.2 == s.table) {
                        let n: i64 =
                            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {t} WHERE {c} = $1")))
                                .bind(&id)
                                .fetch_one(&mut *tx)
                                .await?
                                .try_get(0)?;
                        if n > 0 {
                            referred = true;
                            break;
                        }
                    }
                    if referred {
                        rest.push((end, id));
                        continue;
                    }
                    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {} WHERE {} = $1", s.table, s.id)))
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    purged.push(id);
                }
                pending = rest;
                if purged.len() == before || pending.is_empty() {
                    break;
                }
            }
            let held_in_force =
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {} WHERE retention_end <= $1", s.table)))
                    .bind(iso(as_of))
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get::<i64, _>(0)?;
            purged.sort();
            let kp = KindPurge {
                kind: k.kind.to_owned(),
                table: s.table.to_owned(),
                purged: purged.len() as u64,
                // Rows whose stored end has passed but that are still here (in force, referred to, or
                // in a bulk record whose last entry is recent).
                held: held_in_force as u64,
                ids_sha256: ids_digest(&purged),
                ids: purged,
            };
            if !dry_run {
                sqlx::query(
                    "INSERT INTO purge_records (purge_id, run_id, kind, table_name, rule, as_of, purged, held, \
                     ids_sha256, recorded_by, recorded_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                )
                .bind(new_id("purge"))
                .bind(&run_id)
                .bind(k.kind)
                .bind(s.table)
                .bind(serde_json::to_value(rule).expect("rule serializes").as_str().unwrap_or_default().to_owned())
                .bind(iso(as_of))
                .bind(kp.purged as i64)
                .bind(kp.held as i64)
                .bind(&kp.ids_sha256)
                .bind(by)
                .bind(now())
                .execute(&mut *tx)
                .await?;
            }
            kinds.push(kp);
        }
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(PurgeReport { run_id, as_of, dry_run, kinds })
    }

    /// Every purge record, oldest first.
    pub async fn purge_records(&self) -> Result<Vec<PurgeRecord>, RecordError> {
        let rows = sqlx::query(
            "SELECT purge_id, run_id, kind, table_name, rule, as_of, purged, held, ids_sha256, recorded_by, recorded_at \
             FROM purge_records ORDER BY recorded_at, purge_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(PurgeRecord {
                    purge_id: r.try_get(0)?,
                    run_id: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    table_name: r.try_get(3)?,
                    rule: r.try_get(4)?,
                    as_of: r.try_get(5)?,
                    purged: r.try_get(6)?,
                    held: r.try_get(7)?,
                    ids_sha256: r.try_get(8)?,
                    recorded_by: r.try_get(9)?,
                    recorded_at: r.try_get(10)?,
                })
            })
            .collect()
    }
}
