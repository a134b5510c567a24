//! Intake records on every backend: filings and publication (P5, C1, C4), notices (P1, P2), opt-outs
//! and confirmations (P3, P4), the gate with receipt records (C2, C3), deletion (P7, C5), CSV import.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chrono::{NaiveDate, TimeZone, Utc};
use kiban_registry::Registry;
use kiban_registry::gate::Verdict;
use kiban_registry::intake::{NoVault, Submission, delete_person, submit};
use kiban_registry::records::*;

use crate::fresh_backends;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn filing(provider: &str) -> FilingInput {
    FilingInput {
        provider_id: provider.into(),
        kind: FilingKind::Filing,
        filed_on: d("2024-01-10"),
        items: [("提供する医療情報の項目".to_string(), "診療録・検査結果".to_string())].into_iter().collect(),
        update_method: "月次で差分を提供".into(),
        planned_start: d("2024-03-01"),
        waiting_days: 30,
        transmission_method: "専用線 SFTP".into(),
        security_checked_on: Some(d("2024-02-01")),
        security_note: "TLS1.3, 鍵認証, IP制限を確認".into(),
        acquisition_record: "診療の過程で取得".into(),
    }
}

async fn ready(f: &crate::Fresh) -> Registry {
    let reg = Registry::open(&f.url).await.unwrap();
    reg.migrate().await.unwrap();
    reg.register_provider("prov-a", "合成病院A（架空）", 13).await.unwrap();
    let fl = reg.file_provider(&filing("prov-a")).await.unwrap();
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

fn optout(patient: &str, at: &str) -> OptOutInput {
    OptOutInput {
        provider_id: "prov-a".into(),
        patient_id: patient.into(),
        requester_kind: RequesterKind::Patient,
        requester_name: "合成 花子".into(),
        requester_detail: "東京都千代田区（架空）".into(),
        channel: Channel::Written,
        person_deceased: false,
        received_at: Some(Utc.from_utc_datetime(&d(at).and_hms_opt(3, 0, 0).unwrap())),
        source: "test".into(),
    }
}

#[tokio::test]
async fn p5_c1_c4_provider_without_published_filing_cannot_submit() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        let err = reg.standing("prov-x", d("2025-01-01")).await.unwrap_err().to_string();
        assert!(err.contains("not registered") && err.contains("C1"), "{err}");
        reg.register_provider("prov-a", "A", 13).await.unwrap();
        let err = reg.standing("prov-a", d("2025-01-01")).await.unwrap_err().to_string();
        assert!(err.contains("no filing") && err.contains("P5"), "{err}");
        let mut fi = filing("prov-a");
        fi.security_checked_on = None;
        let f1 = reg.file_provider(&fi).await.unwrap();
        let err = reg.standing("prov-a", d("2025-01-01")).await.unwrap_err().to_string();
        assert!(err.contains("not published") && err.contains("provider publish"), "{err}");
        let err = reg.publish_filing(&f1.filing_id, d("2024-01-20"), d("2024-01-19"), "x").await.unwrap_err();
        assert!(err.to_string().contains("provider_published_on"), "{err}");
        reg.publish_filing(&f1.filing_id, d("2024-01-20"), d("2024-01-25"), "web").await.unwrap();
        let err = reg.standing("prov-a", d("2025-01-01")).await.unwrap_err().to_string();
        assert!(err.contains("security_checked_on") && err.contains("C4"), "{err}");
        // A change is a new filing that supersedes the first; the first is kept.
        let f2 = reg.file_provider(&FilingInput { kind: FilingKind::Change, ..filing("prov-a") }).await.unwrap();
        assert_eq!(f2.supersedes.as_deref(), Some(f1.filing_id.as_str()));
        assert_eq!(f2.seq, 2);
        assert!(reg.standing("prov-a", d("2025-01-01")).await.is_err(), "the change is not published yet");
        reg.publish_filing(&f2.filing_id, d("2024-01-20"), d("2024-01-25"), "web").await.unwrap();
        let s = reg.standing("prov-a", d("2025-01-01")).await.unwrap();
        assert_eq!(s.filing.filing_id, f2.filing_id);
        let err = reg.standing("prov-a", d("2024-02-15")).await.unwrap_err().to_string();
        assert!(err.contains("planned to start"), "{err}");
        let mut stop = filing("prov-a");
        stop.kind = FilingKind::Cessation;
        stop.filed_on = d("2025-06-01");
        reg.file_provider(&stop).await.unwrap();
        assert!(reg.standing("prov-a", d("2025-05-31")).await.is_ok(), "as of before the cessation");
        let err = reg.standing("prov-a", d("2025-06-01")).await.unwrap_err().to_string();
        assert!(err.contains("cessation"), "{err}");
        assert_eq!(reg.filings("prov-a").await.unwrap().len(), 3, "filings are append-only");
        reg.close().await;
    }
}

#[tokio::test]
async fn p1_notice_to_a_minor_or_incapable_patient_needs_a_guardian() {
    for f in fresh_backends().await {
        let reg = ready(&f).await;
        let mut n = notice("00000001", "2024-04-01");
        n.patient_birth_date = Some(d("2010-05-01"));
        let err = reg.add_notice(&n).await.unwrap_err().to_string();
        assert!(err.starts_with("recipient:") && err.contains("under 16") && err.contains("P1"), "{err}");
        n.recipient = Recipient::PatientAndGuardian;
        let err = reg.add_notice(&n).await.unwrap_err().to_string();
        assert!(err.starts_with("guardian_name:"), "{err}");
        n.guardian_name = Some("合成 太郎".into());
        reg.add_notice(&n).await.unwrap();
        // 16 on the notice date: the patient alone suffices.
        let mut adult = notice("00000002", "2024-04-01");
        adult.patient_birth_date = Some(d("2008-04-01"));
        reg.add_notice(&adult).await.unwrap();
        let mut incapable = notice("00000003", "2024-04-01");
        incapable.lacks_capacity = true;
        assert!(reg.add_notice(&incapable).await.unwrap_err().to_string().contains("lacks capacity"));
        let mut v = notice("00000004", "2024-04-01");
        v.text_version = " ".into();
        assert!(reg.add_notice(&v).await.unwrap_err().to_string().starts_with("text_version:"));
        let bad = notice("bad id!", "2024-04-01");
        assert!(reg.add_notice(&bad).await.unwrap_err().to_string().starts_with("patient_id:"));
        let stored = reg.notices_of("prov-a", "00000001").await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].input.guardian_name.as_deref(), Some("合成 太郎"));
        assert_eq!(stored[0].retention_end, d("2027-04-01"));
        reg.close().await;
    }
}

#[tokio::test]
async fn p1_a_corrected_notice_is_a_new_row_and_the_gate_uses_the_correction() {
    for f in fresh_backends().await {
        let reg = ready(&f).await;
        let first = reg.add_notice(&notice("00000001", "2024-01-01")).await.unwrap();
        let mut fix = notice("00000001", "2024-05-01");
        fix.corrects = Some(first.notice_id.clone());
        reg.add_notice(&fix).await.unwrap();
        assert_eq!(reg.notices_of("prov-a", "00000001").await.unwrap().len(), 2, "the old row is kept");
        let facts = reg.gate_facts("prov-a").await.unwrap();
        assert_eq!(facts.persons["00000001"].notices, vec![d("2024-05-01")]);
        let mut other = notice("00000002", "2024-05-01");
        other.corrects = Some(first.notice_id);
        assert!(reg.add_notice(&other).await.unwrap_err().to_string().contains("same patient"));
        reg.close().await;
    }
}

#[tokio::test]
async fn p3_a_later_notice_never_revives_an_opted_out_person_only_their_withdrawal_does() {
    for f in fresh_backends().await {
        let reg = ready(&f).await;
        reg.add_notice(&notice("00000001", "2024-01-01")).await.unwrap();
        let (ev, _) = reg.add_optout(&optout("00000001", "2024-06-01")).await.unwrap();
        assert_eq!(ev.effective_on, d("2024-06-01"));
        reg.add_notice(&notice("00000001", "2024-07-01")).await.unwrap();
        let facts = reg.gate_facts("prov-a").await.unwrap();
        let p = &facts.persons["00000001"];
        assert_eq!(kiban_registry::gate::decide_person(p, d("2024-05-31"), 30), Verdict::Admitted);
        assert_eq!(kiban_registry::gate::decide_person(p, d("2024-09-01"), 30), Verdict::OptedOut);
        // Only the person themselves can withdraw.
        let err = reg
            .withdraw_optout(&ev.event_id, RequesterKind::Bereaved, "x", "y", Channel::Written, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("requester_kind:") && err.contains("P3"), "{err}");
        let at = Utc.from_utc_datetime(&d("2024-10-01").and_hms_opt(3, 0, 0).unwrap());
        let w = reg
            .withdraw_optout(
                &ev.event_id,
                RequesterKind::Patient,
                "合成 花子",
                "本人確認済",
                Channel::Written,
                Some(at),
            )
            .await
            .unwrap();
        assert_eq!(w.withdraws.as_deref(), Some(ev.event_id.as_str()));
        assert!(
            reg.withdraw_optout(&ev.event_id, RequesterKind::Patient, "a", "b", Channel::Oral, None).await.is_err()
        );
        let facts = reg.gate_facts("prov-a").await.unwrap();
        let p = &facts.persons["00000001"];
        assert_eq!(kiban_registry::gate::decide_person(p, d("2024-09-01"), 30), Verdict::OptedOut, "as of then");
        assert_eq!(kiban_registry::gate::decide_person(p, d("2024-10-01"), 30), Verdict::Admitted);
        assert_eq!(reg.optouts_of("prov-a", "00000001").await.unwrap().len(), 2, "withdrawal is its own event");
        // Bereaved family for a deceased person; a bereaved request for a living person is refused.
        let mut b = optout("00000009", "2024-06-01");
        b.requester_kind = RequesterKind::Bereaved;
        assert!(reg.add_optout(&b).await.unwrap_err().to_string().contains("deceased"));
        b.person_deceased = true;
        b.channel = Channel::Oral;
        let (bev, _) = reg.add_optout(&b).await.unwrap();
        assert!(
            reg.withdraw_optout(&bev.event_id, RequesterKind::Patient, "a", "b", Channel::Oral, None).await.is_err()
        );
        reg.close().await;
    }
}

#[tokio::test]
async fn p4_confirmation_holds_the_six_items_in_japanese_and_is_kept_three_years() {
    for f in fresh_backends().await {
        let reg = ready(&f).await;
        let mut o = optout("00000001", "2024-06-01");
        o.requester_name = "合成 <花子>".into();
        let (ev, c) = reg.add_optout(&o).await.unwrap();
        let html = &c.html;
        for item in [
            "一　求めがあった旨",
            "二　求めを行った者",
            "三　求めを受けた年月日",
            "四　本書面を交付する旨",
            "五　医療情報の提供の停止の年月日",
            "六　本書面の交付年月日",
        ] {
            assert!(html.contains(item), "missing {item}");
        }
        assert!(html.contains("合成 &lt;花子&gt;"), "names are escaped");
        assert!(html.contains("令和6年6月1日"), "received / stopped date in 和暦");
        assert!(html.contains("lang=\"ja\""));
        assert_eq!(c.retention_end, kiban_model::retention::RetentionRule::ThreeYears.end_date(c.issued_on));
        let again = reg.confirmation(&ev.event_id).await.unwrap();
        assert_eq!(&again, &c);
        assert_eq!(c.sha256.len(), 64);
        reg.close().await;
    }
}

fn write_input(dir: &Path, rows: &[(&str, &str)]) {
    let t = dir.join("encounters");
    std::fs::create_dir_all(&t).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("provider_id", DataType::Utf8, true),
        Field::new("patient_id", DataType::Utf8, true),
        Field::new("n", DataType::Int64, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(rows.iter().map(|r| Some(r.0)).collect::<Vec<_>>())),
        Arc::new(StringArray::from(rows.iter().map(|r| (!r.1.is_empty()).then_some(r.1)).collect::<Vec<_>>())),
        Arc::new(Int64Array::from((0..rows.len() as i64).collect::<Vec<_>>())),
    ];
    let b = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let f = std::fs::File::create(t.join("part-0.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
}

fn sub(input: &Path, date: &str) -> Submission {
    Submission {
        provider_id: "prov-a".into(),
        provision_date: d(date),
        input: input.to_owned(),
        bulk: true,
        dry_run: false,
        creator_name: "合成認定作成事業者（架空）".into(),
        creator_address: "東京都（架空）".into(),
        sealer: None,
    }
}

#[tokio::test]
async fn c2_c3_p2_p6_intake_admits_only_notified_persons_quarantines_the_rest_and_keeps_the_report() {
    for f in fresh_backends().await {
        let reg = ready(&f).await;
        reg.add_notice(&notice("00000001", "2024-01-01")).await.unwrap(); // admitted
        reg.add_notice(&notice("00000002", "2024-03-20")).await.unwrap(); // too recent for 2024-04-01
        reg.add_notice(&notice("00000003", "2024-01-01")).await.unwrap();
        reg.add_optout(&optout("00000003", "2024-03-31")).await.unwrap(); // opted out
        reg.add_notice(&notice("00000005", "2024-05-01")).await.unwrap(); // notified only after the date: unknown as of it
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        for sub in ["clinical", "quarantine", "staging"] {
            std::fs::create_dir_all(data.join(sub)).unwrap();
        }
        let input = tmp.path().join("in");
        write_input(
            &input,
            &[
                ("prov-a", "00000001"),
                ("prov-a", "00000001"),
                ("prov-a", "00000002"),
                ("prov-a", "00000003"),
                ("prov-a", "00000004"),
                ("prov-a", "00000005"),
                ("prov-a", ""),
                ("prov-a", "x y"),
                ("prov-b", "00000001"),
            ],
        );
        let out = submit(&reg, &data, &sub(&input, "2024-04-01")).await.unwrap();
        let r = &out.report;
        assert_eq!((r.rows_in, r.admitted, r.excluded), (9, 2, 7));
        let want: Vec<(&str, u64)> = vec![
            ("malformed_identity", 2),
            ("notice_too_recent", 1),
            ("opted_out", 1),
            ("provider_mismatch", 1),
            ("unknown_person", 2),
        ];
        assert_eq!(r.excluded_by_reason.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(), want);
        // Admitted records are a verified kiban dataset holding only the admitted person.
        let clin = out.clinical.clone().unwrap().join("encounters");
        let m = kiban_formats::verify_dataset(&clin).unwrap();
        assert_eq!(m.rows, 2);
        // Quarantine: every excluded record with its reason.
        let q = out.quarantine.clone().unwrap().join("encounters");
        let qm = kiban_formats::verify_dataset(&q).unwrap();
        assert_eq!(qm.rows, 7);
        let text: String = qm.files.iter().map(|f| std::fs::read_to_string(q.join(&f.path)).unwrap()).collect();
        assert!(text.contains("00000003,2,opted_out,P3") || text.contains("opted_out"), "{text}");
        assert!(text.contains("notice_too_recent,P2"), "{text}");
        // The receipt record holds the report, the confirmed filing and the published statement.
        let rc = out.receipt.clone().unwrap();
        assert_eq!(rc.persons, vec!["00000001"]);
        assert_eq!(rc.gate_report["admitted"], 2);
        assert!(rc.published_statement.contains("公表されている"));
        assert_eq!(rc.confirmed_items["update_method"], "月次で差分を提供");
        let bulk = rc.bulk_id.clone().unwrap();
        assert_eq!(
            reg.bulk_retention_end(&bulk).await.unwrap(),
            kiban_model::retention::RetentionRule::ThreeYearsFromLast.end_date(rc.received_on)
        );
        // P6: the provider's provision record, with the four items of 003 art.34, kept 3 years from
        // the last provision of its bulk record.
        let pr = reg.provision_record(&rc.batch_id).await.unwrap();
        assert_eq!((pr.provider_id.as_str(), pr.provided_on), ("prov-a", d("2024-04-01")));
        assert_eq!(
            (pr.creator_name.as_str(), pr.creator_address.as_str()),
            ("合成認定作成事業者（架空）", "東京都（架空）")
        );
        assert_eq!(pr.persons, vec!["00000001"], "only the admitted person was provided");
        assert_eq!(pr.items, rc.items);
        assert_eq!(pr.bulk_id.as_deref(), Some(bulk.as_str()));
        // The same input again is refused, by digest.
        let err = submit(&reg, &data, &sub(&input, "2024-04-01")).await.unwrap_err().to_string();
        assert!(err.contains("already received") && err.contains(&rc.batch_id), "{err}");
        // Replay as of the same date after later registry changes gives the same answer.
        reg.add_notice(&notice("00000004", "2024-06-01")).await.unwrap();
        reg.add_optout(&optout("00000001", "2024-07-01")).await.unwrap();
        let replay = submit(&reg, &data, &Submission { dry_run: true, ..sub(&input, "2024-04-01") }).await.unwrap();
        assert_eq!(replay.report.excluded_by_reason, r.excluded_by_reason);
        assert_eq!(replay.report.excluded_persons_sha256, r.excluded_persons_sha256);
        assert_ne!(replay.report.registry_version, r.registry_version);
        // Deletion (P7, C5): the person's rows leave the clinical store; the record names the batches.
        let del =
            delete_person(&reg, &data, "prov-a", "00000001", d("2024-08-01"), "request", &NoVault, None).await.unwrap();
        assert_eq!(del.record.batches, vec![rc.batch_id.clone()]);
        assert_eq!(del.removed.values().sum::<u64>(), 2);
        assert!(del.record.vault_status.starts_with("pending"));
        assert_eq!(kiban_formats::verify_dataset(&clin).unwrap().rows, 0);
        assert_eq!(reg.deletions_of("prov-a", "00000001").await.unwrap(), 1);
        // An excluded person's rows sit in quarantine; deletion removes them there too.
        let del3 =
            delete_person(&reg, &data, "prov-a", "00000003", d("2024-08-01"), "request", &NoVault, None).await.unwrap();
        assert!(del3.record.batches.is_empty(), "never admitted");
        let q_removed: u64 = del3.quarantined.values().sum();
        assert!(q_removed >= 1, "{:?}", del3.quarantined);
        let qm = kiban_formats::verify_dataset(&q).unwrap();
        assert_eq!(qm.rows, 7 - q_removed);
        let text: String = qm.files.iter().map(|f| std::fs::read_to_string(q.join(&f.path)).unwrap()).collect();
        assert!(!text.contains("00000003") && text.contains("notice_too_recent,P2"), "{text}");
        assert_eq!(del3.record.items["quarantine_rows_removed"].as_object().unwrap().len(), 1);
        reg.close().await;
    }
}

#[tokio::test]
async fn c1_unpublished_provider_batch_is_refused_and_nothing_is_written() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        reg.register_provider("prov-a", "A", 13).await.unwrap();
        reg.file_provider(&filing("prov-a")).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        write_input(&input, &[("prov-a", "00000001")]);
        let err = submit(&reg, tmp.path(), &sub(&input, "2024-04-01")).await.unwrap_err().to_string();
        assert!(err.contains("not published"), "{err}");
        assert!(!tmp.path().join("clinical").exists());
        reg.close().await;
    }
}

#[tokio::test]
async fn p1_p3_csv_import_reports_bad_rows_and_keeps_the_good_ones() {
    for f in fresh_backends().await {
        let reg = ready(&f).await;
        let csv = "provider_id,patient_id,notice_date,method,recipient,guardian_name,patient_birth_date,lacks_capacity,text_version\n\
                   prov-a,00000001,2024-01-01,mail,patient,,,0,v1\n\
                   prov-a,00000002,2024-13-01,mail,patient,,,0,v1\n\
                   prov-a,00000003,2024-01-01,pigeon,patient,,,0,v1\n\
                   prov-z,00000004,2024-01-01,mail,patient,,,0,v1\n\
                   prov-a,00000005,2024-01-01,posted,patient,,2015-01-01,0,v1\n\
                   prov-a,00000006,2024-01-01,electronic,guardian,合成 次郎,2015-01-01,no,v2\n";
        let rep = reg.import_notices(Box::new(csv.as_bytes()), "notices.csv").await.unwrap();
        assert_eq!((rep.rows, rep.recorded), (6, 2));
        let lines: Vec<(u64, &str)> = rep.errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(lines, vec![(3, "notice_date"), (4, "method"), (5, "provider_id"), (6, "recipient")]);
        assert!(rep.errors[1].message.contains("written_at_visit"), "names the allowed values");
        let csv = "provider_id,patient_id,requester_kind,requester_name,requester_detail,channel,person_deceased,received_at\n\
                   prov-a,00000001,patient,合成 花子,住所,written,0,2024-06-01\n\
                   prov-a,00000002,bereaved,合成 一郎,長男,oral,1,2024-06-02T10:00:00+09:00\n\
                   prov-a,00000003,bereaved,合成 一郎,長男,oral,0,2024-06-02\n\
                   prov-a,00000004,patient,,x,written,0,2024-06-02\n\
                   prov-a,00000005,patient,x,x,fax,0,2024-06-02\n";
        let rep = reg.import_optouts(Box::new(csv.as_bytes()), "optouts.csv").await.unwrap();
        assert_eq!((rep.rows, rep.recorded), (5, 2));
        assert_eq!(rep.errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![4, 5, 6]);
        for id in &rep.ids {
            assert!(reg.confirmation(id).await.is_ok(), "each imported opt-out has its confirmation");
        }
        assert_eq!(reg.optouts_of("prov-a", "00000001").await.unwrap()[0].effective_on, d("2024-06-01"));
        assert_eq!(rep.encoding, "utf-8");
        // A Shift_JIS export (the usual form from hospital systems) is decoded, and says so.
        let sjis = "provider_id,patient_id,requester_kind,requester_name,requester_detail,channel,person_deceased,received_at\n\
                    prov-a,00000007,patient,髙橋 ﾊﾅｺ,東京都,written,0,2024-06-03\n";
        let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(sjis);
        assert!(!bad && std::str::from_utf8(&bytes).is_err());
        let rep = reg.import_optouts(Box::new(std::io::Cursor::new(bytes.into_owned())), "sjis.csv").await.unwrap();
        assert_eq!((rep.recorded, rep.encoding.as_str()), (1, "shift_jis"), "{rep:?}");
        let ev = &reg.optouts_of("prov-a", "00000007").await.unwrap()[0];
        assert!(serde_json::to_string(ev).unwrap().contains("髙橋 ﾊﾅｺ"), "{ev:?}");
        let err = reg.import_notices(Box::new("a,b\n1,2\n".as_bytes()), "x.csv").await.unwrap_err().to_string();
        assert!(err.contains("no provider_id column"), "{err}");
        reg.close().await;
    }
}

#[tokio::test]
async fn statutory_tables_are_append_only_in_the_code() {
    // No UPDATE or DELETE statement touches an intake table anywhere in the registry's source.
    let src = concat!(
        include_str!("../../src/records.rs"),
        include_str!("../../src/intake.rs"),
        include_str!("../../src/import.rs")
    );
    for table in [
        "provider_filings",
        "provider_publications",
        "notices",
        "optouts",
        "optout_confirmations",
        "receipt_records",
        "provision_records",
        "deletion_records",
        "bulk_records",
    ] {
        assert!(!src.contains(&format!("UPDATE {table}")), "{table} is updated");
        assert!(!src.contains(&format!("DELETE FROM {table}")), "{table} has rows deleted");
    }
}

/// A stand-in for the identity vault: registers names in memory; a patient named `bad` is rejected.
#[derive(Default)]
struct FakeVault(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl kiban_registry::intake::IdentityRouting for FakeVault {
    fn register(&self, _provider: &str, rows: &RecordBatch) -> Result<Vec<Result<String, String>>, String> {
        let ids = rows.column_by_name("patient_id").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        let names = rows.column_by_name("name_kana").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        let mut m = self.0.lock().unwrap();
        Ok((0..rows.num_rows())
            .map(|i| {
                if names.value(i) == "bad" {
                    return Err("name_kana: N2 empty kana".to_owned());
                }
                let k = format!("pk-{:016x}", 0xabc0 + i as u64);
                m.insert(ids.value(i).to_owned(), k.clone());
                Ok(k)
            })
            .collect())
    }
    fn person_keys(&self, _provider: &str, ids: &[&str]) -> Result<Vec<Option<String>>, String> {
        let m = self.0.lock().unwrap();
        Ok(ids.iter().map(|i| m.get(*i).cloned()).collect())
    }
}

fn write_patients(dir: &Path, rows: &[(&str, &str)]) {
    let t = dir.join("patients");
    std::fs::create_dir_all(&t).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("provider_id", DataType::Utf8, false),
        Field::new("patient_id", DataType::Utf8, false),
        Field::new("name_kana", DataType::Utf8, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(rows.iter().map(|_| "prov-a").collect::<Vec<_>>())),
        Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
        Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
    ];
    let b = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(t.join("part-0.parquet")).unwrap(), schema, None)
            .unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
}

fn read_rows(dir: &Path) -> Vec<RecordBatch> {
    let m = kiban_formats::read_manifest(dir).unwrap();
    m.files.iter().flat_map(|f| kiban_formats::read_part(dir, &m, f, None).unwrap()).collect()
}

#[tokio::test]
async fn a3_intake_sends_identities_to_the_vault_and_person_keys_to_the_clinical_store() {
    for f in fresh_backends().await {
        let reg = ready(&f).await;
        for p in ["00000001", "00000002", "00000003"] {
            reg.add_notice(&notice(p, "2024-01-01")).await.unwrap();
        }
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let input = tmp.path().join("in");
        // 00000002's identity is rejected by the vault; 00000003 sends clinical rows but no identity.
        write_patients(&input, &[("00000001", "ヤマダ タロウ"), ("00000002", "bad")]);
        write_input(&input, &[("prov-a", "00000001"), ("prov-a", "00000002"), ("prov-a", "00000003")]);
        // Without a vault an identity table is refused, and nothing is written.
        let e = submit(&reg, &data, &sub(&input, "2024-04-01")).await.unwrap_err().to_string();
        assert!(e.contains("identity vault"), "{e}");
        assert!(!data.join("clinical").exists());

        let vault = FakeVault::default();
        let out =
            kiban_registry::intake::submit_routed(&reg, &data, &sub(&input, "2024-04-01"), Some(&vault)).await.unwrap();
        let r = &out.report;
        assert_eq!((r.rows_in, r.admitted, r.excluded), (5, 2, 3), "{r:?}");
        assert_eq!(r.excluded_by_reason.get("identity_rejected"), Some(&1));
        assert_eq!(r.excluded_by_reason.get("no_identity"), Some(&2), "00000002 and 00000003's encounters");
        let clinical = out.clinical.unwrap();
        assert!(!clinical.join("patients").exists(), "identities never reach clinical/");
        let rows = read_rows(&clinical.join("encounters"));
        let schema = rows[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["provider_id", "person_key", "n"]);
        let keys: Vec<String> = rows
            .iter()
            .flat_map(|b| {
                let a = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                a.iter().map(|v| v.unwrap().to_owned()).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(keys, [format!("pk-{:016x}", 0xabc0)]);
        // What the vault did not take stays in quarantine with the patient id, for replay.
        let q = read_rows(&out.quarantine.unwrap().join("encounters"));
        let qids: Vec<&str> = q
            .iter()
            .flat_map(|b| {
                b.column_by_name("patient_id").unwrap().as_any().downcast_ref::<StringArray>().unwrap().iter()
            })
            .map(|v| v.unwrap())
            .collect();
        assert_eq!(qids, ["00000002", "00000003"]);

        // A clinical table with a direct identifier column is refused.
        let bad = tmp.path().join("bad");
        write_patients(&bad, &[("00000001", "ヤマダ タロウ")]);
        std::fs::rename(bad.join("patients"), bad.join("encounters")).unwrap();
        let e = kiban_registry::intake::submit_routed(&reg, &data, &sub(&bad, "2024-04-02"), Some(&vault))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("name_kana") && e.contains("A3"), "{e}");
    }
}

#[test]
fn a3_a_formats_convert_output_is_taken_in_with_its_identity_table() {
    // `kiban formats convert --out X` writes X/clinical/<table> and X/identity/patients.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("converted");
    write_input(&out.join("clinical"), &[("prov-a", "00000001")]);
    write_patients(&out.join("identity"), &[("00000001", "ヤマダ タロウ")]);
    std::fs::create_dir_all(out.join("quarantine")).unwrap();
    let tables = kiban_registry::intake::input_tables(&out).unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(names, ["encounters", "patients"]);
}

fn write_public_expense_ids(dir: &Path, rows: &[(&str, &str, &str)]) {
    let t = dir.join("public_expense_ids");
    std::fs::create_dir_all(&t).unwrap();
    let names = ["provider_id", "patient_id", "payer_number", "recipient_number"];
    let schema = Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, DataType::Utf8, false)).collect::<Vec<_>>()));
    let col = |f: &dyn Fn(&(&str, &str, &str)) -> String| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let cols = vec![col(&|_| "prov-a".into()), col(&|r| r.0.into()), col(&|r| r.1.into()), col(&|r| r.2.into())];
    let b = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let f = std::fs::File::create(t.join("part-0.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
}

#[tokio::test]
async fn a3_public_expense_numbers_go_only_to_a_vault_that_takes_them() {
    let f = &fresh_backends().await[0];
    let reg = ready(f).await;
    reg.add_notice(&notice("00000001", "2024-01-01")).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // `kiban formats convert` output: the 公費 numbers sit in identity/ beside the patients.
    let input = tmp.path().join("converted");
    write_input(&input.join("clinical"), &[("prov-a", "00000001")]);
    write_patients(&input.join("identity"), &[("00000001", "ヤマダ タロウ")]);
    write_public_expense_ids(&input.join("identity"), &[("00000001", "54136015", "1234566")]);
    let names: Vec<String> =
        kiban_registry::intake::input_tables(&input).unwrap().into_iter().map(|(t, _)| t).collect();
    assert_eq!(names, ["encounters", "patients", "public_expense_ids"]);
    // Without a vault, or with one that cannot hold them, the batch is refused and nothing written.
    let e = submit(&reg, &data, &sub(&input, "2024-04-01")).await.unwrap_err().to_string();
    assert!(e.contains("identity vault") && e.contains("A3"), "{e}");
    let vault = FakeVault::default();
    let e = kiban_registry::intake::submit_routed(&reg, &data, &sub(&input, "2024-04-01"), Some(&vault))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("公費"), "{e}");
    assert!(!data.join("clinical").exists(), "nothing of a refused batch is kept");
    // The numbers in any other table are a direct identifier there: refused (A3).
    let bad = tmp.path().join("bad");
    write_public_expense_ids(&bad, &[("00000001", "54136015", "1234566")]);
    std::fs::rename(bad.join("public_expense_ids"), bad.join("public_expenses")).unwrap();
    let e = kiban_registry::intake::submit_routed(&reg, &data, &sub(&bad, "2024-04-02"), Some(&vault))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("payer_number") && e.contains("A3"), "{e}");
}
