//! Retention purge (C5 with P1, P4, P6, C2 retention), documents, backups and figures (B1, B2, X7)
//! on every backend.

use chrono::{NaiveDate, TimeZone, Utc};
use kiban_registry::Registry;
use kiban_registry::business::BackupRecord;
use kiban_registry::records::*;
use sha2::{Digest, Sha256};

use crate::fresh_backends;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

async fn ready(url: &str) -> Registry {
    let reg = Registry::open(url).await.unwrap();
    reg.migrate().await.unwrap();
    reg.register_provider("prov-a", "合成病院A（架空）", 13).await.unwrap();
    let fl = reg
        .file_provider(&FilingInput {
            provider_id: "prov-a".into(),
            kind: FilingKind::Filing,
            filed_on: d("2024-01-10"),
            items: [("提供する医療情報の項目".to_string(), "診療録".to_string())].into_iter().collect(),
            update_method: "月次".into(),
            planned_start: d("2024-03-01"),
            waiting_days: 30,
            transmission_method: "専用線 SFTP".into(),
            security_checked_on: Some(d("2024-02-01")),
            security_note: "確認済".into(),
            acquisition_record: "診療の過程で取得".into(),
        })
        .await
        .unwrap();
    reg.publish_filing(&fl.filing_id, d("2024-01-20"), d("2024-01-25"), "https://example.invalid/a").await.unwrap();
    reg
}

fn notice(patient: &str, on: &str) -> NoticeInput {
    NoticeInput {
        provider_id: "prov-a".into(),
        patient_id: patient.into(),
        notice_date: d(on),
        method: NoticeMethod::WrittenAtVisit,
        recipient: Recipient::Patient,
        guardian_name: None,
        patient_birth_date: None,
        lacks_capacity: false,
        text_version: "v1".into(),
        corrects: None,
        source: "test".into(),
    }
}

async fn count(reg: &Registry, table: &str) -> i64 {
    match table {
        "notices" => {
            let mut n = 0;
            for p in ["p-1", "p-2"] {
                n += reg.notices_of("prov-a", p).await.unwrap().len() as i64;
            }
            n
        }
        "optouts" => reg.optouts_of("prov-a", "p-3").await.unwrap().len() as i64,
        "deletion_records" => reg.deletions_of("prov-a", "p-4").await.unwrap(),
        _ => unreachable!("{table}"),
    }
}

#[tokio::test]
async fn c5_retention_run_purges_only_expired_records_and_records_each_purge() {
    for f in fresh_backends().await {
        let reg = ready(&f.url).await;
        let old = reg.add_notice(&notice("p-1", "2024-02-01")).await.unwrap();
        let newer = reg.add_notice(&notice("p-1", "2025-01-10")).await.unwrap();
        let only = reg.add_notice(&notice("p-2", "2024-03-01")).await.unwrap();
        let (_ev, conf) = reg
            .add_optout(&OptOutInput {
                provider_id: "prov-a".into(),
                patient_id: "p-3".into(),
                requester_kind: RequesterKind::Patient,
                requester_name: "合成 花子".into(),
                requester_detail: "東京都千代田区（架空）".into(),
                channel: Channel::Written,
                person_deceased: false,
                received_at: Some(Utc.from_utc_datetime(&d("2025-06-01").and_hms_opt(3, 0, 0).unwrap())),
                source: "test".into(),
            })
            .await
            .unwrap();
        let del = reg
            .record_deletion(
                "prov-a",
                "p-4",
                d("2025-06-01"),
                "request",
                serde_json::json!({"rows": 3}),
                vec![],
                "erased",
            )
            .await
            .unwrap();
        assert_eq!(count(&reg, "notices").await, 3);

        // The day before the oldest notice's end: nothing goes.
        let r = reg.purge_expired(d("2027-01-31"), "test", false).await.unwrap();
        assert_eq!(r.total_purged(), 0, "{r:?}");
        // 2027-03-15: the superseded notice of p-1 goes; p-2's only notice (end 2027-03-01) is in force
        // and held, and so are the provider's current filing and its publication.
        let r = reg.purge_expired(d("2027-03-15"), "test", false).await.unwrap();
        let k = |kind: &str| r.kinds.iter().find(|k| k.kind == kind).unwrap().clone();
        assert_eq!(k("notice").ids, vec![old.notice_id.clone()]);
        assert_eq!(k("notice").held, 1, "p-2's only notice is in force");
        assert_eq!(k("notice").ids_sha256, hex::encode(Sha256::digest(format!("{}\n", old.notice_id))));
        assert_eq!((k("provider_filing").purged, k("provider_filing").held), (0, 1));
        assert_eq!((k("provider_publication").purged, k("provider_publication").held), (0, 1));
        assert_eq!(r.total_purged(), 1);
        let left: Vec<String> =
            reg.notices_of("prov-a", "p-1").await.unwrap().into_iter().map(|n| n.notice_id).collect();
        assert_eq!(left, vec![newer.notice_id.clone()]);
        assert_eq!(reg.notices_of("prov-a", "p-2").await.unwrap()[0].notice_id, only.notice_id);

        // Confirmation and deletion record end 3 years after today (issue / deletion day).
        let end = conf.retention_end.max(del.retention_end);
        let before = end.pred_opt().unwrap();
        let r = reg.purge_expired(before, "test", false).await.unwrap();
        assert_eq!(r.total_purged(), 0, "a day early nothing goes: {r:?}");
        let dry = reg.purge_expired(end, "test", true).await.unwrap();
        assert_eq!(dry.total_purged(), 2);
        assert_eq!(count(&reg, "deletion_records").await, 1, "a dry run deletes nothing");
        let r = reg.purge_expired(end, "test", false).await.unwrap();
        let k = |kind: &str| r.kinds.iter().find(|k| k.kind == kind).unwrap().clone();
        assert_eq!(k("optout_confirmation").ids, vec![conf.confirmation_id.clone()]);
        assert_eq!(k("deletion_record").ids, vec![del.deletion_id.clone()]);
        assert_eq!(count(&reg, "deletion_records").await, 0);
        assert_eq!(count(&reg, "optouts").await, 1, "an opt-out stays in force: never purged");
        assert_eq!(count(&reg, "notices").await, 2, "latest notices stay in force");
        assert!(reg.purge_expired(end, "test", false).await.unwrap().total_purged() == 0, "idempotent");

        // Every non-dry run left one purge record per purgeable kind; the dry run none.
        let recs = reg.purge_records().await.unwrap();
        let runs: std::collections::BTreeSet<&str> = recs.iter().map(|p| p.run_id.as_str()).collect();
        assert_eq!(runs.len(), 5);
        assert_eq!(recs.iter().map(|p| p.purged).sum::<i64>(), 3);
        assert!(recs.iter().any(|p| p.kind == "notice" && p.purged == 1 && p.as_of == "2027-03-15"));
        reg.close().await;
    }
}

#[tokio::test]
async fn b1_b2_x7_documents_backups_and_year_figures_round_trip() {
    for f in fresh_backends().await {
        let reg = ready(&f.url).await;
        assert!(reg.table_exists("providers").await.unwrap());
        assert!(!reg.table_exists("releases").await.unwrap());
        assert!(reg.table_exists("bad name; drop").await.is_err());
        let doc = reg
            .add_document(
                "business",
                "plan",
                Some(2026),
                "plan.pdf",
                "documents/business/2026/x-plan.pdf",
                "ab",
                10,
                Some(d("2026-03-20")),
                None,
                "t",
            )
            .await
            .unwrap();
        assert!(reg.add_document("other", "x", None, "a", "b", "c", 1, None, None, "t").await.is_err());
        assert_eq!(reg.documents("business").await.unwrap(), vec![doc]);
        assert!(reg.documents("criterion").await.unwrap().is_empty());
        assert!(reg.last_backup().await.unwrap().is_none());
        let b = BackupRecord {
            backup_id: "backup-1".into(),
            created_at: "2026-11-01T00:00:00Z".into(),
            file_name: "k.bak".into(),
            sha256: "00".repeat(32),
            size_bytes: 1234,
            chunks: 1,
            backend: "sqlite".into(),
        };
        reg.record_backup(&b).await.unwrap();
        reg.record_backup(&BackupRecord {
            backup_id: "backup-0".into(),
            created_at: "2026-10-01T00:00:00Z".into(),
            ..b.clone()
        })
        .await
        .unwrap();
        assert_eq!(reg.last_backup().await.unwrap(), Some(b));
        reg.add_notice(&notice("p-1", "2026-05-01")).await.unwrap();
        let fig = reg.year_figures(2026).await.unwrap();
        assert_eq!((fig.providers, fig.providers_published, fig.releases), (1, 1, 0));
        assert!(fig.unknown.contains(&"releases".to_string()), "{fig:?}");
        let ev = reg.evidence(d("2026-11-21")).await.unwrap();
        assert_eq!((ev.providers, ev.providers_security_checked), (1, 1));
        assert!(ev.accounts_present);
        assert_eq!(ev.committee_members, None, "no roster yet");
        // R1 is checked in full, not by size: five men, all internal, break three rules.
        let mut roster = kiban_registry::review::committee::sample_committee(5);
        for m in &mut roster {
            m.sex = kiban_model::person::Sex::Male;
            m.external = false;
        }
        for m in &roster {
            reg.add_committee_member(m).await.unwrap();
        }
        let ev = reg.evidence(d("2026-11-21")).await.unwrap();
        assert_eq!(ev.committee_members, Some(5));
        let text = ev.committee_problems.join("\n");
        assert!(
            text.contains("both sexes") && text.contains("officers or employees") && ev.committee_problems.len() == 2,
            "{text}"
        );
        let good = kiban_registry::review::committee::sample_committee(6);
        for m in &good {
            reg.add_committee_member(m).await.unwrap();
        }
        let ev = reg.evidence(d("2026-11-21")).await.unwrap();
        assert!(ev.committee_problems.is_empty(), "{:?}", ev.committee_problems);
        reg.close().await;
    }
}

fn ledger_input(event: &str, note: &str) -> kiban_registry::ledger::LedgerInput {
    kiban_registry::ledger::LedgerInput {
        kind: kiban_registry::ledger::LedgerKind::ProvisionToUser,
        application_id: None,
        release_id: None,
        party_name: "架空大学".into(),
        party_address: "東京都（架空）".into(),
        party_detail: "法人番号（架空）".into(),
        second_party: String::new(),
        event_date: d(event),
        items: vec!["匿名加工医療情報".into()],
        media: vec![],
        manifest_sha256: String::new(),
        note: note.into(),
    }
}

#[tokio::test]
async fn r9_d8_retention_purges_ledger_and_sanctions_only_after_their_period_and_ban() {
    use kiban_registry::review::sanction::DecidedPeriod;
    for f in fresh_backends().await {
        let reg = ready(&f.url).await;
        let e1 = reg.append_ledger(&ledger_input("2024-01-10", "")).await.unwrap();
        let c1 = reg.correct_ledger(&e1.entry_id, &ledger_input("2024-01-10", "訂正")).await.unwrap();
        let e3 = reg.append_ledger(&ledger_input("2025-05-01", "")).await.unwrap();
        let v1 = reg.record_violation("架空大学", "loss", d("2024-02-01"), "紛失").await.unwrap();
        let s1 = reg
            .decide_sanction(&v1.violation_id, DecidedPeriod::Months { months: 3 }, false, d("2024-02-05"))
            .await
            .unwrap();
        let v2 = reg.record_violation("架空法人", "leak", d("2024-03-01"), "漏えい").await.unwrap();
        let s2 = reg.decide_sanction(&v2.violation_id, DecidedPeriod::Indefinite, true, d("2024-03-05")).await.unwrap();

        // A day before the first ledger entry's 3 years end: nothing of these kinds goes.
        let r = reg.purge_expired(d("2027-01-09"), "test", false).await.unwrap();
        for kind in ["ledger_entry", "sanction", "violation", "review_record"] {
            assert_eq!(r.kinds.iter().find(|k| k.kind == kind).unwrap().purged, 0, "{kind}: {r:?}");
        }
        let r = reg.purge_expired(d("2027-06-01"), "test", false).await.unwrap();
        let k = |kind: &str| r.kinds.iter().find(|k| k.kind == kind).unwrap().clone();
        let mut both = vec![e1.entry_id.clone(), c1.entry_id.clone()];
        both.sort();
        assert_eq!(k("ledger_entry").ids, both, "the entry and its correction, after 3 years");
        assert_eq!(k("sanction").ids, vec![s1.sanction_id.clone()], "the ended ban goes");
        assert_eq!(k("sanction").held, 1, "the indefinite ban stays in force");
        assert_eq!(k("violation").ids, vec![v1.violation_id.clone()]);
        assert_eq!(k("violation").held, 1, "a kept sanction refers to the other violation");
        let left: Vec<String> = reg.ledger().await.unwrap().into_iter().map(|e| e.entry_id).collect();
        assert_eq!(left, vec![e3.entry_id.clone()]);
        assert_eq!(reg.ban_on("架空法人", d("2027-06-01")).await.unwrap().0, None);
        assert!(reg.ban_on("架空法人", d("2027-06-01")).await.unwrap().1, "still banned: {:?}", s2.ban_until);
        reg.close().await;
    }
}

/// X6: a row of an append-only table edited or deleted in the database behind kiban's back is named
/// by the anchor check; rows written since, and rows the retention job purged, are not findings.
#[tokio::test]
async fn x6_rows_edited_or_deleted_behind_kibans_back_are_caught_by_the_anchor_and_purges_are_not() {
    for f in fresh_backends().await {
        let reg = ready(&f.url).await;
        let old = reg.add_notice(&notice("p-1", "2024-02-01")).await.unwrap();
        let newer = reg.add_notice(&notice("p-1", "2025-01-10")).await.unwrap();
        let a1 = reg.anchor().await.unwrap();
        assert!(a1.tables["notices"].iter().any(|(k, _)| *k == old.notice_id), "{:?}", f.backend);
        let c = reg.check_anchor(&a1, &reg.anchor().await.unwrap()).await.unwrap();
        assert!(c.is_intact() && c.new_rows == 0 && c.anchored == a1.rows(), "{c:?}");

        let only = reg.add_notice(&notice("p-2", "2024-03-01")).await.unwrap();
        // The retention job purges p-1's superseded notice: explained by its purge record.
        assert_eq!(reg.purge_expired(d("2027-03-15"), "test", false).await.unwrap().total_purged(), 1);
        let c = reg.check_anchor(&a1, &reg.anchor().await.unwrap()).await.unwrap();
        assert!(c.is_intact(), "{:?}: {c:?}", f.backend);
        assert_eq!(c.purged, 1);
        assert!(c.new_rows >= 2, "the new notice and the purge record are new: {c:?}");

        let a2 = reg.anchor().await.unwrap();
        reg.execute_admin(&format!(
            "UPDATE notices SET notice_date = '2020-01-01' WHERE notice_id = '{}'",
            newer.notice_id
        ))
        .await
        .unwrap();
        reg.execute_admin(&format!("DELETE FROM notices WHERE notice_id = '{}'", only.notice_id)).await.unwrap();
        let c = reg.check_anchor(&a2, &reg.anchor().await.unwrap()).await.unwrap();
        let found: Vec<(String, &str)> = c.findings.iter().map(|f| (f.key.clone(), f.what)).collect();
        assert!(found.contains(&(newer.notice_id.clone(), "changed")), "{:?}: {found:?}", f.backend);
        assert!(found.contains(&(only.notice_id.clone(), "missing")), "{found:?}");
        assert_eq!(found.len(), 2, "nothing else is reported: {found:?}");
        assert!(c.findings.iter().all(|f| f.table == "notices"));
    }
}
