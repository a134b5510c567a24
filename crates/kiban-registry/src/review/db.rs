//! The registry side of the review workflow: the committee roster, each application's append-only
//! event log, violations and sanctions. Every write goes through [`workflow::handle`]; this module
//! only loads, replays and appends. Storing a release event writes its ledger entry in the same
//! transaction (R9).

use chrono::NaiveDate;
use kiban_model::retention::RetentionRule;
use sqlx::Row;

use super::application::Application;
use super::committee::Member;
use super::sanction::{self, DecidedPeriod, Proposal};
use super::workflow::{self, Command, Due, Event, Phase, State, WorkflowError};
use crate::ledger::{LedgerEntry, LedgerInput, LedgerKind, insert_ledger, parse_date};
use crate::records::{RecordError, invalid, new_id};
use crate::store::{Registry, now};

/// Why a review step failed.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The workflow refused the command.
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// A record was refused or the registry failed.
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl From<sqlx::Error> for ReviewError {
    fn from(e: sqlx::Error) -> Self {
        ReviewError::Record(e.into())
    }
}

/// One line of the application list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApplicationSummary {
    /// Id.
    pub application_id: String,
    /// First applicant.
    pub applicant_name: String,
    /// Research title.
    pub title: String,
    /// Phase.
    pub phase: Phase,
}

/// A violation as recorded, with the measure the table proposes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// Id.
    pub violation_id: String,
    /// Offender (applicant name).
    pub offender: String,
    /// The proposal.
    pub proposal: Proposal,
}

/// A decided sanction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sanction {
    /// Id.
    pub sanction_id: String,
    /// Offender.
    pub offender: String,
    /// First day.
    pub ban_from: NaiveDate,
    /// Last day (None: indefinite or until the return is done).
    pub ban_until: Option<NaiveDate>,
    /// Applications stopped.
    pub applications_stopped: Vec<String>,
}

/// A sanction published with the offender's name (R14).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PublishedSanction {
    /// The offender's name.
    pub offender: String,
    /// The violation, in the guideline's words.
    pub violation_ja: String,
    /// First day of the measure.
    pub ban_from: NaiveDate,
    /// Last day (None: indefinite or until a return is done).
    pub ban_until: Option<NaiveDate>,
    /// When it was decided.
    pub decided_on: NaiveDate,
}

/// A due item found by supervision, per application.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DueItem {
    /// Application.
    pub application_id: String,
    /// What is due.
    pub due: Due,
}

impl Registry {
    /// Adds a committee member or records a new version (new term, new facts) of an existing one.
    pub async fn add_committee_member(&self, m: &Member) -> Result<(), ReviewError> {
        if m.name.trim().is_empty() || m.term_end < m.term_start {
            return Err(invalid("member", "R1", "a member needs a name and a term that ends after it starts").into());
        }
        let mut tx = self.pool.begin().await?;
        let v: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 FROM committee_members WHERE member_id = $1")
            .bind(&m.member_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        sqlx::query(
            "INSERT INTO committee_members (member_id, version, member_json, recorded_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&m.member_id)
        .bind(v)
        .bind(serde_json::to_string(m).expect("json"))
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The committee roster: the latest version of every member.
    pub async fn committee(&self) -> Result<Vec<Member>, ReviewError> {
        let rows = sqlx::query(
            "SELECT c.member_json FROM committee_members c WHERE c.version = \
             (SELECT MAX(version) FROM committee_members d WHERE d.member_id = c.member_id) ORDER BY c.member_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let j: String = r.try_get(0)?;
                serde_json::from_str(&j).map_err(|e| ReviewError::from(invalid("member_json", "R1", e.to_string())))
            })
            .collect()
    }

    /// The events of an application, in order.
    pub async fn application_events(&self, id: &str) -> Result<Vec<Event>, ReviewError> {
        Ok(crate::records::event_log(&self.pool, "review_events", "application_id", id, "application", "R2").await?)
    }

    /// The state of an application, replayed from its events.
    pub async fn application_state(&self, id: &str) -> Result<State, ReviewError> {
        Ok(workflow::replay(&self.application_events(id).await?))
    }

    async fn application_ids(&self) -> Result<Vec<(String, String, String, String)>, ReviewError> {
        let rows = sqlx::query(
            "SELECT application_id, applicant_name, contact_name, contact_birth FROM review_applications ORDER BY created_at, application_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))).collect()
    }

    /// Every application with its phase.
    pub async fn applications(&self) -> Result<Vec<ApplicationSummary>, ReviewError> {
        let mut v = Vec::new();
        for (id, applicant, _, _) in self.application_ids().await? {
            let s = self.application_state(&id).await?;
            v.push(ApplicationSummary {
                application_id: id,
                applicant_name: applicant,
                title: s.application.as_ref().map(|a| a.plan.title.clone()).unwrap_or_default(),
                phase: s.phase(),
            });
        }
        Ok(v)
    }

    /// The latest ban on an applicant in force on `on`: (last day, indefinite).
    pub async fn ban_on(&self, offender: &str, on: NaiveDate) -> Result<(Option<NaiveDate>, bool), ReviewError> {
        let rows = sqlx::query("SELECT ban_from, ban_until FROM sanctions WHERE offender = $1")
            .bind(offender)
            .fetch_all(&self.pool)
            .await?;
        let mut until: Option<NaiveDate> = None;
        let mut indefinite = false;
        for r in rows {
            let from = parse_date(&r.try_get::<String, _>(0)?, "ban_from", "D8")?;
            let end: Option<String> = r.try_get(1)?;
            if from > on {
                continue;
            }
            match end {
                None => indefinite = true,
                Some(e) => {
                    let e = parse_date(&e, "ban_until", "D8")?;
                    if e >= on {
                        until = until.max(Some(e));
                    }
                }
            }
        }
        Ok((until, indefinite))
    }

    /// Submits a new application: the pre-checks run (D2) with the contact person's other open
    /// applications and the applicant's bans looked up. Returns its id and state (which may be
    /// `PrecheckFailed` with the failures).
    pub async fn submit_application(&self, app: &Application, on: NaiveDate) -> Result<(String, State), ReviewError> {
        let cmd = self.submit_command(app, on, None).await?;
        let events = workflow::handle(&State::default(), &cmd)?;
        let id = new_id("app");
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO review_applications (application_id, applicant_name, contact_name, contact_birth, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(applicant_of(app))
        .bind(app.contact.name.trim())
        .bind(app.contact.birth_date.to_string())
        .bind(now())
        .execute(&mut *tx)
        .await?;
        append(&mut tx, &id, 0, &events, &State::default()).await?;
        tx.commit().await?;
        Ok((id.clone(), self.application_state(&id).await?))
    }

    async fn submit_command(
        &self,
        app: &Application,
        on: NaiveDate,
        except: Option<&str>,
    ) -> Result<Command, ReviewError> {
        let mut other_open = false;
        for (id, _, name, birth) in self.application_ids().await? {
            if Some(id.as_str()) == except
                || name != app.contact.name.trim()
                || birth != app.contact.birth_date.to_string()
            {
                continue;
            }
            let phase = self.application_state(&id).await?.phase();
            if !matches!(phase, Phase::Refused | Phase::Ended | Phase::PrecheckFailed) {
                other_open = true;
            }
        }
        let (banned_until, ban_indefinite) = self.ban_on(&applicant_of(app), on).await?;
        Ok(Command::Submit {
            application: Box::new(app.clone()),
            contact_has_other_open: other_open,
            banned_until,
            ban_indefinite,
            on,
        })
    }

    /// Resubmits an application after a failed pre-check or a request for revision.
    pub async fn resubmit_application(&self, id: &str, app: &Application, on: NaiveDate) -> Result<State, ReviewError> {
        let cmd = self.submit_command(app, on, Some(id)).await?;
        self.execute_review(id, &cmd).await.map(|(s, _)| s)
    }

    /// Runs a workflow command on an application and stores its events (and, for a release, the
    /// ledger entry) in one transaction. Returns the new state and the ledger entries written.
    pub async fn execute_review(&self, id: &str, cmd: &Command) -> Result<(State, Vec<LedgerEntry>), ReviewError> {
        let events = self.application_events(id).await?;
        let state = workflow::replay(&events);
        let new = workflow::handle(&state, cmd)?;
        let mut tx = self.pool.begin().await?;
        let ledger = append(&mut tx, id, events.len() as i64, &new, &state).await?;
        tx.commit().await?;
        let mut s = state;
        for e in &new {
            workflow::apply(&mut s, e);
        }
        Ok((s, ledger))
    }

    /// Opens the review of an application with the current roster (R1 checked on `on`).
    pub async fn open_review(&self, id: &str, on: NaiveDate) -> Result<State, ReviewError> {
        let committee = self.committee().await?;
        Ok(self.execute_review(id, &Command::OpenReview { committee, on }).await?.0)
    }

    /// Records a violation and returns the measure the D8 table proposes.
    pub async fn record_violation(
        &self,
        offender: &str,
        code: &str,
        recognized_on: NaiveDate,
        detail: &str,
    ) -> Result<Violation, ReviewError> {
        let proposal = sanction::propose(code, recognized_on).ok_or_else(|| {
            let codes: Vec<String> = sanction::table().into_iter().map(|r| r.code).collect();
            invalid("code", "D8", format!("{code:?} is not a row of the sanction table ({})", codes.join(", ")))
        })?;
        if offender.trim().is_empty() {
            return Err(invalid("offender", "D8", "name the offender").into());
        }
        let violation_id = new_id("vio");
        sqlx::query(
            "INSERT INTO violations (violation_id, offender, code, recognized_on, detail, proposal_json, recorded_at, retention_end) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&violation_id)
        .bind(offender)
        .bind(code)
        .bind(recognized_on.to_string())
        .bind(detail)
        .bind(serde_json::to_string(&proposal).expect("json"))
        .bind(now())
        .bind(RetentionRule::ThreeYears.end_date(recognized_on).to_string())
        .execute(&self.pool)
        .await?;
        Ok(Violation { violation_id, offender: offender.to_owned(), proposal })
    }

    /// The sanctions whose offender's name the committee decided to publish (R14, 004 第9), in force
    /// or ended, newest first: what the public site lists.
    pub async fn published_sanctions(&self) -> Result<Vec<PublishedSanction>, ReviewError> {
        let rows = sqlx::query(
            "SELECT s.offender, v.code, s.ban_from, s.ban_until, s.decided_on FROM sanctions s \
             JOIN violations v ON v.violation_id = s.violation_id WHERE s.publish_name = 1 \
             ORDER BY s.decided_on DESC, s.sanction_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let code: String = r.try_get(1)?;
            out.push(PublishedSanction {
                offender: r.try_get(0)?,
                violation_ja: sanction::rule(&code).map(|x| x.ja).unwrap_or(code),
                ban_from: parse_date(&r.try_get::<String, _>(2)?, "ban_from", "R14")?,
                ban_until: r
                    .try_get::<Option<String>, _>(3)?
                    .map(|d| parse_date(&d, "ban_until", "R14"))
                    .transpose()?,
                decided_on: parse_date(&r.try_get::<String, _>(4)?, "decided_on", "R14")?,
            });
        }
        Ok(out)
    }

    /// Decides the measure for a violation: checks it against the table, records it, stops use on
    /// every approved application of the offender, and blocks new applications during the ban.
    pub async fn decide_sanction(
        &self,
        violation_id: &str,
        period: DecidedPeriod,
        publish_name: bool,
        decided_on: NaiveDate,
    ) -> Result<Sanction, ReviewError> {
        let row = sqlx::query("SELECT offender, code, recognized_on FROM violations WHERE violation_id = $1")
            .bind(violation_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| RecordError::NotFound { kind: "violation", id: violation_id.to_owned() })?;
        let offender: String = row.try_get(0)?;
        let code: String = row.try_get(1)?;
        let from = parse_date(&row.try_get::<String, _>(2)?, "recognized_on", "D8")?;
        let rule = sanction::rule(&code).ok_or_else(|| invalid("code", "D8", format!("unknown row {code}")))?;
        let until = sanction::ban_until(&rule, from, period).map_err(|e| invalid("period", "D8", e.0))?;
        let sanction_id = new_id("san");
        sqlx::query(
            "INSERT INTO sanctions (sanction_id, violation_id, offender, period_json, ban_from, ban_until, publish_name, \
             decided_on, recorded_at, retention_end) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&sanction_id)
        .bind(violation_id)
        .bind(&offender)
        .bind(serde_json::to_string(&period).expect("json"))
        .bind(from.to_string())
        .bind(until.map(|d| d.to_string()))
        .bind(i64::from(publish_name))
        .bind(decided_on.to_string())
        .bind(now())
        .bind(RetentionRule::ThreeYears.end_date(decided_on).to_string())
        .execute(&self.pool)
        .await?;
        let mut stopped = Vec::new();
        for (id, applicant, _, _) in self.application_ids().await? {
            if applicant != offender {
                continue;
            }
            let s = self.application_state(&id).await?;
            if s.approved_once && s.phase() != Phase::Ended {
                self.execute_review(&id, &Command::Suspend { sanction_id: sanction_id.clone(), until }).await?;
                stopped.push(id);
            }
        }
        Ok(Sanction { sanction_id, offender, ban_from: from, ban_until: until, applications_stopped: stopped })
    }

    /// Supervision on `as_of` (D7, R5): ends every entitlement whose period has passed and lists
    /// what is due (usage and management reports, deletion certificates).
    pub async fn supervise(&self, as_of: NaiveDate) -> Result<(Vec<String>, Vec<DueItem>), ReviewError> {
        let mut ended = Vec::new();
        let mut due = Vec::new();
        for (id, _, _, _) in self.application_ids().await? {
            let mut s = self.application_state(&id).await?;
            if workflow::supervision_due(&s, as_of).iter().any(|d| matches!(d, Due::EntitlementExpired { .. })) {
                s = self.execute_review(&id, &Command::Expire { as_of }).await?.0;
                ended.push(id.clone());
            }
            due.extend(
                workflow::supervision_due(&s, as_of)
                    .into_iter()
                    .map(|d| DueItem { application_id: id.clone(), due: d }),
            );
        }
        Ok((ended, due))
    }
}

fn applicant_of(app: &Application) -> String {
    app.applicants.first().map(|a| a.name.trim().to_owned()).unwrap_or_default()
}

async fn append(
    tx: &mut sqlx::AnyConnection,
    id: &str,
    start: i64,
    events: &[Event],
    before: &State,
) -> Result<Vec<LedgerEntry>, ReviewError> {
    let mut ledger = Vec::new();
    let recorded_at = now();
    for (i, e) in events.iter().enumerate() {
        let day = chrono::NaiveDate::parse_from_str(&recorded_at[..10], "%Y-%m-%d").expect("now() is ISO");
        sqlx::query(
            "INSERT INTO review_events (application_id, seq, kind, event_json, recorded_at, retention_end) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(start + i as i64)
        .bind(e.kind())
        .bind(serde_json::to_string(e).expect("json"))
        .bind(&recorded_at)
        .bind(RetentionRule::ThreeYears.end_date(day).to_string())
        .execute(&mut *tx)
        .await?;
        if let Event::Released { spec } = e {
            let agreement = before.agreement.as_ref().expect("the workflow releases only under an agreement");
            let input = LedgerInput {
                kind: LedgerKind::ProvisionToUser,
                application_id: Some(id.to_owned()),
                release_id: Some(spec.release_id.clone()),
                party_name: agreement.user_name.clone(),
                party_address: agreement.user_address.clone(),
                party_detail: agreement.user_detail.clone(),
                second_party: String::new(),
                event_date: spec.on,
                items: spec.items.clone(),
                media: spec.media.iter().map(|m| format!("{}→{}", m.medium_id, m.place_id)).collect(),
                manifest_sha256: spec.manifest_sha256.clone(),
                note: "複製は1回限り・利用場所ごとに1媒体（D6）".to_owned(),
            };
            ledger.push(insert_ledger(&mut *tx, &input, None).await?);
        }
    }
    Ok(ledger)
}
