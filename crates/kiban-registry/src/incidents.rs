//! Leak reports (I1), other incidents with escalation (I2), complaints (I3) and outsourcing
//! contractors with their audits (I4). Every table is append-only: a fuller or corrected leak
//! report or complaint is a new row that supersedes the earlier one.

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use sqlx::Row;

use crate::accounts::new_id;
use crate::{Registry, RegistryError};

/// Days from detection to the confirmed leak report (I1).
pub const LEAK_REPORT_DAYS: i64 = 30;
/// Days when the leak may be malicious (I1).
pub const LEAK_REPORT_DAYS_MALICIOUS: i64 = 60;
/// Years a complaint record is kept (I3).
pub const COMPLAINT_YEARS: u32 = 3;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The nine items of a leak report (漏えい等報告, 003 art.22-3).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)] // a first report (速報) holds what is known so far; the rules name what is missing
pub struct LeakItems {
    /// 1 概要.
    pub summary: String,
    /// 2 漏えい等が発生し、又は発生したおそれがある情報の項目.
    pub items: String,
    /// 3 本人の数.
    pub persons: i64,
    /// 4 原因.
    pub cause: String,
    /// 5 二次被害又はそのおそれの有無及びその内容.
    pub secondary_damage: String,
    /// 6 本人への対応の実施状況.
    pub response_to_persons: String,
    /// 7 公表の実施状況.
    pub publication: String,
    /// 8 再発防止のための措置.
    pub prevention: String,
    /// 9 その他参考となる事項.
    pub other: String,
}

/// A leak report row.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeakReport {
    /// Report id.
    pub report_id: String,
    /// When the leak was detected.
    pub detected_at: String,
    /// When the first report went out.
    pub first_reported_at: String,
    /// Whether it may be malicious.
    pub possibly_malicious: bool,
    /// The deadline of the confirmed report.
    pub deadline: String,
    /// The nine items as known.
    #[serde(flatten)]
    pub items: LeakItems,
    /// The report this one supersedes.
    pub supersedes: Option<String>,
    /// Whether this is the confirmed report.
    pub final_report: bool,
    /// Recorded at.
    pub recorded_at: String,
}

/// The deadline of the confirmed report: 30 days after detection, 60 when possibly malicious (I1).
pub fn leak_deadline(detected_at: DateTime<Utc>, possibly_malicious: bool) -> DateTime<Utc> {
    detected_at + Duration::days(if possibly_malicious { LEAK_REPORT_DAYS_MALICIOUS } else { LEAK_REPORT_DAYS })
}

/// Another incident (I2).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Incident {
    /// Id.
    pub incident_id: String,
    /// When detected.
    pub detected_at: String,
    /// Who or what detected it (an account id or a monitoring rule).
    pub detected_by: String,
    /// The risk item it falls under.
    pub risk_item: String,
    /// What happened.
    pub description: String,
    /// low | medium | high.
    pub severity: String,
    /// Escalations so far: (to, at, by).
    pub escalations: Vec<(String, String, String)>,
}

/// A complaint (I3).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Complaint {
    /// Id.
    pub complaint_id: String,
    /// Received on.
    pub received_on: String,
    /// Content.
    pub content: String,
    /// Cause found.
    pub cause: String,
    /// Improvement made.
    pub improvement: String,
    /// The record this one supersedes.
    pub supersedes: Option<String>,
    /// Kept until.
    pub retention_end: String,
}

/// The written contract with a contractor (I4: 003 art.21).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)] // a missing item is refused by name when recorded, not as a parse error
pub struct Contract {
    /// Contractor name.
    pub name: String,
    /// Its certification reference.
    pub certification: String,
    /// Scope of the outsourced work.
    pub scope: String,
    /// Procedures.
    pub procedures: String,
    /// The creator's right to verify.
    pub right_to_verify: String,
    /// Instructions.
    pub instructions: String,
    /// How compliance with instructions is verified.
    pub instruction_checks: String,
    /// Reporting (including leak notification).
    pub reporting: String,
    /// Other terms.
    pub other_terms: String,
    /// Contract date.
    pub contracted_on: String,
}

/// A contractor and its audits.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Contractor {
    /// Id.
    pub contractor_id: String,
    /// The contract items.
    #[serde(flatten)]
    pub contract: Contract,
    /// Audits: (audited on, auditor, findings, passed).
    pub audits: Vec<(String, String, String, bool)>,
}

/// A bad record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Registry failure.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A required item is empty.
    #[error("{0} must not be empty")]
    Missing(&'static str),
    /// The contractor is not certified.
    #[error("outsourcing is only allowed to certified contractors: give the certification reference")]
    NotCertified,
}

fn need(v: &str, what: &'static str) -> Result<(), RecordError> {
    if v.trim().is_empty() { Err(RecordError::Missing(what)) } else { Ok(()) }
}

const LEAK_COLS: &str = "report_id, detected_at, first_reported_at, possibly_malicious, deadline, summary, items, persons, \
    cause, secondary_damage, response_to_persons, publication, prevention, other, supersedes, final, recorded_at";

fn leak_row(r: sqlx::any::AnyRow) -> Result<LeakReport, RegistryError> {
    Ok(LeakReport {
        report_id: r.try_get(0)?,
        detected_at: r.try_get(1)?,
        first_reported_at: r.try_get(2)?,
        possibly_malicious: r.try_get::<i64, _>(3)? != 0,
        deadline: r.try_get(4)?,
        items: LeakItems {
            summary: r.try_get(5)?,
            items: r.try_get(6)?,
            persons: r.try_get(7)?,
            cause: r.try_get(8)?,
            secondary_damage: r.try_get(9)?,
            response_to_persons: r.try_get(10)?,
            publication: r.try_get(11)?,
            prevention: r.try_get(12)?,
            other: r.try_get(13)?,
        },
        supersedes: r.try_get(14)?,
        final_report: r.try_get::<i64, _>(15)? != 0,
        recorded_at: r.try_get(16)?,
    })
}

impl Registry {
    /// Records the first report of a leak (速報) at `now`, with what is known so far; the deadline
    /// of the confirmed report follows from detection (I1).
    pub async fn open_leak_report(
        &self,
        detected_at: DateTime<Utc>,
        possibly_malicious: bool,
        items: &LeakItems,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<LeakReport, RecordError> {
        need(&items.summary, "summary")?;
        self.insert_leak(None, detected_at, now, possibly_malicious, items, false, by, now).await
    }

    /// Records a fuller or the confirmed report (`final_report`), superseding `report_id`.
    pub async fn update_leak_report(
        &self,
        report_id: &str,
        items: &LeakItems,
        final_report: bool,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<LeakReport, RecordError> {
        let old = self.leak_report(report_id).await?;
        need(&items.summary, "summary")?;
        if final_report {
            for (v, what) in [
                (&items.items, "items"),
                (&items.cause, "cause"),
                (&items.secondary_damage, "secondary damage"),
                (&items.response_to_persons, "response to the persons"),
                (&items.publication, "publication"),
                (&items.prevention, "prevention of recurrence"),
            ] {
                need(v, what)?;
            }
        }
        let detected = DateTime::parse_from_rfc3339(&old.detected_at).map(|t| t.with_timezone(&Utc)).unwrap_or(now);
        let first = DateTime::parse_from_rfc3339(&old.first_reported_at).map(|t| t.with_timezone(&Utc)).unwrap_or(now);
        self.insert_leak(Some(report_id), detected, first, old.possibly_malicious, items, final_report, by, now).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_leak(
        &self,
        supersedes: Option<&str>,
        detected_at: DateTime<Utc>,
        first_reported_at: DateTime<Utc>,
        malicious: bool,
        i: &LeakItems,
        final_report: bool,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<LeakReport, RecordError> {
        let id = new_id("leak");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO leak_reports ({LEAK_COLS}, recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $14, $15, $16, $17, $18)"
        )))
        .bind(&id)
        .bind(ts(detected_at))
        .bind(ts(first_reported_at))
        .bind(malicious as i64)
        .bind(ts(leak_deadline(detected_at, malicious)))
        .bind(&i.summary)
        .bind(&i.items)
        .bind(i.persons)
        .bind(&i.cause)
        .bind(&i.secondary_damage)
        .bind(&i.response_to_persons)
        .bind(&i.publication)
        .bind(&i.prevention)
        .bind(&i.other)
        .bind(supersedes)
        .bind(final_report as i64)
        .bind(ts(now))
        .bind(by)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::from)?;
        Ok(self.leak_report(&id).await?)
    }

    /// One leak report row.
    pub async fn leak_report(&self, id: &str) -> Result<LeakReport, RegistryError> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {LEAK_COLS} FROM leak_reports WHERE report_id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| RegistryError::NotFound { kind: "leak report", id: id.to_owned() })?;
        leak_row(r)
    }

    /// The current leak reports: each chain's latest row, by detection time.
    pub async fn leak_reports(&self) -> Result<Vec<LeakReport>, RegistryError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LEAK_COLS} FROM leak_reports l WHERE NOT EXISTS \
             (SELECT 1 FROM leak_reports n WHERE n.supersedes = l.report_id) ORDER BY detected_at, report_id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(leak_row).collect()
    }

    /// Leak reports without a confirmed report whose deadline has passed at `now` (I1).
    pub async fn overdue_leak_reports(&self, now: DateTime<Utc>) -> Result<Vec<LeakReport>, RegistryError> {
        let now = ts(now);
        Ok(self.leak_reports().await?.into_iter().filter(|r| !r.final_report && r.deadline < now).collect())
    }

    /// Records an incident other than a leak (I2).
    pub async fn record_incident(
        &self,
        detected_at: DateTime<Utc>,
        detected_by: &str,
        risk_item: &str,
        description: &str,
        severity: &str,
        now: DateTime<Utc>,
    ) -> Result<Incident, RecordError> {
        need(risk_item, "risk item")?;
        need(description, "description")?;
        let id = new_id("inc");
        sqlx::query(
            "INSERT INTO incidents (incident_id, detected_at, detected_by, risk_item, description, severity, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(ts(detected_at))
        .bind(detected_by)
        .bind(risk_item)
        .bind(description)
        .bind(severity)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(RegistryError::from)?;
        Ok(self.incident(&id).await?)
    }

    /// Records an escalation of an incident (to the responsible officer, the ministry …).
    pub async fn escalate_incident(
        &self,
        id: &str,
        to: &str,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Incident, RecordError> {
        self.incident(id).await?;
        need(to, "escalated to")?;
        sqlx::query(
            "INSERT INTO incident_escalations (escalation_id, incident_id, escalated_to, escalated_at, escalated_by, note) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id("esc"))
        .bind(id)
        .bind(to)
        .bind(ts(now))
        .bind(by)
        .bind(note)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::from)?;
        Ok(self.incident(id).await?)
    }

    /// One incident with its escalations.
    pub async fn incident(&self, id: &str) -> Result<Incident, RegistryError> {
        let r = sqlx::query(
            "SELECT incident_id, detected_at, detected_by, risk_item, description, severity FROM incidents WHERE incident_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| RegistryError::NotFound { kind: "incident", id: id.to_owned() })?;
        let esc = sqlx::query(
            "SELECT escalated_to, escalated_at, escalated_by FROM incident_escalations WHERE incident_id = $1 \
             ORDER BY escalated_at, escalation_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Incident {
            incident_id: r.try_get(0)?,
            detected_at: r.try_get(1)?,
            detected_by: r.try_get(2)?,
            risk_item: r.try_get(3)?,
            description: r.try_get(4)?,
            severity: r.try_get(5)?,
            escalations: esc
                .into_iter()
                .map(|e| Ok((e.try_get(0)?, e.try_get(1)?, e.try_get(2)?)))
                .collect::<Result<_, RegistryError>>()?,
        })
    }

    /// All incidents by detection time.
    pub async fn incidents(&self) -> Result<Vec<Incident>, RegistryError> {
        let ids = sqlx::query("SELECT incident_id FROM incidents ORDER BY detected_at, incident_id")
            .fetch_all(&self.pool)
            .await?;
        let mut v = Vec::new();
        for r in ids {
            v.push(self.incident(&r.try_get::<String, _>(0)?).await?);
        }
        Ok(v)
    }

    /// Records a complaint with its cause and improvement, kept 3 years (I3); `supersedes` for a
    /// later record of the same complaint (the cause found, the improvement made).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_complaint(
        &self,
        received_on: NaiveDate,
        content: &str,
        cause: &str,
        improvement: &str,
        supersedes: Option<&str>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Complaint, RecordError> {
        need(content, "content")?;
        if let Some(s) = supersedes {
            self.complaint(s).await?;
        }
        let id = new_id("cmp");
        let keep = received_on.checked_add_months(chrono::Months::new(12 * COMPLAINT_YEARS)).unwrap_or(NaiveDate::MAX);
        sqlx::query(
            "INSERT INTO complaints (complaint_id, received_on, content, cause, improvement, supersedes, retention_end, \
             recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(received_on.to_string())
        .bind(content)
        .bind(cause)
        .bind(improvement)
        .bind(supersedes)
        .bind(keep.to_string())
        .bind(by)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(RegistryError::from)?;
        Ok(self.complaint(&id).await?)
    }

    /// One complaint record.
    pub async fn complaint(&self, id: &str) -> Result<Complaint, RegistryError> {
        let r = sqlx::query(
            "SELECT complaint_id, received_on, content, cause, improvement, supersedes, retention_end FROM complaints \
             WHERE complaint_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| RegistryError::NotFound { kind: "complaint", id: id.to_owned() })?;
        Ok(Complaint {
            complaint_id: r.try_get(0)?,
            received_on: r.try_get(1)?,
            content: r.try_get(2)?,
            cause: r.try_get(3)?,
            improvement: r.try_get(4)?,
            supersedes: r.try_get(5)?,
            retention_end: r.try_get(6)?,
        })
    }

    /// The current complaint records (latest of each chain), by receipt date.
    pub async fn complaints(&self) -> Result<Vec<Complaint>, RegistryError> {
        let ids = sqlx::query(
            "SELECT complaint_id FROM complaints c WHERE NOT EXISTS (SELECT 1 FROM complaints n WHERE n.supersedes = c.complaint_id) \
             ORDER BY received_on, complaint_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut v = Vec::new();
        for r in ids {
            v.push(self.complaint(&r.try_get::<String, _>(0)?).await?);
        }
        Ok(v)
    }

    /// Records an outsourcing contract; every contract item is required (I4).
    pub async fn record_contractor(
        &self,
        c: &Contract,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Contractor, RecordError> {
        if c.certification.trim().is_empty() {
            return Err(RecordError::NotCertified);
        }
        for (v, what) in [
            (&c.name, "name"),
            (&c.scope, "scope"),
            (&c.procedures, "procedures"),
            (&c.right_to_verify, "right to verify"),
            (&c.instructions, "instructions"),
            (&c.instruction_checks, "verification of instructions"),
            (&c.reporting, "reporting"),
            (&c.contracted_on, "contract date"),
        ] {
            need(v, what)?;
        }
        let id = new_id("ctr");
        sqlx::query(
            "INSERT INTO contractors (contractor_id, name, certification, scope, procedures, right_to_verify, instructions, \
             instruction_checks, reporting, other_terms, contracted_on, recorded_by, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&id)
        .bind(&c.name)
        .bind(&c.certification)
        .bind(&c.scope)
        .bind(&c.procedures)
        .bind(&c.right_to_verify)
        .bind(&c.instructions)
        .bind(&c.instruction_checks)
        .bind(&c.reporting)
        .bind(&c.other_terms)
        .bind(&c.contracted_on)
        .bind(by)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(RegistryError::from)?;
        Ok(self.contractor(&id).await?)
    }

    /// Records an audit of a contractor.
    pub async fn record_contractor_audit(
        &self,
        id: &str,
        audited_on: NaiveDate,
        auditor: &str,
        findings: &str,
        passed: bool,
        now: DateTime<Utc>,
    ) -> Result<Contractor, RecordError> {
        self.contractor(id).await?;
        need(findings, "findings")?;
        sqlx::query(
            "INSERT INTO contractor_audits (audit_id, contractor_id, audited_on, auditor, findings, passed, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new_id("aud"))
        .bind(id)
        .bind(audited_on.to_string())
        .bind(auditor)
        .bind(findings)
        .bind(passed as i64)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(RegistryError::from)?;
        Ok(self.contractor(id).await?)
    }

    /// One contractor with its audits.
    pub async fn contractor(&self, id: &str) -> Result<Contractor, RegistryError> {
        let r = sqlx::query(
            "SELECT contractor_id, name, certification, scope, procedures, right_to_verify, instructions, instruction_checks, \
             reporting, other_terms, contracted_on FROM contractors WHERE contractor_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| RegistryError::NotFound { kind: "contractor", id: id.to_owned() })?;
        let audits = sqlx::query(
            "SELECT audited_on, auditor, findings, passed FROM contractor_audits WHERE contractor_id = $1 ORDER BY audited_on, audit_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Contractor {
            contractor_id: r.try_get(0)?,
            contract: Contract {
                name: r.try_get(1)?,
                certification: r.try_get(2)?,
                scope: r.try_get(3)?,
                procedures: r.try_get(4)?,
                right_to_verify: r.try_get(5)?,
                instructions: r.try_get(6)?,
                instruction_checks: r.try_get(7)?,
                reporting: r.try_get(8)?,
                other_terms: r.try_get(9)?,
                contracted_on: r.try_get(10)?,
            },
            audits: audits
                .into_iter()
                .map(|a| Ok((a.try_get(0)?, a.try_get(1)?, a.try_get(2)?, a.try_get::<i64, _>(3)? != 0)))
                .collect::<Result<_, RegistryError>>()?,
        })
    }

    /// All contractors by name.
    pub async fn contractors(&self) -> Result<Vec<Contractor>, RegistryError> {
        let ids = sqlx::query("SELECT contractor_id FROM contractors ORDER BY name, contractor_id")
            .fetch_all(&self.pool)
            .await?;
        let mut v = Vec::new();
        for r in ids {
            v.push(self.contractor(&r.try_get::<String, _>(0)?).await?);
        }
        Ok(v)
    }
}
