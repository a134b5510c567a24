//! The log's behaviour apart from tampering: clock, audited reads, retention, crash recovery, sinks (X4, X6).

use std::fs;
use std::io::Write;
use std::sync::Arc;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use kiban_audit::{
    Action, Actor, AuditConfig, AuditError, AuditLog, AuditSink, CheckpointKey, Event, ManualClock, MemorySink, Object,
    ObjectKind, Outcome, Role, Seq, demo, verify_files, verify_summary,
};

fn key() -> CheckpointKey {
    CheckpointKey::from_bytes(&[0x42; 32]).unwrap()
}

fn read_event(i: u64) -> Event {
    Event::new(
        Actor::new("eng-01", Role::ProcessingEngineer),
        "term-3",
        Action::Read,
        Object::new(ObjectKind::Clinical, format!("ds-{i}")),
    )
}

#[test]
fn x6_entry_time_comes_from_the_trusted_clock() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 4, 6, 0, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let cfg = AuditConfig { fsync: false, clock: clock.clone(), rules: None, ..AuditConfig::default() };
    let log = AuditLog::open_with(dir.path(), key(), cfg).unwrap();
    assert_eq!(log.append(read_event(1)).unwrap(), Seq(1));
    clock.advance(Duration::days(400));
    assert_eq!(log.append(read_event(2)).unwrap(), Seq(2));
    let auditor = Actor::new("aud-1", Role::Auditor);
    let entries = log.read(&auditor, "term-9", Seq(1), Seq(2)).unwrap();
    assert_eq!(entries.iter().map(|e| e.at).collect::<Vec<_>>(), vec![t0, t0 + Duration::days(400)]);
    assert_eq!(entries[1].event, read_event(2));
}

#[test]
fn x6_reading_exporting_and_verifying_the_log_are_themselves_audited() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig { fsync: false, ..AuditConfig::default() };
    let log = AuditLog::open_with(dir.path(), key(), cfg).unwrap();
    for i in 0..5 {
        log.append(read_event(i)).unwrap();
    }
    let auditor = Actor::new("aud-1", Role::Auditor);
    log.read(&auditor, "term-9", Seq(1), Seq(3)).unwrap();
    let mut out = Vec::new();
    let exported = log.export(&auditor, "term-9", &mut out).unwrap();
    assert_eq!(exported, 7, "five events, the read and the export itself");
    let report = log.verify(&auditor, "term-9").unwrap();
    assert!(report.is_intact(), "{}", report.summary());
    let all = log.read(&auditor, "term-9", Seq(1), Seq(100)).unwrap();
    let audit_ops: Vec<(Action, &str)> = all
        .iter()
        .filter(|e| e.event.object.kind == ObjectKind::Audit)
        .map(|e| (e.event.action, e.event.actor.id.as_str()))
        .collect();
    assert_eq!(
        audit_ops,
        vec![(Action::Read, "aud-1"), (Action::Export, "aud-1"), (Action::Verify, "aud-1"), (Action::Read, "aud-1")]
    );
    assert!(out.ends_with(b"}\n") && out.iter().filter(|&&b| b == b'\n').count() == 7);
}

#[test]
fn x6_retention_is_kept_at_least_a_year_after_end_of_use() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), key()).unwrap();
    let meta = log.meta().unwrap();
    assert_eq!(meta.keep_until(), None, "no end of use yet: keep everything");
    let so = Actor::new("so-1", Role::SecurityOfficer);
    let meta = log.set_end_of_use(&so, "term-1", NaiveDate::from_ymd_opt(2027, 3, 31).unwrap()).unwrap();
    assert_eq!(meta.keep_until(), NaiveDate::from_ymd_opt(2028, 3, 31));
    assert_eq!(log.meta().unwrap(), meta, "persisted");
    assert_eq!(log.last_seq(), Seq(1), "setting retention is recorded");
}

#[test]
fn x6_a_torn_last_line_after_a_crash_is_cut_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || AuditConfig { fsync: false, rules: None, ..AuditConfig::default() };
    {
        let log = AuditLog::open_with(dir.path(), key(), cfg()).unwrap();
        for i in 0..3 {
            log.append(read_event(i)).unwrap();
        }
    }
    let seg = dir.path().join("segments/seg-00000000000000000001.jsonl");
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new().append(true).open(&seg).unwrap().write_all(b"{\"hash\":\"00").unwrap();
    let log = AuditLog::open_with(dir.path(), key(), cfg()).unwrap();
    assert_eq!(log.last_seq(), Seq(4), "three events and the note about the torn line");
    log.flush().unwrap();
    let r = verify_files(dir.path(), None, &key(), None).unwrap();
    assert!(r.is_intact(), "{}", r.summary());
    let note = log.read(&Actor::system(), "t", Seq(4), Seq(4)).unwrap().remove(0).event.note.unwrap();
    assert!(note.contains(&format!("torn last line of 11 bytes at offset {len}")), "{note}");
}

#[test]
fn x6_a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _log = AuditLog::open(dir.path(), key()).unwrap();
    assert!(matches!(AuditLog::open(dir.path(), key()), Err(AuditError::Locked { .. })));
    // The CLI still verifies read-only, and says the check was not recorded.
    let (report, text) = verify_summary(dir.path(), &key(), &Actor::new("aud-1", Role::Auditor), "cli").unwrap();
    assert!(report.is_intact());
    assert!(text.contains("not recorded"), "{text}");
}

#[test]
fn x4_concurrent_appends_form_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig { batch_entries: 64, fsync: false, segment_bytes: 64 << 10, ..AuditConfig::default() };
    let log = Arc::new(AuditLog::open_with(dir.path(), key(), cfg).unwrap());
    let sink: Arc<dyn AuditSink> = log.clone();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let sink = sink.clone();
            std::thread::spawn(move || {
                (0..500).map(|i| sink.record(read_event(t * 1000 + i)).unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<Seq> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 2000, "every append got its own sequence number");
    let r = log.verify(&Actor::system(), "test").unwrap();
    assert!(r.is_intact(), "{}", r.summary());
    assert!(r.segments > 1);
    assert_eq!(r.entries, 2001);
}

#[test]
fn x4_memory_sink_records_what_other_crates_emit() {
    fn release_package(sink: &dyn AuditSink) -> Result<(), AuditError> {
        sink.record(
            Event::new(Actor::system(), "release-gw", Action::Write, Object::new(ObjectKind::Release, "rel-1"))
                .outcome(Outcome::Success)
                .volume(1200),
        )?;
        Ok(())
    }
    let sink = MemorySink::new();
    release_package(&sink).unwrap();
    assert_eq!(sink.events().len(), 1);
    assert_eq!(sink.events()[0].object.id, "rel-1");
}

#[test]
fn x6_secrets_never_reach_errors_or_debug_output() {
    let secret = [0xabu8; 32];
    let k = CheckpointKey::from_bytes(&secret).unwrap();
    let shown = format!("{k:?}");
    assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    let short = CheckpointKey::from_hex("abababab").unwrap_err().to_string();
    assert!(!short.contains("abababab"), "{short}");
    assert!(CheckpointKey::from_hex("zz").is_err());
}

#[test]
fn x6_demo_appends_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let counts = demo(dir.path(), &key(), 2_000).unwrap();
    assert_eq!(counts.appended, 2_000);
    assert_eq!(counts.verified, 2_001, "the demo's events and the verification entry");
    assert_eq!(counts.problems, 0);
    let (report, text) = verify_summary(dir.path(), &key(), &Actor::new("aud-1", Role::Auditor), "cli").unwrap();
    assert!(report.is_intact());
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("監査ログ検証: 異常なし") && first.contains("2002"), "{first}");
    assert!(text.lines().nth(1).unwrap().starts_with("Audit log verified: intact."));
}
