//! The statutory ledger (帳簿, R9): one row for each provision to a user, provision between users,
//! deletion of anonymized information, and medical information given to or received from another
//! creator. Append-only: a correction is a new row pointing at the one it corrects; every row is kept
//! 3 years ([`RetentionRule::ThreeYears`]). Exported as a Japanese document (HTML) or CSV.

use chrono::NaiveDate;
use kiban_model::retention::RetentionRule;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::records::{RecordError, invalid, new_id};
use crate::review::notice::esc;
use crate::store::{Registry, now};

/// What a ledger row records (R9, 003 art.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// Provision to a user.
    ProvisionToUser,
    /// Provision between users.
    BetweenUsers,
    /// Deletion of anonymized information.
    Deletion,
    /// Medical information given to another creator.
    ToCreator,
    /// Medical information received from another creator.
    FromCreator,
}

impl LedgerKind {
    /// Stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::ProvisionToUser => "provision_to_user",
            LedgerKind::BetweenUsers => "between_users",
            LedgerKind::Deletion => "deletion",
            LedgerKind::ToCreator => "to_creator",
            LedgerKind::FromCreator => "from_creator",
        }
    }

    /// Parses stored text.
    pub fn parse(s: &str) -> Result<Self, RecordError> {
        Ok(match s {
            "provision_to_user" => LedgerKind::ProvisionToUser,
            "between_users" => LedgerKind::BetweenUsers,
            "deletion" => LedgerKind::Deletion,
            "to_creator" => LedgerKind::ToCreator,
            "from_creator" => LedgerKind::FromCreator,
            o => return Err(invalid("kind", "R9", format!("{o:?} is not a ledger kind"))),
        })
    }

    /// Japanese label.
    pub fn ja(self) -> &'static str {
        match self {
            LedgerKind::ProvisionToUser => "利用者への提供",
            LedgerKind::BetweenUsers => "利用者間の提供",
            LedgerKind::Deletion => "匿名加工医療情報の消去",
            LedgerKind::ToCreator => "他の認定作成事業者への提供",
            LedgerKind::FromCreator => "他の認定作成事業者からの受領",
        }
    }
}

/// A ledger entry to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerInput {
    /// Kind.
    pub kind: LedgerKind,
    /// Application, if any.
    pub application_id: Option<String>,
    /// Release, if any.
    pub release_id: Option<String>,
    /// The user's (or other creator's) name.
    pub party_name: String,
    /// Address.
    pub party_address: String,
    /// Identifying details.
    pub party_detail: String,
    /// The other party (between users), else empty.
    pub second_party: String,
    /// Date of provision / deletion / transfer.
    pub event_date: NaiveDate,
    /// Items.
    pub items: Vec<String>,
    /// Media and places (D6), as text.
    pub media: Vec<String>,
    /// SHA-256 of the package manifest, if any.
    pub manifest_sha256: String,
    /// Note.
    pub note: String,
}

/// A ledger entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// Id.
    pub entry_id: String,
    /// Order of recording.
    pub seq: i64,
    /// What was written.
    #[serde(flatten)]
    pub input: LedgerInput,
    /// The entry this one corrects.
    pub corrects: Option<String>,
    /// When recorded.
    pub recorded_at: String,
    /// First day it may be purged.
    pub retention_end: NaiveDate,
}

fn check(input: &LedgerInput) -> Result<(), RecordError> {
    if input.party_name.trim().is_empty() {
        return Err(invalid("party_name", "R9", "the ledger names the other party"));
    }
    if input.kind != LedgerKind::Deletion && input.party_address.trim().is_empty() {
        return Err(invalid("party_address", "R9", "the ledger records the other party's address"));
    }
    if input.items.is_empty() {
        return Err(invalid("items", "R9", "the ledger records the items"));
    }
    if input.kind == LedgerKind::BetweenUsers && input.second_party.trim().is_empty() {
        return Err(invalid("second_party", "R9", "provision between users names both parties"));
    }
    Ok(())
}

pub(crate) async fn insert_ledger(
    conn: &mut sqlx::AnyConnection,
    input: &LedgerInput,
    corrects: Option<&str>,
) -> Result<LedgerEntry, RecordError> {
    check(input)?;
    let seq: i64 =
        sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger_entries").fetch_one(&mut *conn).await?.try_get(0)?;
    let entry_id = new_id("ldg");
    let retention_end = RetentionRule::ThreeYears.end_date(input.event_date);
    let recorded_at = now();
    sqlx::query(
        "INSERT INTO ledger_entries (entry_id, seq, kind, application_id, release_id, party_name, party_address, \
         party_detail, second_party, event_date, items_json, media_json, manifest_sha256, corrects, note, recorded_at, \
         retention_end) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&entry_id)
    .bind(seq)
    .bind(input.kind.as_str())
    .bind(input.application_id.clone())
    .bind(input.release_id.clone())
    .bind(&input.party_name)
    .bind(&input.party_address)
    .bind(&input.party_detail)
    .bind(&input.second_party)
    .bind(input.event_date.to_string())
    .bind(serde_json::to_string(&input.items).expect("json"))
    .bind(serde_json::to_string(&input.media).expect("json"))
    .bind(&input.manifest_sha256)
    .bind(corrects)
    .bind(&input.note)
    .bind(&recorded_at)
    .bind(retention_end.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(LedgerEntry {
        entry_id,
        seq,
        input: input.clone(),
        corrects: corrects.map(str::to_owned),
        recorded_at,
        retention_end,
    })
}

/// Parses a stored ISO date, naming the field and the rule on failure.
pub(crate) fn parse_date(s: &str, field: &'static str, rule: &'static str) -> Result<NaiveDate, RecordError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| invalid(field, rule, format!("{s:?} is not YYYY-MM-DD")))
}

fn row_to_entry(r: sqlx::any::AnyRow) -> Result<LedgerEntry, RecordError> {
    let date = |s: String| parse_date(&s, "event_date", "R9");
    let items: String = r.try_get(10)?;
    let media: String = r.try_get(11)?;
    Ok(LedgerEntry {
        entry_id: r.try_get(0)?,
        seq: r.try_get(1)?,
        input: LedgerInput {
            kind: LedgerKind::parse(&r.try_get::<String, _>(2)?)?,
            application_id: r.try_get(3)?,
            release_id: r.try_get(4)?,
            party_name: r.try_get(5)?,
            party_address: r.try_get(6)?,
            party_detail: r.try_get(7)?,
            second_party: r.try_get(8)?,
            event_date: date(r.try_get(9)?)?,
            items: serde_json::from_str(&items).map_err(|e| invalid("items_json", "R9", e.to_string()))?,
            media: serde_json::from_str(&media).map_err(|e| invalid("media_json", "R9", e.to_string()))?,
            manifest_sha256: r.try_get(12)?,
            note: r.try_get(14)?,
        },
        corrects: r.try_get(13)?,
        recorded_at: r.try_get(15)?,
        retention_end: date(r.try_get(16)?)?,
    })
}

const COLS: &str = "entry_id, seq, kind, application_id, release_id, party_name, party_address, party_detail, \
                    second_party, event_date, items_json, media_json, manifest_sha256, corrects, note, recorded_at, retention_end";

impl Registry {
    /// Appends a ledger entry (R9).
    pub async fn append_ledger(&self, input: &LedgerInput) -> Result<LedgerEntry, RecordError> {
        let mut tx = self.pool.begin().await?;
        let e = insert_ledger(&mut tx, input, None).await?;
        tx.commit().await?;
        Ok(e)
    }

    /// Corrects an entry: a new row pointing at the old one; the old row is never changed.
    pub async fn correct_ledger(&self, entry_id: &str, corrected: &LedgerInput) -> Result<LedgerEntry, RecordError> {
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT entry_id FROM ledger_entries WHERE entry_id = $1")
            .bind(entry_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(RecordError::NotFound { kind: "ledger entry", id: entry_id.to_owned() });
        }
        let e = insert_ledger(&mut tx, corrected, Some(entry_id)).await?;
        tx.commit().await?;
        Ok(e)
    }

    /// Every ledger entry in recording order.
    pub async fn ledger(&self) -> Result<Vec<LedgerEntry>, RecordError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM ledger_entries ORDER BY seq")))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(row_to_entry).collect()
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// The ledger as CSV with Japanese headers.
pub fn ledger_csv(entries: &[LedgerEntry]) -> String {
    let mut out = String::from(
        "番号,記録ID,区分,年月日,相手方の氏名又は名称,住所,特定に足りる事項,他方の当事者,項目,媒体,申出番号,提供ID,訂正対象,備考,保存期限\n",
    );
    for e in entries {
        let i = &e.input;
        let cells = [
            e.seq.to_string(),
            e.entry_id.clone(),
            i.kind.ja().to_owned(),
            i.event_date.to_string(),
            i.party_name.clone(),
            i.party_address.clone(),
            i.party_detail.clone(),
            i.second_party.clone(),
            i.items.join("、"),
            i.media.join("、"),
            i.application_id.clone().unwrap_or_default(),
            i.release_id.clone().unwrap_or_default(),
            e.corrects.clone().unwrap_or_default(),
            i.note.clone(),
            e.retention_end.to_string(),
        ];
        out.push_str(&cells.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// The ledger as a Japanese statutory document (帳簿, HTML).
pub fn ledger_html(entries: &[LedgerEntry], creator: &str, as_of: NaiveDate) -> String {
    let mut rows = String::new();
    for e in entries {
        let i = &e.input;
        let corr = e.corrects.as_ref().map(|c| format!("（{}を訂正）", esc(c))).unwrap_or_default();
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.seq,
            i.kind.ja(),
            corr,
            i.event_date.format("%Y年%-m月%-d日"),
            esc(&i.party_name),
            esc(&i.party_address),
            esc(&i.party_detail),
            esc(&i.items.join("、")),
            esc(&i.media.join("、")),
            esc(&i.note),
            e.retention_end,
        ));
    }
    format!(
        "<!doctype html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\"><title>帳簿</title></head><body>\
         <h1>帳簿（医療分野の研究開発に資するための匿名加工医療情報及び仮名加工医療情報に関する法律施行規則に基づく記録）</h1>\
         <p>認定作成事業者：{}</p><p>作成日：{}</p><p>記録件数：{}件（訂正は新たな記録として追記し、元の記録は変更しない）</p>\
         <table border=\"1\"><tr><th>番号</th><th>区分</th><th>年月日</th><th>相手方の氏名又は名称</th><th>住所</th>\
         <th>特定に足りる事項</th><th>項目</th><th>媒体</th><th>備考</th><th>保存期限</th></tr>{rows}</table></body></html>\n",
        esc(creator),
        as_of.format("%Y年%-m月%-d日"),
        entries.len(),
    )
}

/// SHA-256 of bytes as lowercase hex (the digest a release records for its package manifest).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
