//! Monitoring: rules over the entry stream that raise alerts on unusual operations (R6, X4, I2).

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::event::{Action, Actor, Entry, JobKind, ObjectKind, Outcome, Role, Seq};

/// The built-in rules file, embedded from `rules/monitoring.toml`.
pub const BUILTIN_RULES: &str = include_str!("../rules/monitoring.toml");

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Look at it in the regular review.
    Low,
    /// Look at it within the deadline.
    Medium,
    /// Act within the deadline.
    High,
    /// Act now; may be a reportable incident.
    Critical,
}

/// Who an alert must reach by its deadline (I2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalateTo {
    /// The security officer.
    SecurityOfficer,
    /// The officer responsible for the creator's safety management.
    ResponsibleOfficer,
    /// The ministry (for reportable incidents).
    Ministry,
}

/// What an above-baseline check adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// The number of matching entries.
    Events,
    /// The sum of their volumes.
    Volume,
}

/// What entries a repeated-events check groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// The actor's id.
    Actor,
    /// The source (terminal, address).
    Source,
}

/// The test a rule applies to the entries it selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// Today's total per actor above `factor` × the mean of their active days and above `min_total`.
    AboveBaseline {
        /// What to add up.
        measure: Measure,
        /// How many times the baseline is unusual.
        factor: f64,
        /// Totals up to this are never unusual.
        min_total: u64,
        /// How many past days form the baseline.
        baseline_days: u32,
        /// Fewer active days than this: no baseline yet, use `cold_start_max`.
        min_baseline_days: u32,
        /// Without a baseline, totals above this are unusual.
        cold_start_max: u64,
    },
    /// Entries outside `start_hour`..`end_hour` local time, on weekends or on holidays.
    OutOfHours {
        /// The first working hour (0–23).
        start_hour: u32,
        /// The hour work ends (1–24).
        end_hour: u32,
    },
    /// One entry with a volume of at least `min_volume`.
    Bulk {
        /// The smallest bulk volume.
        min_volume: u64,
    },
    /// At least `count` entries within `window_minutes` from one actor or source.
    Repeated {
        /// How many.
        count: u32,
        /// Within how long.
        window_minutes: u32,
        /// Grouped by what.
        by: GroupBy,
    },
    /// Entries not running under a job of kind `job`.
    OutsideJob {
        /// The only job kind allowed.
        job: JobKind,
    },
    /// Every selected entry.
    Always,
}

/// One monitoring rule: a selection of entries and a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A stable id, shown on alerts.
    pub id: String,
    /// The requirement id it serves (R6, X4, I2).
    pub requirement: String,
    /// The alert's severity.
    pub severity: Severity,
    /// Who must be told.
    pub escalate_to: EscalateTo,
    /// Hours from the triggering entry to the escalation deadline.
    pub escalate_within_hours: u32,
    /// Only these roles (empty: any).
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Never these roles.
    #[serde(default)]
    pub exclude_roles: Vec<Role>,
    /// Only these actions (empty: any).
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Only these object kinds (empty: any).
    #[serde(default)]
    pub objects: Vec<ObjectKind>,
    /// Only these outcomes (empty: any).
    #[serde(default)]
    pub outcomes: Vec<Outcome>,
    /// Only objects whose id starts with this (e.g. `ws-query/`: queries in Visiting workspaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_prefix: Option<String>,
    /// The check.
    pub check: Check,
}

impl Rule {
    fn selects(&self, e: &Entry) -> bool {
        let ev = &e.event;
        (self.roles.is_empty() || self.roles.contains(&ev.actor.role))
            && !self.exclude_roles.contains(&ev.actor.role)
            && (self.actions.is_empty() || self.actions.contains(&ev.action))
            && (self.objects.is_empty() || self.objects.contains(&ev.object.kind))
            && (self.outcomes.is_empty() || self.outcomes.contains(&ev.outcome))
            && self.object_prefix.as_ref().is_none_or(|p| ev.object.id.starts_with(p.as_str()))
    }
}

/// A set of rules, as loaded from a TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Local time offset from UTC in hours (9 for JST).
    pub utc_offset_hours: i32,
    /// Non-working days besides weekends.
    #[serde(default)]
    pub holidays: Vec<NaiveDate>,
    /// The rules.
    #[serde(rename = "rule")]
    pub rules: Vec<Rule>,
}

impl Rules {
    /// Parses rules from TOML text; unknown fields and values are errors.
    pub fn from_toml(text: &str) -> Result<Self, AuditError> {
        let rules: Rules = toml::from_str(text).map_err(|e| AuditError::Rules(e.to_string()))?;
        if !(-12..=14).contains(&rules.utc_offset_hours) {
            return Err(AuditError::Rules(format!("utc_offset_hours {} is not an offset", rules.utc_offset_hours)));
        }
        for r in &rules.rules {
            if let Check::OutOfHours { start_hour, end_hour } = r.check
                && (start_hour >= end_hour || end_hour > 24)
            {
                return Err(AuditError::Rules(format!("rule {}: hours {start_hour}..{end_hour}", r.id)));
            }
        }
        Ok(rules)
    }

    /// Reads rules from a TOML file.
    pub fn load(path: &Path) -> Result<Self, AuditError> {
        let text = std::fs::read_to_string(path).map_err(AuditError::io(path))?;
        Self::from_toml(&text)
    }

    /// The built-in rules ([`BUILTIN_RULES`]).
    pub fn builtin() -> Self {
        Self::from_toml(BUILTIN_RULES).expect("the built-in rules parse (tested)")
    }
}

/// An alert raised by a rule, waiting in the queue for the security officer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Its number in the queue, from 1.
    pub id: u64,
    /// The rule that raised it.
    pub rule: String,
    /// The requirement id of the rule.
    pub requirement: String,
    /// How urgent.
    pub severity: Severity,
    /// The time of the triggering entry.
    pub raised_at: DateTime<Utc>,
    /// Who must be told …
    pub escalate_to: EscalateTo,
    /// … by when.
    pub escalate_by: DateTime<Utc>,
    /// Who operated.
    pub actor: Actor,
    /// From where.
    pub source: String,
    /// The triggering entry.
    pub seq: Seq,
    /// What was seen, in English.
    pub message: String,
}

#[derive(Default)]
struct Baseline {
    history: VecDeque<(NaiveDate, u64)>,
    today: Option<NaiveDate>,
    total: u64,
    alerted: bool,
}

/// Runs rules over entries one at a time, keeping per-actor state (baselines, windows).
pub struct Monitor {
    rules: Rules,
    offset: FixedOffset,
    baselines: HashMap<(usize, String), Baseline>,
    windows: HashMap<(usize, String), VecDeque<DateTime<Utc>>>,
    out_of_hours_seen: HashMap<(usize, String), NaiveDate>,
}

impl Monitor {
    /// A monitor with no history.
    pub fn new(rules: Rules) -> Self {
        let offset = FixedOffset::east_opt(rules.utc_offset_hours * 3600).expect("checked when loaded");
        Monitor { rules, offset, baselines: HashMap::new(), windows: HashMap::new(), out_of_hours_seen: HashMap::new() }
    }

    /// The rules it runs.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Feeds one entry (in log order) and returns the alerts it raises (with id 0; the queue numbers them).
    pub fn observe(&mut self, e: &Entry) -> Vec<Alert> {
        let mut out = Vec::new();
        let local = e.at.with_timezone(&self.offset);
        let day = local.date_naive();
        for (i, rule) in self.rules.rules.iter().enumerate() {
            if !rule.selects(e) {
                continue;
            }
            let ev = &e.event;
            let message = match &rule.check {
                Check::Always => Some(format!(
                    "{:?} of {:?} {} by {} ({:?})",
                    ev.action, ev.object.kind, ev.object.id, ev.actor.id, ev.outcome
                )),
                Check::Bulk { min_volume } => (ev.volume >= *min_volume).then(|| {
                    format!(
                        "{:?} of {} records of {:?} {} in one operation",
                        ev.action, ev.volume, ev.object.kind, ev.object.id
                    )
                }),
                Check::OutsideJob { job } => (ev.job.as_ref().map(|j| j.kind) != Some(*job)).then(|| {
                    format!("{:?} of {:?} {} outside a {:?} job", ev.action, ev.object.kind, ev.object.id, job)
                }),
                Check::OutOfHours { start_hour, end_hour } => {
                    let hour = local.hour();
                    let weekend = matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
                    let off = weekend || self.rules.holidays.contains(&day) || hour < *start_hour || hour >= *end_hour;
                    let key = (i, ev.actor.id.clone());
                    if off && self.out_of_hours_seen.get(&key) != Some(&day) {
                        self.out_of_hours_seen.insert(key, day);
                        Some(format!(
                            "{:?} of {:?} {} at {} local time, outside working hours",
                            ev.action,
                            ev.object.kind,
                            ev.object.id,
                            local.format("%a %Y-%m-%d %H:%M")
                        ))
                    } else {
                        None
                    }
                }
                Check::Repeated { count, window_minutes, by } => {
                    let who = match by {
                        GroupBy::Actor => ev.actor.id.clone(),
                        GroupBy::Source => ev.source.clone(),
                    };
                    let w = self.windows.entry((i, who.clone())).or_default();
                    let window = Duration::minutes(i64::from(*window_minutes));
                    while w.front().is_some_and(|t| e.at - *t > window) {
                        w.pop_front();
                    }
                    w.push_back(e.at);
                    if w.len() >= *count as usize {
                        w.clear();
                        Some(format!(
                            "{count} {:?} {:?} from {who} within {window_minutes} minutes",
                            ev.action, ev.outcome
                        ))
                    } else {
                        None
                    }
                }
                Check::AboveBaseline {
                    measure,
                    factor,
                    min_total,
                    baseline_days,
                    min_baseline_days,
                    cold_start_max,
                } => {
                    let b = self.baselines.entry((i, ev.actor.id.clone())).or_default();
                    if b.today != Some(day) {
                        if let Some(d) = b.today
                            && b.total > 0
                        {
                            b.history.push_back((d, b.total));
                        }
                        let oldest = day - Duration::days(i64::from(*baseline_days));
                        while b.history.front().is_some_and(|(d, _)| *d < oldest) {
                            b.history.pop_front();
                        }
                        b.today = Some(day);
                        b.total = 0;
                        b.alerted = false;
                    }
                    b.total += match measure {
                        Measure::Events => 1,
                        Measure::Volume => ev.volume,
                    };
                    let (threshold, basis) = if b.history.len() >= *min_baseline_days as usize {
                        let mean = b.history.iter().map(|(_, t)| *t as f64).sum::<f64>() / b.history.len() as f64;
                        ((mean * factor).max(*min_total as f64), format!("{factor} × baseline {mean:.0}"))
                    } else {
                        (*cold_start_max as f64, "the limit for an account without a baseline".to_string())
                    };
                    if !b.alerted && b.total as f64 > threshold {
                        b.alerted = true;
                        Some(format!("{:?} total {} today by {} is above {basis}", measure, b.total, ev.actor.id))
                    } else {
                        None
                    }
                }
            };
            if let Some(message) = message {
                out.push(Alert {
                    id: 0,
                    rule: rule.id.clone(),
                    requirement: rule.requirement.clone(),
                    severity: rule.severity,
                    raised_at: e.at,
                    escalate_to: rule.escalate_to,
                    escalate_by: e.at + Duration::hours(i64::from(rule.escalate_within_hours)),
                    actor: ev.actor.clone(),
                    source: ev.source.clone(),
                    seq: e.seq,
                    message,
                });
            }
        }
        out
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AlertRecord {
    Alert(Alert),
    Ack { id: u64, by: Actor, at: DateTime<Utc> },
}

/// The queue of alerts the console shows, persisted as JSON lines (`alerts.jsonl` in the audit directory).
///
/// The queue is derived data: [`Monitor`] can rebuild it by replaying the verified log.
pub struct AlertQueue {
    path: PathBuf,
    alerts: Vec<Alert>,
    acked: HashMap<u64, (Actor, DateTime<Utc>)>,
    unwritten: Vec<u8>,
    file: Option<File>,
}

impl AlertQueue {
    /// Opens (or starts) the queue file at `path`.
    pub fn open(path: PathBuf) -> Result<Self, AuditError> {
        let mut q = AlertQueue { path, alerts: Vec::new(), acked: HashMap::new(), unwritten: Vec::new(), file: None };
        if q.path.exists() {
            let text = std::fs::read(&q.path).map_err(AuditError::io(&q.path))?;
            let mut offset = 0u64;
            for line in text.split_inclusive(|&b| b == b'\n') {
                if line.ends_with(b"\n") {
                    let rec: AlertRecord = serde_json::from_slice(line).map_err(|e| AuditError::Format {
                        path: q.path.clone(),
                        offset,
                        reason: format!("alert record: {e}"),
                    })?;
                    match rec {
                        AlertRecord::Alert(a) => q.alerts.push(a),
                        AlertRecord::Ack { id, by, at } => {
                            q.acked.insert(id, (by, at));
                        }
                    }
                }
                offset += line.len() as u64;
            }
        }
        Ok(q)
    }

    /// Adds an alert, numbering it; written on the next flush.
    pub fn push(&mut self, mut alert: Alert) -> u64 {
        alert.id = self.alerts.len() as u64 + 1;
        let rec = AlertRecord::Alert(alert.clone());
        serde_json::to_writer(&mut self.unwritten, &rec).expect("an alert always serializes");
        self.unwritten.push(b'\n');
        self.alerts.push(alert);
        self.alerts.len() as u64
    }

    /// Marks an alert as handled by `by` at `at`; false if there is no such alert.
    pub fn acknowledge(&mut self, id: u64, by: &Actor, at: DateTime<Utc>) -> bool {
        if id == 0 || id > self.alerts.len() as u64 {
            return false;
        }
        let rec = AlertRecord::Ack { id, by: by.clone(), at };
        serde_json::to_writer(&mut self.unwritten, &rec).expect("an ack always serializes");
        self.unwritten.push(b'\n');
        self.acked.insert(id, (by.clone(), at));
        true
    }

    /// Every alert, oldest first.
    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// Alerts not yet acknowledged.
    pub fn open_alerts(&self) -> Vec<&Alert> {
        self.alerts.iter().filter(|a| !self.acked.contains_key(&a.id)).collect()
    }

    /// Unacknowledged alerts past their escalation deadline at `now`.
    pub fn overdue(&self, now: DateTime<Utc>) -> Vec<&Alert> {
        self.open_alerts().into_iter().filter(|a| a.escalate_by < now).collect()
    }

    /// Writes pending records to the file (with fsync if asked).
    pub fn flush(&mut self, fsync: bool) -> Result<(), AuditError> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            let f =
                OpenOptions::new().create(true).append(true).open(&self.path).map_err(AuditError::io(&self.path))?;
            self.file = Some(f);
        }
        let f = self.file.as_mut().expect("opened above");
        f.write_all(&self.unwritten).map_err(AuditError::io(&self.path))?;
        if fsync {
            f.sync_data().map_err(AuditError::io(&self.path))?;
        }
        self.unwritten.clear();
        Ok(())
    }
}

/// Replays the log in `dir` through `rules` and returns the alerts they raise (to tune rules on history).
pub fn replay(dir: &Path, rules: Rules) -> Result<Vec<Alert>, AuditError> {
    let mut m = Monitor::new(rules);
    let mut out = Vec::new();
    crate::log::for_each_entry(dir, |e| {
        out.extend(m.observe(&e));
        std::ops::ControlFlow::Continue(())
    })?;
    for (i, a) in out.iter_mut().enumerate() {
        a.id = i as u64 + 1;
    }
    Ok(out)
}
