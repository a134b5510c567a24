//! Monitoring replays: a synthetic attack raises alerts, a normal week almost none (R6, X4, I2).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use kiban_audit::{
    Action, Actor, Alert, AlertQueue, AuditConfig, AuditLog, CheckpointKey, EscalateTo, Event, JobKind, ManualClock,
    Object, ObjectKind, Outcome, Role, Rules, Severity,
};

/// splitmix64: a tiny deterministic generator, so the weeks are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A local (JST) time as UTC.
fn jst(day: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(hour, minute, 0).unwrap()) - Duration::hours(9)
}

fn ev(id: &str, role: Role, source: &str, action: Action, kind: ObjectKind, object: &str) -> Event {
    Event::new(Actor::new(id, role), source, action, Object::new(kind, object))
}

/// An account's daily pattern: id, role, operations per day, volume per operation, action, object kind.
type Worker = (String, Role, (u64, u64), (u64, u64), Action, ObjectKind);

/// One day of ordinary work: staff in office hours, users, and kiban's night jobs.
fn normal_day(rng: &mut Rng, day: NaiveDate, out: &mut Vec<(DateTime<Utc>, Event)>) {
    let working = day.format("%u").to_string().parse::<u32>().unwrap() <= 5;
    // Night jobs run every day: processing reads, a linkage job reads the vault, a release is built.
    out.push((
        jst(day, 1, 10),
        ev("kiban", Role::System, "kiban", Action::Read, ObjectKind::Clinical, "clinical")
            .volume(2_000_000)
            .job(JobKind::Processing, format!("proc-{day}")),
    ));
    out.push((
        jst(day, 2, 0),
        ev("kiban", Role::System, "kiban", Action::Read, ObjectKind::Identity, "vault")
            .volume(rng.range(1_000, 9_000))
            .job(JobKind::Linkage, format!("link-{day}")),
    ));
    if !working {
        return;
    }
    out.push((
        jst(day, 3, 0),
        ev("kiban", Role::System, "kiban", Action::Export, ObjectKind::Release, "release")
            .volume(300_000)
            .job(JobKind::Release, format!("rel-{day}")),
    ));
    let staff: Vec<Worker> = (0..6)
        .map(|i| {
            (format!("ops-{i:02}"), Role::IntakeOperator, (20, 40), (500, 2_000), Action::Write, ObjectKind::Clinical)
        })
        .chain((0..4).map(|i| {
            (
                format!("eng-{i:02}"),
                Role::ProcessingEngineer,
                (10, 30),
                (1_000, 5_000),
                Action::Read,
                ObjectKind::Clinical,
            )
        }))
        .chain(
            (0..3).map(|i| {
                (format!("sec-{i:02}"), Role::Secretariat, (10, 20), (1, 1), Action::Write, ObjectKind::Ledger)
            }),
        )
        .chain((0..5).map(|i| {
            (format!("u1-{i:02}"), Role::UserType1, (5, 15), (100, 3_000), Action::Read, ObjectKind::Clinical)
        }))
        .chain((0..4).map(|i| {
            (format!("u2-{i:02}"), Role::UserType2, (5, 20), (100, 2_000), Action::Read, ObjectKind::Clinical)
        }))
        .collect();
    for (id, role, (nlo, nhi), (vlo, vhi), action, kind) in staff {
        let source = format!("term-{id}");
        let start = rng.range(8 * 60 + 30, 9 * 60 + 30);
        let end =
            if rng.range(0, 9) == 0 { rng.range(19 * 60, 19 * 60 + 45) } else { rng.range(17 * 60, 18 * 60 + 30) };
        let t = |m: u64| jst(day, (m / 60) as u32, (m % 60) as u32);
        if rng.range(0, 14) == 0 {
            out.push((
                t(start - 1),
                ev(&id, role, &source, Action::Login, ObjectKind::Session, &id).outcome(Outcome::Failure),
            ));
        }
        out.push((t(start), ev(&id, role, &source, Action::Login, ObjectKind::Session, &id)));
        for _ in 0..rng.range(nlo, nhi) {
            let m = rng.range(start + 1, end - 1);
            let object = format!("ds-{}", rng.range(1, 40));
            out.push((t(m), ev(&id, role, &source, action, kind, &object).volume(rng.range(vlo, vhi))));
        }
        out.push((t(end), ev(&id, role, &source, Action::Logout, ObjectKind::Session, &id).volume((end - start) * 60)));
    }
}

/// The attack, on the Wednesday of the third week, on top of an ordinary day.
fn attack(day: NaiveDate, out: &mut Vec<(DateTime<Utc>, Event)>) {
    let eng = |action, kind, object: &str| ev("eng-03", Role::ProcessingEngineer, "term-eng-03", action, kind, object);
    // An insider at 02:30, then a day of reading far above their baseline, then a bulk export.
    out.push((jst(day, 2, 30), eng(Action::Read, ObjectKind::Clinical, "ds-7").volume(4_000)));
    for i in 0..300 {
        out.push((
            jst(day, 10, 0) + Duration::seconds(60 * i),
            eng(Action::Read, ObjectKind::Clinical, "ds-7").volume(20_000),
        ));
    }
    out.push((jst(day, 16, 0), eng(Action::Export, ObjectKind::Clinical, "ds-7").volume(500_000)));
    // Password guessing from outside.
    for i in 0..12 {
        out.push((
            jst(day, 12, 0) + Duration::seconds(15 * i),
            ev("admin", Role::SecurityOfficer, "203.0.113.9", Action::Login, ObjectKind::Session, "admin")
                .outcome(Outcome::Failure),
        ));
    }
    // An operator browsing the identity vault with no linkage job.
    out.push((
        jst(day, 11, 5),
        ev("ops-02", Role::IntakeOperator, "term-ops-02", Action::Read, ObjectKind::Identity, "vault").volume(50),
    ));
    // A Type II user trying to download (refused by the server, recorded anyway).
    out.push((
        jst(day, 14, 0),
        ev("u2-01", Role::UserType2, "term-u2-01", Action::Download, ObjectKind::Release, "rel-2026-04-20")
            .volume(80_000)
            .outcome(Outcome::Denied),
    ));
    // A Type II handler in a Visiting workspace: a huge result, a burst of scripted queries, a query
    // naming another workspace's table, and paging through row-level results.
    let u2 = |object: String| ev("u2-02", Role::UserType2, "term-u2-02", Action::Read, ObjectKind::Clinical, &object);
    out.push((jst(day, 15, 0), u2("ws-query/ws-1/res-big".into()).volume(60_000)));
    for i in 0..130 {
        out.push((jst(day, 15, 10) + Duration::seconds(4 * i), u2(format!("ws-query/ws-1/res-{i}")).volume(10)));
    }
    out.push((jst(day, 15, 30), u2("ws-query/ws-1/refused".into()).outcome(Outcome::Denied)));
    for i in 0..30 {
        out.push((jst(day, 15, 40) + Duration::seconds(10 * i), u2("ws-rows/ws-1/res-7".into()).volume(20)));
    }
}

/// Three weeks (two to learn baselines, one to judge) through a real log with a fast-forwarded clock.
fn replay(with_attack: bool) -> Vec<Alert> {
    let dir = tempfile::tempdir().unwrap();
    let first = NaiveDate::from_ymd_opt(2026, 4, 6).unwrap(); // a Monday
    let clock = Arc::new(ManualClock::new(jst(first, 0, 0)));
    let cfg = AuditConfig { fsync: false, clock: clock.clone(), ..AuditConfig::default() };
    let log = AuditLog::open_with(dir.path(), CheckpointKey::from_bytes(&[1; 32]).unwrap(), cfg).unwrap();
    let mut rng = Rng(2026);
    for d in 0..21 {
        let day = first + Duration::days(d);
        let mut events = Vec::new();
        normal_day(&mut rng, day, &mut events);
        if with_attack && d == 16 {
            attack(day, &mut events);
        }
        events.sort_by_key(|(t, _)| *t);
        for (t, e) in events {
            clock.set(t);
            log.append(e).unwrap();
        }
    }
    log.flush().unwrap();
    let alerts = log.alerts();
    let reopened = AlertQueue::open(dir.path().join("alerts.jsonl")).unwrap();
    assert_eq!(reopened.alerts(), &alerts[..], "the queue is persisted as JSON lines");
    alerts
}

#[test]
fn r6_synthetic_attack_raises_an_alert_on_every_rule_and_a_normal_week_almost_none() {
    let normal = replay(false);
    assert!(normal.len() <= 1, "a normal three weeks raised {} alerts: {normal:#?}", normal.len());

    let alerts = replay(true);
    eprintln!("normal: {} alerts; attack: {} alerts", normal.len(), alerts.len());
    for a in &alerts {
        eprintln!("  {:?} {} {} {}: {}", a.severity, a.rule, a.actor.id, a.raised_at, a.message);
    }
    let fired: BTreeSet<&str> = alerts.iter().map(|a| a.rule.as_str()).collect();
    for rule in [
        "volume-above-baseline",
        "frequency-above-baseline",
        "out-of-hours",
        "bulk-export",
        "repeated-login-failures",
        "vault-outside-linkage",
        "type2-take-out",
        "workspace-result-volume",
        "workspace-query-frequency",
        "workspace-outside-reach",
        "workspace-bulk-row-views",
    ] {
        assert!(fired.contains(rule), "rule {rule} did not fire; fired: {fired:?}");
    }
    let by = |rule: &str| alerts.iter().find(|a| a.rule == rule).unwrap();
    assert_eq!(by("volume-above-baseline").actor.id, "eng-03");
    assert_eq!(by("out-of-hours").actor.id, "eng-03");
    assert_eq!(by("repeated-login-failures").source, "203.0.113.9");
    assert_eq!(by("vault-outside-linkage").actor.id, "ops-02");
    let t2 = by("type2-take-out");
    assert_eq!(
        (t2.actor.id.as_str(), t2.severity, t2.escalate_to),
        ("u2-01", Severity::Critical, EscalateTo::ResponsibleOfficer)
    );
    assert_eq!(t2.escalate_by - t2.raised_at, Duration::hours(1), "I2: the deadline follows the rule");
    // Every attack alert is about the attack, not about ordinary traffic.
    for rule in ["workspace-result-volume", "workspace-query-frequency", "workspace-outside-reach"] {
        assert_eq!(by(rule).actor.id, "u2-02", "{rule}");
    }
    let attackers = ["eng-03", "admin", "ops-02", "u2-01", "u2-02"];
    let stray: Vec<_> = alerts.iter().filter(|a| !attackers.contains(&a.actor.id.as_str())).collect();
    assert!(stray.len() <= 1, "alerts about ordinary users: {stray:#?}");
}

#[test]
fn r6_rules_file_is_the_builtin_and_every_rule_fires_on_the_attack() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/monitoring.toml")).unwrap();
    let rules = Rules::from_toml(&text).unwrap();
    assert_eq!(rules, Rules::builtin());
    let fired: BTreeSet<String> = replay(true).into_iter().map(|a| a.rule).collect();
    for r in &rules.rules {
        if r.id != "audit-integrity" {
            assert!(fired.contains(&r.id), "rule {} never fires on the synthetic attack", r.id);
        }
    }
}

#[test]
fn x4_rules_are_tunable_and_typos_are_rejected() {
    let tuned = Rules::builtin();
    let mut text = toml::to_string(&tuned).unwrap();
    assert_eq!(Rules::from_toml(&text).unwrap(), tuned, "rules round-trip through TOML");
    text = text.replace("min_volume = 100000", "min_volume = 10");
    let rules = Rules::from_toml(&text).unwrap();
    assert_ne!(rules, tuned);
    let typo = Rules::builtin_text_with(
        "check = { kind = \"bulk\", min_volume = 100000 }",
        "check = { kind = \"bulk\", min_volum = 1 }",
    );
    assert!(Rules::from_toml(&typo).is_err(), "an unknown field is an error, not a silently ignored rule");
    let bad_role = Rules::builtin_text_with("roles = [\"user_type2\"]", "roles = [\"user_type3\"]");
    assert!(Rules::from_toml(&bad_role).is_err());
}

trait BuiltinText {
    fn builtin_text_with(from: &str, to: &str) -> String;
}

impl BuiltinText for Rules {
    fn builtin_text_with(from: &str, to: &str) -> String {
        assert!(kiban_audit::monitor::BUILTIN_RULES.contains(from), "{from}");
        kiban_audit::monitor::BUILTIN_RULES.replace(from, to)
    }
}

#[test]
fn i2_alerts_are_acknowledged_and_overdue_ones_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let mut q = AlertQueue::open(path.clone()).unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 4, 6, 3, 0, 0).unwrap();
    let alert = |h| Alert {
        id: 0,
        rule: "bulk-export".into(),
        requirement: "R6".into(),
        severity: Severity::High,
        raised_at: t0,
        escalate_to: EscalateTo::SecurityOfficer,
        escalate_by: t0 + Duration::hours(h),
        actor: Actor::new("eng-01", Role::ProcessingEngineer),
        source: "t".into(),
        seq: kiban_audit::Seq(9),
        message: "m".into(),
    };
    assert_eq!(q.push(alert(1)), 1);
    assert_eq!(q.push(alert(8)), 2);
    let officer = Actor::new("so-1", Role::SecurityOfficer);
    assert!(q.acknowledge(1, &officer, t0));
    assert!(!q.acknowledge(7, &officer, t0));
    q.flush(false).unwrap();
    let q = AlertQueue::open(path).unwrap();
    assert_eq!(q.open_alerts().iter().map(|a| a.id).collect::<Vec<_>>(), vec![2]);
    assert!(q.overdue(t0 + Duration::hours(2)).is_empty(), "alert 1 is acknowledged, alert 2 not yet due");
    assert_eq!(q.overdue(t0 + Duration::hours(9)).len(), 1);
}
