//! The review workflow on every backend: committee roster (R1), submission with pre-checks (D1, D2),
//! review to approval, release with its ledger entry (R9), append-only ledger corrections, sanctions
//! that stop use and block new applications (D8), supervision (R5, D7).

use chrono::NaiveDate;
use kiban_registry::Registry;
use kiban_registry::ledger::{LedgerKind, ledger_csv, ledger_html};
use kiban_registry::review::agreement::sample_agreement_for;
use kiban_registry::review::application::sample_application;
use kiban_registry::review::committee::sample_committee;
use kiban_registry::review::db::ReviewError;
use kiban_registry::review::sanction::DecidedPeriod;
use kiban_registry::review::workflow::{Command, Decision, Due, Medium, Phase, ReleaseSpec, VoteKind};

use crate::fresh_backends;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn release(id: &str, on: &str) -> Command {
    Command::Release {
        spec: ReleaseSpec {
            release_id: id.into(),
            on: d(on),
            manifest_sha256: "0f".repeat(32),
            items: vec!["age_group".into(), "sex".into()],
            media: vec![Medium { medium_id: "hdd-1".into(), place_id: "p1".into() }],
            policy_sha256: None,
        },
    }
}

async fn approve(reg: &Registry, id: &str) {
    reg.open_review(id, d("2026-06-10")).await.unwrap();
    for i in 0..6 {
        let vote =
            Command::Vote { member_id: format!("m{i}"), vote: VoteKind::Approve, reason: "公益性あり".into() };
        reg.execute_review(id, &vote).await.unwrap();
    }
    let decision = Decision::Approve {
        expected_provision: "2026年7月".into(),
        conditions: vec![],
        guidelines: vec![],
        remarks: String::new(),
        processing_policy_sha256: None,
    };
    reg.execute_review(id, &Command::Decide { decision, on: d("2026-06-10") }).await.unwrap();
    let app = reg.application_state(id).await.unwrap().application.unwrap();
    reg.execute_review(id, &Command::ConcludeAgreement { agreement: Box::new(sample_agreement_for(&app)) })
        .await
        .unwrap();
    reg.execute_review(id, &Command::FinalFee { hourly_rate_yen: 8_000, minutes: 120 }).await.unwrap();
    reg.execute_review(id, &Command::RecordPayment { amount_yen: 16_000, on: d("2026-06-20") }).await.unwrap();
}

#[tokio::test]
async fn r2_r9_application_to_release_writes_the_ledger_on_every_backend() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        // R1: four members cannot hold a review.
        for m in sample_committee(4) {
            reg.add_committee_member(&m).await.unwrap();
        }
        let (id, s) = reg.submit_application(&sample_application(), d("2026-06-01")).await.unwrap();
        assert_eq!(s.phase(), Phase::Submitted);
        let err = reg.open_review(&id, d("2026-06-10")).await.unwrap_err();
        assert!(err.to_string().contains("at least 5 members"), "{err}");
        for m in sample_committee(6) {
            reg.add_committee_member(&m).await.unwrap();
        }
        assert_eq!(reg.committee().await.unwrap().len(), 6);

        // D2: the same contact person cannot open a second application.
        let (id2, s2) = reg.submit_application(&sample_application(), d("2026-06-02")).await.unwrap();
        assert_eq!(s2.phase(), Phase::PrecheckFailed);
        assert_eq!(s2.precheck_failures[0].field, "contact.name");

        // No release before approval.
        assert!(reg.execute_review(&id, &release("rel-1", "2026-07-01")).await.is_err());
        approve(&reg, &id).await;
        let (s, ledger) = reg.execute_review(&id, &release("rel-1", "2026-07-01")).await.unwrap();
        assert_eq!(s.releases.len(), 1);
        assert_eq!(ledger.len(), 1);
        let e = &ledger[0];
        assert_eq!(e.input.kind, LedgerKind::ProvisionToUser);
        assert_eq!(e.input.party_name, "架空大学");
        assert_eq!(e.input.party_address, "東京都千代田区架空町1-1");
        assert_eq!(e.retention_end, d("2029-07-01"));
        // The stored log replays to the same state.
        assert_eq!(reg.application_state(&id).await.unwrap(), s);
        // No release after the period; supervision ends the entitlement.
        let err = reg.execute_review(&id, &release("rel-2", "2028-07-01")).await.unwrap_err();
        assert!(matches!(err, ReviewError::Workflow(_)) && err.to_string().contains("outside the usage period"));
        let (ended, due) = reg.supervise(d("2028-07-02")).await.unwrap();
        assert_eq!(ended, vec![id.clone()]);
        assert!(
            due.iter().any(|x| x.application_id == id && x.due == Due::DeletionCertificate { place_id: "p1".into() })
        );
        assert_eq!(reg.application_state(&id).await.unwrap().phase(), Phase::Ended);

        // R9: a correction is a new row; the old one stays as it was.
        let mut fixed = e.input.clone();
        fixed.party_address = "東京都千代田区架空町1-2".into();
        let c = reg.correct_ledger(&e.entry_id, &fixed).await.unwrap();
        let all = reg.ledger().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], *e, "the corrected row is unchanged");
        assert_eq!(all[1].corrects.as_deref(), Some(e.entry_id.as_str()));
        assert_eq!(c.seq, 2);
        assert!(ledger_csv(&all).starts_with("番号,記録ID,区分"));
        let html = ledger_html(&all, "架空認定作成事業者", d("2026-07-02"));
        assert!(html.contains("利用者への提供") && html.contains("を訂正"));
        assert!(reg.correct_ledger("ldg-missing", &fixed).await.is_err());
        assert_eq!(
            reg.applications().await.unwrap().iter().find(|a| a.application_id == id2).unwrap().phase,
            Phase::PrecheckFailed
        );
        reg.close().await;
    }
}

#[tokio::test]
async fn d8_r14_sanction_stops_use_publishes_the_name_and_blocks_new_applications_on_every_backend() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        for m in sample_committee(6) {
            reg.add_committee_member(&m).await.unwrap();
        }
        let (id, _) = reg.submit_application(&sample_application(), d("2026-06-01")).await.unwrap();
        approve(&reg, &id).await;
        let v = reg.record_violation("架空大学", "loss", d("2026-08-01"), "USBメモリの紛失").await.unwrap();
        assert!(v.proposal.text_ja.contains("1か月～12か月"));
        assert!(reg.record_violation("架空大学", "nonsense", d("2026-08-01"), "").await.is_err());
        assert!(reg.decide_sanction(&v.violation_id, DecidedPeriod::Indefinite, true, d("2026-08-05")).await.is_err());
        let s = reg
            .decide_sanction(&v.violation_id, DecidedPeriod::Months { months: 3 }, true, d("2026-08-05"))
            .await
            .unwrap();
        assert_eq!(s.ban_until, Some(d("2026-10-31")));
        assert_eq!(s.applications_stopped, vec![id.clone()]);
        // R14: the name is published because the decision said so; an unpublished one is not.
        let v2 = reg.record_violation("架空研究所", "loss", d("2026-08-02"), "").await.unwrap();
        reg.decide_sanction(&v2.violation_id, DecidedPeriod::Months { months: 1 }, false, d("2026-08-06"))
            .await
            .unwrap();
        let published = reg.published_sanctions().await.unwrap();
        assert_eq!(published.len(), 1, "{published:?}");
        assert_eq!((published[0].offender.as_str(), published[0].ban_until), ("架空大学", Some(d("2026-10-31"))));
        assert!(!published[0].violation_ja.is_empty());
        let err = reg.execute_review(&id, &release("rel-1", "2026-09-01")).await.unwrap_err();
        assert!(err.to_string().contains("D8"), "{err}");
        reg.execute_review(&id, &release("rel-1", "2026-11-01")).await.unwrap();
        // A new application during the ban is refused (a different contact person).
        let mut other = sample_application();
        other.contact.name = "合成 三郎".into();
        let err = reg.submit_application(&other, d("2026-09-01")).await.unwrap_err();
        assert!(err.to_string().contains("banned"), "{err}");
        reg.submit_application(&other, d("2026-11-01")).await.unwrap();
        reg.close().await;
    }
}
