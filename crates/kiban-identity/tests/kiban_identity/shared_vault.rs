//! Two processes on one vault (issue 4 item 6 with `kiban serve`): the write lock is taken per
//! write, and each store catches up with the other's appends before it writes or looks up.
//! The second process is this test binary again, run for `child_registers` with the vault's
//! directory in `KIBAN_TEST_SHARED_VAULT`.

use std::path::Path;

use kiban_identity::identity::IdentityInput;
use kiban_identity::keystore::KeyStore;
use kiban_identity::mpi::MatchConfig;
use kiban_identity::store::{IdentityStore, ReviewDecision};
use kiban_identity::vault::MemoryAudit;

const ENV: &str = "KIBAN_TEST_SHARED_VAULT";

/// An identity with an insurance card (number by `kana`), so the same person matches by the
/// deterministic rule across providers.
fn input(provider: &str, patient: &str, kana: &str, birth: &str) -> IdentityInput {
    IdentityInput {
        provider_id: provider.into(),
        patient_id: patient.into(),
        name_kanji: "山田 花子".into(),
        name_kana: kana.into(),
        sex: "2".into(),
        birth_date: birth.into(),
        insurer_number: "01130012".into(),
        card_symbol: "1234".into(),
        card_number: if kana.starts_with("ヤマダ") { "567" } else { "890" }.into(),
        card_branch: "01".into(),
        ..Default::default()
    }
}

fn open(dir: &Path) -> IdentityStore {
    let keys = KeyStore::open(&dir.join("keys"), None).unwrap();
    IdentityStore::open(&dir.join("identity"), keys, MatchConfig::default(), &MemoryAudit::default(), "t").unwrap()
}

/// The second process: registers two records while the first holds its store open.
#[test]
fn child_registers() {
    let Some(dir) = std::env::var_os(ENV) else { return };
    let mut s = open(Path::new(&dir));
    let a = MemoryAudit::default();
    let r = s
        .register(
            &a,
            "child",
            &[
                input("prov-b", "B1", "ヤマダ ハナコ", "1980-01-01"),
                input("prov-b", "B2", "スズキ イチロウ", "1975-05-05"),
            ],
        )
        .unwrap();
    assert!(r.iter().all(|r| r.is_ok()));
}

#[test]
fn l1_two_processes_share_one_vault_and_see_each_others_writes() {
    let t = tempfile::tempdir().unwrap();
    KeyStore::create(&t.path().join("keys")).unwrap();
    let a = MemoryAudit::default();
    // The first process (a server) opens the store and keeps it open.
    let mut server = open(t.path());
    let first = server.register(&a, "server", &[input("prov-a", "A1", "ヤマダ ハナコ", "1980-01-01")]).unwrap();
    let p = first[0].as_ref().unwrap().person;
    // The second process writes meanwhile; before, it would have failed with "vault in use".
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "shared_vault::child_registers", "--nocapture"])
        .env(ENV, t.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "child: {}", String::from_utf8_lossy(&out.stderr));
    // The server sees the child's records (matched to its person) and writes after them.
    let hits = server.person_keys(&a, "server", "prov-b", &["B1", "B2"]).unwrap();
    assert_eq!(hits[0], Some(p), "the child's record matched the server's person");
    assert!(hits[1].is_some_and(|k| k != p));
    assert_eq!(server.mpi().record_count(), 3);
    let more = server.register(&a, "server", &[input("prov-c", "C1", "スズキ イチロウ", "1975-05-05")]).unwrap();
    assert_eq!(more[0].as_ref().unwrap().record.0, 3, "record ids continue after the child's");
    assert_eq!(more[0].as_ref().unwrap().person, hits[1].unwrap(), "matched against the child's record");
    // A decision and an erasure by one handle are seen by a fresh open and by the other handle.
    let mut other = open(t.path());
    other.erase_source(&a, "cli", "P7", "prov-b", "B2").unwrap();
    if let Some(item) = server.review_queue().first().map(|i| i.id) {
        server.decide(&a, "server", item, ReviewDecision::KeepApart).unwrap();
    }
    assert_eq!(server.person_keys(&a, "server", "prov-b", &["B2"]).unwrap(), [None], "erased by the other process");
    let fresh = open(t.path());
    assert_eq!(fresh.mpi().record_count(), 4);
    assert_eq!(fresh.mpi().lookup("prov-b", "B2"), vec![]);
    assert_eq!(fresh.mpi().decisions().len(), server.mpi().decisions().len());
}
