//! Append and verification throughput of the audit log, against a plain JSON-lines writer and raw SHA-256.
//!
//! Run: `cargo bench -p kiban-audit --bench append` (KIBAN_AUDIT_BENCH_N sets the event count, default 3,000,000).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use kiban_audit::{
    Action, Actor, AuditConfig, AuditLog, CheckpointKey, Event, Object, ObjectKind, Role, Rules, verify_files,
};
use sha2::{Digest, Sha256};

fn event(i: u64) -> Event {
    const ROLES: [Role; 4] = [Role::IntakeOperator, Role::ProcessingEngineer, Role::UserType1, Role::UserType2];
    let (action, kind) = match i % 5 {
        0 => (Action::Write, ObjectKind::Clinical),
        1 | 2 => (Action::Read, ObjectKind::Clinical),
        3 => (Action::Write, ObjectKind::Ledger),
        _ => (Action::Read, ObjectKind::Release),
    };
    Event::new(
        Actor::new(format!("user-{:03}", i % 200), ROLES[(i % 4) as usize]),
        format!("10.0.{}.{}", i % 7, i % 250),
        action,
        Object::new(kind, format!("ds-2026-{:05}", i % 9973)),
    )
    .volume(i % 5000)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("segments")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

/// CPU seconds (user + system, all threads) of this process so far, from /proc (Linux); 0 elsewhere.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    // Fields 14 and 15 of the whole line are the 12th and 13th after the command name; ticks are 1/100 s.
    if f.len() > 12 { (f[11] + f[12]) / 100.0 } else { 0.0 }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "?".into(), |l| l.split_whitespace().next().unwrap_or("?").into())
}

fn rate(n: u64, secs: f64) -> String {
    format!("{:>12.0}", n as f64 / secs)
}

fn main() {
    let n: u64 = std::env::var("KIBAN_AUDIT_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(3_000_000);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let key = CheckpointKey::from_bytes(&[7; 32]).unwrap();
    println!("kiban-audit bench: {n} events, {} cores", std::thread::available_parallelism().map_or(1, |c| c.get()));
    println!("load average at start: {} (other work on the machine slows the wall-clock figures)", load());
    println!("{:<58} {:>12} {:>10} {:>10}", "measure", "events/s", "seconds", "cpu s");

    // Peer: a plain JSON-lines writer (no chain, no checkpoints, no fsync).
    let peer_dir = tempfile::tempdir_in(&base).unwrap();
    let (t, c) = (Instant::now(), cpu_secs());
    {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(peer_dir.path().join("plain.jsonl")).unwrap());
        for i in 0..n {
            serde_json::to_writer(&mut w, &event(i)).unwrap();
            w.write_all(b"\n").unwrap();
        }
        w.flush().unwrap();
    }
    let peer_append = t.elapsed().as_secs_f64();
    println!(
        "{:<58} {} {:>10.2} {:>10.2}",
        "peer: plain serde_json lines, BufWriter, no fsync",
        rate(n, peer_append),
        peer_append,
        cpu_secs() - c
    );

    let mut results = Vec::new();
    for (label, rules) in [
        ("kiban-audit append, chain + fsync/4096 + checkpoints", None),
        ("… same, with the built-in monitoring rules", Some(Rules::builtin())),
    ] {
        let dir = tempfile::tempdir_in(&base).unwrap();
        let cfg = AuditConfig { rules, ..AuditConfig::default() };
        let log = AuditLog::open_with(dir.path(), key.clone(), cfg).unwrap();
        let (t, c) = (Instant::now(), cpu_secs());
        for i in 0..n {
            log.append(event(i)).unwrap();
        }
        log.flush().unwrap();
        let secs = t.elapsed().as_secs_f64();
        drop(log);
        println!("{label:<58} {} {secs:>10.2} {:>10.2}", rate(n, secs), cpu_secs() - c);
        results.push((dir, secs));
    }
    let (dir, append_secs) = results.remove(0);
    let bytes = dir_size(dir.path());

    // Verification (cold-ish: the files were just written, so mostly in the page cache).
    let (t, c) = (Instant::now(), cpu_secs());
    let report = verify_files(dir.path(), None, &key, None).unwrap();
    let verify_secs = t.elapsed().as_secs_f64();
    let verify_cpu = cpu_secs() - c;
    assert!(report.is_intact(), "{}", report.summary());
    assert_eq!(report.entries, n);
    println!(
        "{:<58} {} {verify_secs:>10.2} {verify_cpu:>10.2}",
        format!("kiban-audit verify ({} segments, {} MB)", report.segments, bytes >> 20),
        rate(n, verify_secs)
    );

    // Peer: raw SHA-256 over the same bytes, one core, no parsing (the floor for one thread).
    let (t, c) = (Instant::now(), cpu_secs());
    let mut h = Sha256::new();
    for e in std::fs::read_dir(dir.path().join("segments")).unwrap() {
        h.update(std::fs::read(e.unwrap().path()).unwrap());
    }
    let _ = h.finalize();
    let sha_secs = t.elapsed().as_secs_f64();
    println!(
        "{:<58} {} {sha_secs:>10.2} {:>10.2}",
        "peer: sha256 of the segment bytes, one thread",
        rate(n, sha_secs),
        cpu_secs() - c
    );

    let per_event = bytes as f64 / n as f64;
    println!();
    println!("bytes per entry on disk:                 {per_event:.0}");
    println!("append vs plain JSON lines:              {:.2}x the time", append_secs / peer_append);
    println!("verify vs raw sha256 of the same bytes:  {:.2}x the time", verify_secs / sha_secs);
    let v100m = 100e6 / (n as f64 / verify_secs);
    println!(
        "verify 100 million events (extrapolated): {:.0} s ({:.1} min; target < 120 s), {:.1} GB of segments",
        v100m,
        v100m / 60.0,
        per_event * 100e6 / 1e9
    );
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()).min(8) as f64;
    let idle = 100e6 * verify_cpu / n as f64 / cores;
    println!("verify 100 million events on {cores} idle cores (from CPU time): {idle:.0} s ({:.1} min)", idle / 60.0);
    println!("load average at end: {}", load());
    println!(
        "append target >= 100,000 events/s: {}",
        if n as f64 / append_secs >= 100_000.0 { "met" } else { "NOT met" }
    );
}
