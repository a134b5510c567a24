//! Visiting-environment workspaces on every backend: opened only for an approved Type II application
//! with its handlers and releases (R4), used only inside the period, closed by the sweep with a
//! fast-forwarded clock, deleted with a deletion record in the ledger and the application (R5),
//! own data and tools only after the creator's approval (R7), take-outs approved by a checker (D9).

use chrono::NaiveDate;
use kiban_registry::Registry;
use kiban_registry::ledger::LedgerKind;
use kiban_registry::review::agreement::UserType;
use kiban_registry::review::application::{ProvisionMethod, sample_application};
use kiban_registry::review::committee::sample_committee;
use kiban_registry::review::sample::{SampleApproval, approve_and_release};
use kiban_registry::review::workflow::{ReleaseSpec, RequestKind};
use kiban_registry::workspace::{WsCommand, WsHandler, WsPhase, WsUpload};

use crate::fresh_backends;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// An approved application; Type II (VDI) unless `type1`; released once as `rel-1`.
async fn approved(reg: &Registry, type1: bool) -> String {
    let mut app = sample_application();
    app.provision_method = ProvisionMethod::Vdi;
    let mut second = app.handlers[0].clone();
    second.name = "合成 次郎".into();
    app.handlers.push(second);
    let mut s = SampleApproval::type2(d("2026-06-01"), d("2026-06-10"), d("2026-06-20"));
    if type1 {
        s.user_type = UserType::TypeI;
    }
    s.release = Some(ReleaseSpec {
        release_id: "rel-1".into(),
        on: d("2026-07-01"),
        manifest_sha256: "0f".repeat(32),
        items: vec!["age_group".into()],
        media: vec![],
        policy_sha256: None,
    });
    approve_and_release(reg, &app, &s, |_| {}).await.unwrap()
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
            upload: None,
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

fn upload(name: &str, format: &str, sha: &str) -> WsUpload {
    WsUpload {
        staged_id: "upl-0123456789abcdef".into(),
        name: name.into(),
        sha256: sha.repeat(32),
        bytes: 10,
        format: format.into(),
        rows: if format == "sql" { 0 } else { 3 },
        columns: vec!["patient".into()],
    }
}

#[tokio::test]
async fn r7_r6_r5_uploads_bind_the_approved_digest_use_can_be_stopped_and_the_roster_changes_are_checked() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        for m in sample_committee(6) {
            reg.add_committee_member(&m).await.unwrap();
        }
        let id = approved(&reg, false).await;
        let wid = reg.open_workspace(&id, &hanako(), &["rel-1".into()], d("2026-07-02")).await.unwrap().workspace_id;
        let ask = |kind, up: WsUpload| WsCommand::Request {
            account_id: "acct-hanako".into(),
            kind,
            detail: "検証済みのコホート定義".into(),
            upload: Some(up),
        };
        // A tool request must carry SQL, own data must not.
        assert!(reg.execute_workspace(&wid, &ask(RequestKind::OwnTools, upload("cohort", "csv", "ab"))).await.is_err());
        assert!(reg.execute_workspace(&wid, &ask(RequestKind::OwnData, upload("cohort", "sql", "ab"))).await.is_err());
        reg.execute_workspace(&wid, &ask(RequestKind::OwnTools, upload("cohort", "sql", "ab"))).await.unwrap();
        reg.execute_workspace(&wid, &ask(RequestKind::OwnData, upload("own_cohort", "csv", "cd"))).await.unwrap();
        let tool = |sha: &str| WsCommand::AddTool { index: 0, name: "cohort".into(), sha256: sha.repeat(32) };
        assert!(
            reg.execute_workspace(&wid, &tool("ab")).await.unwrap_err().to_string().contains("R7"),
            "not before approval"
        );
        let grant =
            |index| WsCommand::DecideRequest {
                index, granted: true, reason: "審査済み".into(), by: "acct-sec".into()
            };
        reg.execute_workspace(&wid, &grant(0)).await.unwrap();
        assert!(reg.execute_workspace(&wid, &tool("ef")).await.is_err(), "only the approved text");
        let s = reg.execute_workspace(&wid, &tool("ab")).await.unwrap();
        assert_eq!(s.tools, [("cohort".to_owned(), "ab".repeat(32))]);
        reg.execute_workspace(&wid, &grant(1)).await.unwrap();
        let wrong = WsCommand::AddOwnData { index: 1, table: "other_name".into(), rows: 3 };
        assert!(reg.execute_workspace(&wid, &wrong).await.is_err(), "the granted table name only");
        let s = reg
            .execute_workspace(&wid, &WsCommand::AddOwnData { index: 1, table: "own_cohort".into(), rows: 3 })
            .await
            .unwrap();
        assert_eq!(s.tables, ["own_cohort"]);
        assert_eq!(s.requests[1].upload.as_ref().unwrap().sha256, "cd".repeat(32));
        // R6: use can be stopped and resumed; while stopped nobody works in it.
        let stop =
            WsCommand::Suspend { on: d("2026-08-01"), reason: "深夜の大量閲覧".into(), by: "acct-sec".into() };
        let s = reg.execute_workspace(&wid, &stop).await.unwrap();
        assert!(s.may_use("acct-hanako", d("2026-08-01")).unwrap_err().to_string().contains("R6"));
        assert!(reg.execute_workspace(&wid, &stop).await.is_err(), "already stopped");
        let s = reg
            .execute_workspace(&wid, &WsCommand::Resume { on: d("2026-08-02"), by: "acct-sec".into() })
            .await
            .unwrap();
        assert!(s.may_use("acct-hanako", d("2026-08-02")).is_ok());
        // R5: a roster change is checked against the application's handlers.
        let stranger = WsHandler { account_id: "acct-x".into(), name: "部外者".into() };
        assert!(
            reg.add_workspace_handler(&wid, &stranger, d("2026-08-03")).await.unwrap_err().to_string().contains("R5")
        );
        let app = reg.application_state(&id).await.unwrap().application.unwrap();
        if let Some(second) = app.handlers.get(1) {
            let h = WsHandler { account_id: "acct-second".into(), name: second.name.clone() };
            let s = reg.add_workspace_handler(&wid, &h, d("2026-08-03")).await.unwrap();
            assert!(s.may_use("acct-second", d("2026-08-03")).is_ok());
        }
        let rm =
            WsCommand::RemoveHandler { account_id: "acct-hanako".into(), on: d("2026-08-04"), reason: "異動".into() };
        let s = reg.execute_workspace(&wid, &rm).await.unwrap();
        assert!(s.may_use("acct-hanako", d("2026-08-04")).is_err(), "a removed handler is out");
        assert!(s.roster_changes.iter().any(|(_, a, why)| a == "acct-hanako" && why.contains("異動")));
        assert_eq!(reg.workspace_state(&wid).await.unwrap(), s, "the stored log replays to the same state");
        reg.close().await;
    }
}
