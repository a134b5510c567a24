//! An attacker with write access to the audit directory but without the checkpoint key (X6).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use kiban_audit::{
    Action, Actor, AuditConfig, AuditError, AuditLog, CheckpointKey, Event, ManualClock, Object, ObjectKind,
    ProblemKind, Role, VerifyReport, verify_files,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn key() -> CheckpointKey {
    CheckpointKey::from_bytes(&[0x5a; 32]).unwrap()
}

/// A log of `n` events in one segment, flushed every 10 entries (so checkpoints every 10).
fn build(dir: &Path, n: u64) {
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 4, 6, 1, 0, 0).unwrap()));
    let cfg = AuditConfig { batch_entries: 10, fsync: false, clock: clock.clone(), ..AuditConfig::default() };
    let log = AuditLog::open_with(dir, key(), cfg).unwrap();
    for i in 0..n {
        clock.advance(Duration::seconds(7));
        let ev = Event::new(
            Actor::new(format!("eng-{}", i % 3), Role::ProcessingEngineer),
            "term-1",
            Action::Read,
            Object::new(ObjectKind::Clinical, format!("ds-{i}")),
        )
        .volume(100 + i);
        log.append(ev).unwrap();
    }
    log.flush().unwrap();
}

fn segment(dir: &Path) -> PathBuf {
    let mut names: Vec<_> = fs::read_dir(dir.join("segments")).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names.remove(0)
}

fn lines(path: &Path) -> Vec<Vec<u8>> {
    fs::read(path).unwrap().split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    fs::write(path, lines.concat()).unwrap();
}

fn offset_of(lines: &[Vec<u8>], index: usize) -> u64 {
    lines[..index].iter().map(|l| l.len() as u64).sum()
}

fn verify(dir: &Path) -> VerifyReport {
    verify_files(dir, None, &key(), None).unwrap()
}

/// A syntactically perfect entry line for `entry` chained on `prev`, as an attacker can make without the key.
fn forge_line(prev: &[u8; 32], entry: &str) -> (Vec<u8>, [u8; 32]) {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(entry.as_bytes());
    let hash: [u8; 32] = h.finalize().into();
    let line = format!("{{\"hash\":\"{}\",\"prev\":\"{}\",\"entry\":{entry}}}\n", hex::encode(hash), hex::encode(prev));
    (line.into_bytes(), hash)
}

fn stored_hash(line: &[u8]) -> [u8; 32] {
    let mut h = [0u8; 32];
    hex::decode_to_slice(&line[9..73], &mut h).unwrap();
    h
}

fn entry_json(line: &[u8]) -> String {
    String::from_utf8(line[157..line.len() - 2].to_vec()).unwrap()
}

#[test]
fn x6_untouched_log_verifies_intact() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 55);
    let r = verify(dir.path());
    assert!(r.is_intact(), "{}", r.summary());
    assert_eq!(r.entries, 55);
    assert_eq!(r.last_seq, 55);
    assert_eq!(r.checkpoints, 6, "one per batch of 10 and one at the final flush");
    assert_eq!(r.unsealed, 0);
    assert!(r.summary().starts_with("監査ログ検証: 異常なし"));
}

#[test]
fn x6_edited_entry_is_detected_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30);
    let seg = segment(dir.path());
    let mut ls = lines(&seg);
    let text = String::from_utf8(ls[11].clone()).unwrap().replace("\"volume\":111", "\"volume\":999");
    assert_ne!(text.as_bytes(), &ls[11][..], "the edit applies");
    ls[11] = text.into_bytes();
    write_lines(&seg, &ls);
    let r = verify(dir.path());
    let p = &r.problems[0];
    assert_eq!((p.kind, p.seq, p.offset), (ProblemKind::Altered, Some(12), offset_of(&ls, 11)), "{}", r.summary());
    assert!(p.file.starts_with("seg-"));
    assert!(r.summary().starts_with("監査ログ検証: 改ざんの疑い"));
}

#[test]
fn x6_edited_entry_with_recomputed_hash_is_detected_by_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30);
    let seg = segment(dir.path());
    let mut ls = lines(&seg);
    let prev = stored_hash(&ls[3]);
    let entry = entry_json(&ls[4]).replace("\"volume\":104", "\"volume\":1");
    ls[4] = forge_line(&prev, &entry).0;
    write_lines(&seg, &ls);
    let r = verify(dir.path());
    assert!(
        r.problems.iter().any(|p| p.kind == ProblemKind::Altered && p.seq == Some(5) && p.offset == offset_of(&ls, 4)),
        "{}",
        r.summary()
    );
}

#[test]
fn x6_deleted_entry_is_detected_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30);
    let seg = segment(dir.path());
    let mut ls = lines(&seg);
    ls.remove(7);
    write_lines(&seg, &ls);
    let r = verify(dir.path());
    assert_eq!(r.problems.len(), 1, "{}", r.summary());
    let p = &r.problems[0];
    assert_eq!((p.kind, p.seq, p.offset), (ProblemKind::Deleted, Some(8), offset_of(&ls, 7)));
}

#[test]
fn x6_inserted_entry_is_detected_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30);
    let seg = segment(dir.path());
    let mut ls = lines(&seg);
    // A forged entry that chains correctly onto seq 9 and claims seq 10.
    let prev = stored_hash(&ls[8]);
    let entry = entry_json(&ls[9]).replace("ds-9", "ds-forged");
    let (forged, _) = forge_line(&prev, &entry);
    ls.insert(9, forged);
    write_lines(&seg, &ls);
    let r = verify(dir.path());
    assert!(!r.is_intact());
    // The original seq 10 now appears a second time, and the forged line is named as the one nothing chains to.
    assert!(r.problems.iter().any(|p| p.kind == ProblemKind::Inserted && p.seq == Some(10)), "{}", r.summary());
    assert!(
        r.problems.iter().any(|p| p.seq == Some(10) && p.offset == offset_of(&ls, 9)),
        "the forged line's offset is named: {}",
        r.summary()
    );
}

#[test]
fn x6_copied_entry_is_detected_as_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30);
    let seg = segment(dir.path());
    let mut ls = lines(&seg);
    let copy = ls[3].clone();
    ls.insert(20, copy);
    write_lines(&seg, &ls);
    let r = verify(dir.path());
    let p = &r.problems[0];
    assert_eq!((p.kind, p.seq, p.offset), (ProblemKind::Duplicated, Some(4), offset_of(&ls, 20)), "{}", r.summary());
}

#[test]
fn x6_reordered_entries_are_detected_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30);
    let seg = segment(dir.path());
    let mut ls = lines(&seg);
    ls.swap(14, 15);
    write_lines(&seg, &ls);
    let r = verify(dir.path());
    assert_eq!(r.problems.len(), 1, "{}", r.summary());
    let p = &r.problems[0];
    assert_eq!((p.kind, p.seq, p.offset), (ProblemKind::Reordered, Some(15), offset_of(&ls, 15)));
}

#[test]
fn x6_truncated_tail_is_detected_by_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30);
    let seg = segment(dir.path());
    let mut ls = lines(&seg);
    ls.truncate(24);
    write_lines(&seg, &ls);
    let r = verify(dir.path());
    assert_eq!(r.problems.len(), 1, "{}", r.summary());
    let p = &r.problems[0];
    assert_eq!((p.kind, p.seq, p.offset), (ProblemKind::Truncated, Some(25), offset_of(&ls, 24)));
    assert!(p.detail.contains("signed seq 30"), "{}", p.detail);
}

#[test]
fn x6_open_refuses_a_log_behind_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30);
    let seg = segment(dir.path());
    let mut ls = lines(&seg);
    ls.truncate(24);
    write_lines(&seg, &ls);
    match AuditLog::open(dir.path(), key()) {
        Err(AuditError::BehindCheckpoint { checkpoint_seq: 30, log_seq: 24, .. }) => {}
        other => panic!("expected BehindCheckpoint, got {other:?}"),
    }
}

#[test]
fn x6_rewritten_chain_is_caught_by_the_signed_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30);
    let seg = segment(dir.path());
    let mut ls = lines(&seg);
    // The attacker edits seq 13 and recomputes every later hash: the chain is self-consistent again.
    let mut prev = stored_hash(&ls[11]);
    for (i, line) in ls.iter_mut().enumerate().skip(12) {
        let mut entry = entry_json(line);
        if i == 12 {
            entry = entry.replace("ds-12", "ds-hidden");
        }
        let (new, hash) = forge_line(&prev, &entry);
        *line = new;
        prev = hash;
    }
    write_lines(&seg, &ls);
    let r = verify(dir.path());
    let p = &r.problems[0];
    assert_eq!(p.kind, ProblemKind::CheckpointMismatch, "{}", r.summary());
    assert_eq!(p.seq, Some(20), "the first checkpoint after the change (seq 20) no longer matches");
    assert!(p.detail.contains("after seq 10 up to 20"), "{}", p.detail);
}

#[test]
fn x6_forged_or_foreign_checkpoints_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30);
    let other = CheckpointKey::from_bytes(&[0x11; 32]).unwrap();
    let r = verify_files(dir.path(), None, &other, None).unwrap();
    assert!(
        r.problems.iter().all(|p| p.kind == ProblemKind::CheckpointInvalid || p.kind == ProblemKind::CheckpointGap)
    );
    assert_eq!(r.checkpoints, 0);
    assert!(matches!(AuditLog::open(dir.path(), other), Err(AuditError::Tampered(_))));

    // Deleting a checkpoint line leaves a gap in the numbering.
    let cp = dir.path().join("checkpoints.jsonl");
    let mut cps = lines(&cp);
    cps.remove(1);
    write_lines(&cp, &cps);
    let r = verify(dir.path());
    assert_eq!(r.problems.len(), 1, "{}", r.summary());
    assert_eq!((r.problems[0].kind, r.problems[0].offset), (ProblemKind::CheckpointGap, offset_of(&cps, 1)));
}

#[test]
fn x6_a_deleted_segment_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig { segment_bytes: 4096, batch_entries: 5, fsync: false, ..AuditConfig::default() };
    let log = AuditLog::open_with(dir.path(), key(), cfg).unwrap();
    for i in 0..100 {
        log.append(Event::new(Actor::system(), "t", Action::Write, Object::new(ObjectKind::Ledger, format!("r{i}"))))
            .unwrap();
    }
    drop(log);
    let mut segs: Vec<_> = fs::read_dir(dir.path().join("segments")).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    assert!(segs.len() >= 4, "the small segment size rotates: {}", segs.len());
    assert!(verify(dir.path()).is_intact());
    fs::remove_file(&segs[1]).unwrap();
    let r = verify(dir.path());
    let p = &r.problems[0];
    assert_eq!(p.kind, ProblemKind::Deleted, "{}", r.summary());
    assert_eq!(p.file, segs[2].file_name().unwrap().to_str().unwrap());
    assert_eq!(p.offset, 0);
}

#[derive(Debug, Clone)]
enum Tamper {
    Edit(usize, u8),
    Delete(usize),
    Duplicate(usize, usize),
    Swap(usize),
    Truncate(usize),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (0usize..40, 0u8..10).prop_map(|(i, d)| Tamper::Edit(i, d)),
        (0usize..40).prop_map(Tamper::Delete),
        (0usize..40, 0usize..41).prop_map(|(i, j)| Tamper::Duplicate(i, j)),
        (0usize..39).prop_map(Tamper::Swap),
        (1usize..40).prop_map(Tamper::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// X6: any single tampering is detected, and a problem names the tampered line's seq or offset.
    #[test]
    fn x6_any_tampering_is_detected_and_located(t in tamper()) {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 40);
        let seg = segment(dir.path());
        let mut ls = lines(&seg);
        // (seq expected in a problem, line index whose offset is expected)
        let (seq, at) = match t {
            Tamper::Edit(i, d) => {
                // Change one digit of the volume field.
                let text = String::from_utf8(ls[i].clone()).unwrap();
                let pos = text.find("\"volume\":").unwrap() + 9;
                let mut b = text.into_bytes();
                let new = b'0' + d;
                prop_assume!(b[pos] != new);
                b[pos] = new;
                ls[i] = b;
                (i as u64 + 1, i)
            }
            Tamper::Delete(i) => { ls.remove(i); (i as u64 + 1, i) }
            Tamper::Duplicate(i, j) => {
                let c = ls[i].clone();
                ls.insert(j, c);
                (i as u64 + 1, j)
            }
            Tamper::Swap(i) => { ls.swap(i, i + 1); (i as u64 + 1, i + 1) }
            Tamper::Truncate(keep) => { ls.truncate(keep); (keep as u64 + 1, keep) }
        };
        write_lines(&seg, &ls);
        let r = verify(dir.path());
        prop_assert!(!r.is_intact());
        let off = offset_of(&ls, at);
        prop_assert!(
            r.problems.iter().any(|p| p.seq == Some(seq) || p.offset == off),
            "expected seq {} or offset {}: {}", seq, off, r.summary()
        );
    }
}
