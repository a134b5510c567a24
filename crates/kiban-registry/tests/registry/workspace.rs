//! Visiting-environment workspaces on every backend: opened only for an approved Type II application
//! with its handlers and releases (R4), used only inside the period, closed by the sweep with a
//! fast-forwarded clock, deleted with a deletion record in the ledger and the application (R5),
//! own data and tools only after the creator's approval (R7), take-outs approved by a checker (D9).

use chrono::NaiveDate;
use kiban_registry::Registry;
use kiban_registry::ledger::LedgerKind;
use kiban_registry::review::agreement::{UserType, sample_agreement_for};
use kiban_registry::review::application::{ProvisionMethod, sample_application};
use kiban_registry::review::committee::sample_committee;
use kiban_registry::review::workflow::{Command, Decision, ReleaseSpec, RequestKind, VoteKind};
use kiban_registry::workspace::{WsCommand, WsHandler, WsPhase};

use crate::fresh_backends;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// An approved application; Type II (VDI) unless `type1`; released once as `rel-1`.
async fn approved(reg: &Registry, type1: bool) -> String {
    let mut app = sample_application();
    app.provision_method = ProvisionMethod::Vdi;
    let (id, _) = reg.submit_application(&app, d("2026-06-01")).await.unwrap();
    reg.open_review(&id, d("2026-06-10")).await.unwrap();
    for i in 0..6 {
        let vote =
            Command::Vote { member_id: format!("m{i}"), vote: VoteKind::Approve, reason: "公益性あり".into() };
        reg.execute_review(&id, &vote).await.unwrap();
    }
    let decision = Decision::Approve {
        expected_provision: "2026年7月".into(),
        conditions: vec![],
        guidelines: vec![],
        remarks: String::new(),
        processing_policy_sha256: None,
    };
    reg.execute_review(&id, &Command::Decide { decision, on: d("2026-06-10") }).await.unwrap();
    let mut agreement = sample_agreement_for(&app);
    agreement.user_type = if type1 { UserType::TypeI } else { UserType::TypeII };
    reg.execute_review(&id, &Command::ConcludeAgreement { agreement: Box::new(agreement) }).await.unwrap();
    reg.execute_review(&id, &Command::FinalFee { hourly_rate_yen: 8_000, minutes: 60 }).await.unwrap();
    reg.execute_review(&id, &Command::RecordPayment { amount_yen: 8_000, on: d("2026-06-20") }).await.unwrap();
    let spec = ReleaseSpec {
        release_id: "rel-1".into(),
        on: d("2026-07-01"),
        manifest_sha256: "0f".repeat(32),
        items: vec!["age_group".into()],
        media: vec![],
        policy_sha256: None,
    };
    reg.execute_review(&id, &Command::Release { spec }).await.unwrap();
    id
}

fn hanako() -> Vec<WsHandler> {
    vec![WsHandler { account_id: "acct-hanako".into(), name: "合成 花子".into() }]
}

#[tokio::test]
async fn r4_r5_workspace_opens_for_type_ii_only_and_closes_and_deletes_at_the_end_on_every_backend() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        for m in sample_committee(6) {
            reg.add_committee_member(&m).await.unwrap();
        }
        let id = approved(&reg, false).await;
        let rel = vec!["rel-1".to_owned()];
        // Not for outsiders, not for unreleased data, not outside the period.
        let stranger = vec![WsHandler { account_id: "acct-x".into(), name: "部外者".into() }];
        let err = reg.open_workspace(&id, &stranger, &rel, d("2026-07-02")).await.unwrap_err();
        assert!(err.to_string().contains("R5"), "{err}");
        let err = reg.open_workspace(&id, &hanako(), &["rel-9".into()], d("2026-07-02")).await.unwrap_err();
        assert!(err.to_string().contains("R4"), "{err}");
        let err = reg.open_workspace(&id, &hanako(), &rel, d("2028-07-01")).await.unwrap_err();
        assert!(err.to_string().contains("usage period"), "{err}");
        let ws = reg.open_workspace(&id, &hanako(), &rel, d("2026-07-02")).await.unwrap();
        assert_eq!(ws.phase, WsPhase::Open);
        assert!(reg.open_workspace(&id, &hanako(), &rel, d("2026-07-03")).await.is_err(), "one per application");
        let wid = ws.workspace_id.clone();
        let add = WsCommand::AddDataset { table: "claims".into(), release_id: "rel-1".into(), rows: 200 };
        reg.execute_workspace(&wid, &add).await.unwrap();
        let s = reg.workspace_state(&wid).await.unwrap();
        assert_eq!(s.tables, ["claims"]);
        // Only its handlers, only within the period.
        assert!(s.may_use("acct-hanako", d("2027-01-01")).is_ok());
        assert!(s.may_use("acct-other", d("2027-01-01")).is_err());
        assert!(s.may_use("acct-hanako", d("2028-07-01")).is_err());
        // The sweep with a fast-forwarded clock: nothing before the end, closed the day after.
        assert!(reg.expire_workspaces(d("2028-06-30")).await.unwrap().is_empty());
        assert_eq!(reg.expire_workspaces(d("2028-07-01")).await.unwrap(), vec![wid.clone()]);
        let s = reg.workspace_state(&wid).await.unwrap();
        assert_eq!(s.phase, WsPhase::Closed);
        assert!(s.may_use("acct-hanako", d("2028-06-30")).is_err(), "closed means closed");
        assert!(reg.expire_workspaces(d("2028-07-02")).await.unwrap().is_empty(), "the sweep is idempotent");
        // R5: deletion recorded in the workspace, the ledger and the application.
        let summary = serde_json::json!({"datasets": 1, "results": 3, "scripts": 1, "files": 9});
        let (s, entry) = reg.record_workspace_deletion(&wid, d("2028-07-01"), "kiban", summary).await.unwrap();
        assert_eq!(s.phase, WsPhase::Deleted);
        assert_eq!(entry.input.kind, LedgerKind::Deletion);
        assert_eq!(entry.input.items, ["claims"]);
        assert!(entry.input.note.contains("R5"));
        assert!(reg.ledger().await.unwrap().iter().any(|e| e.entry_id == entry.entry_id));
        let app = reg.application_state(&id).await.unwrap();
        assert_eq!(app.deletions.get("p1"), Some(&d("2028-07-01")), "the place's deletion is certified");
        assert!(reg.record_workspace_deletion(&wid, d("2028-07-02"), "kiban", serde_json::json!({})).await.is_err());
        let list = reg.workspaces().await.unwrap();
        assert_eq!(list[0].handlers, ["合成 花子"]);
        assert_eq!(list[0].deleted_on, Some(d("2028-07-01")));
        reg.close().await;
    }
}

#[tokio::test]
async fn r4_type_i_users_get_no_workspace_on_every_backend() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        for m in sample_committee(6) {
            reg.add_committee_member(&m).await.unwrap();
        }
        let id = approved(&reg, true).await;
        let err = reg.open_workspace(&id, &hanako(), &["rel-1".into()], d("2026-07-02")).await.unwrap_err();
        assert!(err.to_string().contains("Type II"), "{err}");
        reg.close().await;
    }
}

#[tokio::test]
async fn r7_d9_requests_need_the_creators_decision_and_takeouts_a_checker_on_every_backend() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        for m in sample_committee(6) {
            reg.add_committee_member(&m).await.unwrap();
        }
        let id = approved(&reg, false).await;
        let wid = reg.open_workspace(&id, &hanako(), &["rel-1".into()], d("2026-07-02")).await.unwrap().workspace_id;
        let ask = WsCommand::Request {
            account_id: "acct-hanako".into(),
            kind: RequestKind::OwnData,
            detail: "自施設のコホート表を結合したい".into(),
        };
        reg.execute_workspace(&wid, &ask).await.unwrap();
        let add = WsCommand::AddOwnData { index: 0, table: "own_cohort".into(), rows: 10 };
        let err = reg.execute_workspace(&wid, &add).await.unwrap_err();
        assert!(err.to_string().contains("R7"), "not before approval: {err}");
        let self_decide =
            WsCommand::DecideRequest { index: 0, granted: true, reason: "ok".into(), by: "acct-hanako".into() };
        assert!(reg.execute_workspace(&wid, &self_decide).await.is_err());
        let decide =
            WsCommand::DecideRequest {
                index: 0, granted: true, reason: "契約の範囲内".into(), by: "acct-sec".into()
            };
        reg.execute_workspace(&wid, &decide).await.unwrap();
        let s = reg.execute_workspace(&wid, &add).await.unwrap();
        assert_eq!(s.tables, ["own_cohort"]);
        assert!(reg.execute_workspace(&wid, &add).await.is_err(), "a request is used once");
        let takeout = |passed| WsCommand::TakeoutChecked {
            takeout_id: if passed { "tko-1" } else { "tko-2" }.into(),
            result_id: "res-1".into(),
            account_id: "acct-hanako".into(),
            passed,
        };
        reg.execute_workspace(&wid, &takeout(true)).await.unwrap();
        reg.execute_workspace(&wid, &takeout(false)).await.unwrap();
        let approve = |t: &str, who: &str| WsCommand::TakeoutDecided {
            takeout_id: t.into(),
            approved: true,
            checker: who.into(),
            table_sha256: Some("ab".repeat(32)),
        };
        assert!(reg.execute_workspace(&wid, &approve("tko-1", "acct-hanako")).await.is_err(), "no self-approval");
        assert!(reg.execute_workspace(&wid, &approve("tko-2", "acct-chk")).await.is_err(), "failed tables stay in");
        let s = reg.execute_workspace(&wid, &approve("tko-1", "acct-chk")).await.unwrap();
        assert_eq!(s.takeouts[0].decision, Some((true, "acct-chk".into())));
        assert_eq!(reg.workspace_state(&wid).await.unwrap(), s, "the stored log replays to the same state");
        reg.close().await;
    }
}
