//! The registry's behaviour, run against SQLite always and against a real PostgreSQL server
//! when `KIBAN_TEST_POSTGRES_URL` names one (CI starts one; under CI its absence is a failure).

use kiban_registry::{Backend, MIGRATIONS, Registry, RegistryError};
use rand::RngExt;

mod registry {
    pub mod compliance;
    pub mod gate_props;
    pub mod intake;
    pub mod outputs;
    pub mod processing;
    pub mod review;
    pub mod workspace;
}

/// A fresh registry per backend: a temp SQLite file, and a new database on the PostgreSQL server.
struct Fresh {
    url: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

async fn fresh_backends() -> Vec<Fresh> {
    let dir = tempfile::tempdir().unwrap();
    let mut v = vec![Fresh {
        url: Registry::sqlite_url(&dir.path().join("registry.sqlite")),
        backend: Backend::Sqlite,
        _dir: Some(dir),
    }];
    match std::env::var("KIBAN_TEST_POSTGRES_URL") {
        Ok(admin) => {
            let name = format!("kiban_test_{:016x}", rand::rng().random::<u64>());
            let reg = Registry::open(&admin).await.expect("PostgreSQL test server reachable");
            reg.execute_admin(&format!("CREATE DATABASE {name}")).await.unwrap();
            reg.close().await;
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
            v.push(Fresh { url: format!("{base}/{name}"), backend: Backend::Postgres, _dir: None });
        }
        Err(_) => assert!(std::env::var("CI").is_err(), "CI must set KIBAN_TEST_POSTGRES_URL so PostgreSQL is tested"),
    }
    v
}

#[tokio::test]
async fn migrations_apply_once_and_forward_only_on_every_backend() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        assert_eq!(reg.backend(), f.backend);
        assert_eq!(reg.migration_status().await.unwrap().pending.len(), MIGRATIONS.len());
        assert!(matches!(Registry::open_current(&f.url).await, Err(RegistryError::Pending(_))));
        let applied = reg.migrate().await.unwrap();
        assert_eq!(applied, MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>());
        assert!(reg.migrate().await.unwrap().is_empty(), "second run applies nothing");
        assert!(reg.migration_status().await.unwrap().is_current());
        reg.close().await;
        Registry::open_current(&f.url).await.unwrap().close().await;
    }
}

#[tokio::test]
async fn edited_or_newer_migrations_are_refused() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        reg.execute_admin("UPDATE kiban_migrations SET checksum = 'x' WHERE version = 1").await.unwrap();
        let err = reg.migration_status().await.unwrap_err();
        assert!(matches!(err, RegistryError::ChecksumMismatch { version: 1, .. }), "{err}");
        reg.execute_admin(&format!(
            "UPDATE kiban_migrations SET checksum = '{}' WHERE version = 1",
            MIGRATIONS[0].checksum()
        ))
        .await
        .unwrap();
        reg.execute_admin("INSERT INTO kiban_migrations VALUES (9999, 'future', 'x', 'now')").await.unwrap();
        let err = reg.migration_status().await.unwrap_err();
        assert!(err.to_string().contains("9999") && err.to_string().contains("upgrade kiban"), "{err}");
        reg.close().await;
    }
}

#[tokio::test]
async fn providers_and_runs_round_trip_on_every_backend() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        let p = reg.register_provider("prov-a", "合成東京都総合病院（架空）", 13).await.unwrap();
        assert_eq!(p.name, "合成東京都総合病院（架空）");
        // Registering again keeps the first record.
        let again = reg.register_provider("prov-a", "other", 1).await.unwrap();
        assert_eq!(again, p);
        reg.register_provider("prov-b", "B", 27).await.unwrap();
        assert_eq!(
            reg.providers().await.unwrap().iter().map(|p| p.provider_id.as_str()).collect::<Vec<_>>(),
            ["prov-a", "prov-b"]
        );
        reg.start_run("r1", "demo").await.unwrap();
        reg.finish_run("r1", &serde_json::json!({"patients": 10})).await.unwrap();
        assert!(reg.finish_run("r1", &serde_json::json!({})).await.is_err(), "a finished run is not rewritten");
        let runs = reg.runs(10).await.unwrap();
        assert_eq!(runs[0].summary_json.as_deref(), Some(r#"{"patients":10}"#));
        assert_eq!(reg.set_meta_once("data_dir_id", "a").await.unwrap(), "a");
        assert_eq!(reg.set_meta_once("data_dir_id", "b").await.unwrap(), "a");
        reg.close().await;
    }
}

#[tokio::test]
async fn unsupported_and_unreachable_urls_say_what_is_wrong() {
    let err = Registry::open("mysql://x").await.unwrap_err().to_string();
    assert!(err.contains("sqlite: or postgres://"), "{err}");
    let err = Registry::open("postgres://kiban:hunter2@127.0.0.1:1/db").await.unwrap_err().to_string();
    assert!(err.contains("cannot open the registry") && !err.contains("hunter2"), "{err}");
}

mod security {
    use super::fresh_backends;
    use chrono::{Duration, NaiveDate, TimeZone, Utc};
    use kiban_registry::Registry;
    use kiban_registry::accounts::{AccessError, AccountRole, AccountStatus, Vetting, lockout_secs};
    use kiban_registry::incidents::{Contract, LeakItems, RecordError};

    fn t0() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 4, 1, 9, 0, 0).unwrap()
    }

    fn clean_vetting() -> Vetting {
        Vetting {
            checked_on: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            adult_guardianship: false,
            bankruptcy: false,
            conviction_on: None,
            revoked_officer: false,
            organized_crime: false,
            pledge_signed: true,
            note: "住民票・登記されていないことの証明書 seen".into(),
        }
    }

    async fn migrated(url: &str) -> Registry {
        let reg = Registry::open(url).await.unwrap();
        reg.migrate().await.unwrap();
        reg
    }

    #[tokio::test]
    async fn x5_x6_an_idle_session_ends_and_last_seen_is_written_at_most_every_few_seconds() {
        use kiban_registry::accounts::LAST_SEEN_RESOLUTION_SECS;
        for f in fresh_backends().await {
            let reg = migrated(&f.url).await;
            let a = reg.create_account("s.idle", "s", AccountRole::Auditor, "admin", t0()).await.unwrap();
            reg.create_session("h1", &a.account_id, AccountRole::Auditor, "t", t0()).await.unwrap();
            let idle = Duration::minutes(15);
            // A request within the resolution writes nothing: last seen stays t0.
            let s = reg.live_session("h1", idle, t0() + Duration::seconds(1)).await.unwrap().unwrap();
            assert!(s.last_seen_at.starts_with("2026-04-01T09:00:00"), "{}", s.last_seen_at);
            let later = t0() + Duration::seconds(LAST_SEEN_RESOLUTION_SECS + 1);
            assert!(reg.live_session("h1", idle, later).await.unwrap().is_some());
            // Seen at `later`, so 14 minutes after it the session is still live, and the clock moves.
            let s = reg.live_session("h1", idle, later + Duration::minutes(14)).await.unwrap().unwrap();
            assert_eq!(s.last_seen_at, reg_ts(later), "the write at `later` was kept");
            // 16 idle minutes later it has ended, for good.
            let end = later + Duration::minutes(14 + 16);
            assert!(reg.live_session("h1", idle, end).await.unwrap().is_none(), "{}", f.url);
            assert!(reg.live_session("h1", idle, end + Duration::seconds(1)).await.unwrap().is_none());
        }
    }

    fn reg_ts(t: chrono::DateTime<Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    #[tokio::test]
    async fn x1_provider_clerk_scope_grants_and_revocations_are_appended_and_the_latest_holds() {
        use kiban_registry::scopes::ScopeError;
        for f in fresh_backends().await {
            let reg = migrated(&f.url).await;
            for p in ["prov-a", "prov-b"] {
                reg.register_provider(p, p, 13).await.unwrap();
            }
            let c =
                reg.create_account("clerk.x", "事務 一郎", AccountRole::ProviderClerk, "admin", t0()).await.unwrap();
            let o = reg.create_account("op.x", "受付 二郎", AccountRole::IntakeOperator, "admin", t0()).await.unwrap();
            assert!(reg.provider_scope(&c.account_id).await.unwrap().is_empty(), "no provider until granted");
            reg.set_provider_scope(&c.account_id, "prov-a", true, "admin", t0()).await.unwrap();
            reg.set_provider_scope(&c.account_id, "prov-b", true, "admin", t0() + Duration::seconds(1)).await.unwrap();
            reg.set_provider_scope(&c.account_id, "prov-a", false, "admin", t0() + Duration::seconds(2)).await.unwrap();
            assert_eq!(reg.provider_scope(&c.account_id).await.unwrap(), vec!["prov-b".to_owned()], "{:?}", f.backend);
            let e = reg.set_provider_scope(&o.account_id, "prov-a", true, "admin", t0()).await.unwrap_err();
            assert!(matches!(e, ScopeError::NotAClerk { .. }), "{e}");
            let e = reg.set_provider_scope(&c.account_id, "prov-z", true, "admin", t0()).await.unwrap_err();
            assert!(matches!(e, ScopeError::UnknownProvider(_)), "{e}");
        }
    }

    #[tokio::test]
    async fn x5_failed_logins_lock_out_with_exponential_backoff_on_every_backend() {
        assert_eq!((lockout_secs(1), lockout_secs(2)), (0, 0));
        assert_eq!((lockout_secs(3), lockout_secs(4), lockout_secs(5)), (30, 60, 120));
        assert_eq!(lockout_secs(60), 24 * 3600, "capped at a day");
        for f in fresh_backends().await {
            let reg = migrated(&f.url).await;
            let a = reg.create_account("auditor.a", "監査 太郎", AccountRole::Auditor, "admin", t0()).await.unwrap();
            assert_eq!(a.status, AccountStatus::PendingSetup);
            for i in 1..=2 {
                let l = reg.record_login_failure(&a.account_id, "127.0.0.1", t0()).await.unwrap();
                assert_eq!((l.failed_count, l.locked_until), (i, None));
            }
            let l = reg.record_login_failure(&a.account_id, "127.0.0.1", t0()).await.unwrap();
            assert_eq!(l.locked_until, Some(t0() + Duration::seconds(30)));
            let acct = reg.account(&a.account_id).await.unwrap();
            assert!(acct.locked_out_at(t0() + Duration::seconds(29)));
            assert!(!acct.locked_out_at(t0() + Duration::seconds(31)));
            let l = reg.record_login_failure(&a.account_id, "127.0.0.1", t0()).await.unwrap();
            assert_eq!(l.locked_until, Some(t0() + Duration::seconds(60)));
            reg.record_login_success(&a.account_id, t0()).await.unwrap();
            assert_eq!(reg.account(&a.account_id).await.unwrap().failed_count, 0);
            let kinds: Vec<_> = reg.account_events(&a.account_id).await.unwrap().into_iter().map(|e| e.kind).collect();
            assert_eq!(kinds.iter().filter(|k| *k == "login_failed").count(), 4);
            assert_eq!(kinds.iter().filter(|k| *k == "lockout").count(), 2);
            reg.close().await;
        }
    }

    #[tokio::test]
    async fn x5_reset_needs_identity_note_spends_credentials_and_is_recorded() {
        for f in fresh_backends().await {
            let reg = migrated(&f.url).await;
            let a = reg.create_account("clerk.b", "B", AccountRole::ProviderClerk, "admin-1", t0()).await.unwrap();
            let exp = t0() + Duration::hours(24);
            reg.issue_setup_token(&a.account_id, "tok-hash-1", exp, false, "", "admin-1", t0()).await.unwrap();
            // A wrong or expired token does not set anything.
            let bad = reg.complete_setup(&a.account_id, "other", "$argon2id$x", false, "ab", &[], t0()).await;
            assert!(matches!(bad, Err(AccessError::BadSetupToken)));
            let late = reg.complete_setup(&a.account_id, "tok-hash-1", "$argon2id$x", false, "ab", &[], exp).await;
            assert!(matches!(late, Err(AccessError::BadSetupToken)));
            let codes = vec!["c1".to_owned(), "c2".to_owned()];
            reg.complete_setup(&a.account_id, "tok-hash-1", "$argon2id$x", true, "ab", &codes, t0()).await.unwrap();
            let acct = reg.account(&a.account_id).await.unwrap();
            assert_eq!(acct.status, AccountStatus::Active);
            assert!(acct.totp_enrolled && acct.password_long);
            // The token is spent.
            let again = reg.complete_setup(&a.account_id, "tok-hash-1", "$argon2id$y", true, "ab", &[], t0()).await;
            assert!(again.is_err());
            assert!(reg.use_recovery_code(&a.account_id, "c1", t0()).await.unwrap());
            assert!(!reg.use_recovery_code(&a.account_id, "c1", t0()).await.unwrap(), "one-time");
            assert!(reg.accept_totp_step(&a.account_id, 100).await.unwrap());
            assert!(!reg.accept_totp_step(&a.account_id, 100).await.unwrap(), "a TOTP step is accepted once");
            // A reset without a note is refused; with one it clears the password and is recorded.
            let no_note = reg.issue_setup_token(&a.account_id, "tok2", exp, true, "  ", "admin-1", t0()).await;
            assert!(matches!(no_note, Err(AccessError::NoIdentityNote)));
            reg.issue_setup_token(&a.account_id, "tok2", exp, true, "在留カード checked at desk", "admin-1", t0())
                .await
                .unwrap();
            let creds = reg.credentials(&a.account_id).await.unwrap();
            assert!(creds.password_hash.is_none() && creds.totp_sealed.is_none());
            assert!(!format!("{creds:?}").contains("tok2"), "Debug hides credentials");
            assert_eq!(reg.recovery_codes_left(&a.account_id).await.unwrap(), 0);
            let ev = reg.account_events(&a.account_id).await.unwrap();
            let reset = ev.iter().find(|e| e.kind == "reset_issued").unwrap();
            assert_eq!((reset.by_account.as_str(), reset.note.as_str()), ("admin-1", "在留カード checked at desk"));
            reg.close().await;
        }
    }

    #[test]
    fn x5_password_expires_after_two_months_unless_long() {
        let mut a = kiban_registry::accounts::Account {
            account_id: "a".into(),
            login: "a".into(),
            display_name: "a".into(),
            role: AccountRole::Auditor,
            status: AccountStatus::Active,
            password_set_at: Some("2026-01-31T00:00:00Z".into()),
            password_long: false,
            totp_enrolled: true,
            failed_count: 0,
            locked_until: None,
            last_login_at: None,
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        assert!(!a.password_expired_at(Utc.with_ymd_and_hms(2026, 3, 30, 0, 0, 0).unwrap()));
        assert!(a.password_expired_at(Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap()));
        a.password_long = true;
        assert!(!a.password_expired_at(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()));
    }

    #[tokio::test]
    async fn x2_unvetted_or_untrained_handler_cannot_be_given_access() {
        for f in fresh_backends().await {
            let reg = migrated(&f.url).await;
            let h = reg.create_account("handler.c", "C", AccountRole::Handler, "admin", t0()).await.unwrap();
            let exp = t0() + Duration::hours(1);
            let err = reg.issue_setup_token(&h.account_id, "t", exp, false, "", "admin", t0()).await.unwrap_err();
            assert!(
                err.to_string().contains("no disqualification check") && err.to_string().contains("training"),
                "{err}"
            );
            // A conviction ended 3 years ago disqualifies (5 years required).
            let mut v = clean_vetting();
            v.conviction_on = NaiveDate::from_ymd_opt(2023, 4, 1);
            reg.record_vetting(&h.account_id, &v, "so", t0()).await.unwrap();
            let (d, e) = (NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(), NaiveDate::from_ymd_opt(2027, 3, 1).unwrap());
            reg.record_training(&h.account_id, "個人情報保護研修", d, e, "so", t0()).await.unwrap();
            let err = reg.issue_setup_token(&h.account_id, "t", exp, false, "", "admin", t0()).await.unwrap_err();
            assert!(err.to_string().contains("less than 5 years"), "{err}");
            let mut later = clean_vetting();
            later.checked_on = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
            reg.record_vetting(&h.account_id, &later, "so", t0()).await.unwrap();
            reg.issue_setup_token(&h.account_id, "t", exp, false, "", "admin", t0()).await.unwrap();
            // Training expires: the role cannot be given again after that.
            let after = Utc.with_ymd_and_hms(2027, 3, 2, 0, 0, 0).unwrap();
            assert!(reg.clearance(&h.account_id, AccountRole::Handler, after.date_naive()).await.unwrap().len() == 1);
            // Moving an unvetted account into a handling role is refused; a non-handling role is not.
            let c = reg.create_account("committee.d", "D", AccountRole::CommitteeMember, "admin", t0()).await.unwrap();
            let err = reg.set_role(&c.account_id, AccountRole::ProcessingEngineer, "admin", t0()).await.unwrap_err();
            assert!(matches!(err, AccessError::NotCleared { .. }), "{err}");
            reg.set_role(&c.account_id, AccountRole::Auditor, "admin", t0()).await.unwrap();
            reg.close().await;
        }
    }

    #[tokio::test]
    async fn i1_i2_i3_i4_leak_deadlines_escalations_complaints_and_contractors() {
        for f in fresh_backends().await {
            let reg = migrated(&f.url).await;
            let items = LeakItems { summary: "USB 紛失".into(), persons: 120, ..Default::default() };
            let plain = reg.open_leak_report(t0(), false, &items, "so", t0()).await.unwrap();
            assert_eq!(plain.deadline, "2026-05-01T09:00:00Z", "30 days");
            let mal = reg.open_leak_report(t0(), true, &items, "so", t0()).await.unwrap();
            assert_eq!(mal.deadline, "2026-05-31T09:00:00Z", "60 days when possibly malicious");
            let incomplete = reg.update_leak_report(&plain.report_id, &items, true, "so", t0()).await;
            assert!(matches!(incomplete, Err(RecordError::Missing(_))), "a confirmed report needs the nine items");
            let full = LeakItems {
                items: "氏名, 生年月日".into(),
                cause: "持出し".into(),
                secondary_damage: "なし".into(),
                response_to_persons: "通知済".into(),
                publication: "公表済".into(),
                prevention: "USB 禁止".into(),
                ..items.clone()
            };
            let fin = reg.update_leak_report(&plain.report_id, &full, true, "so", t0()).await.unwrap();
            assert_eq!(fin.first_reported_at, plain.first_reported_at);
            let current = reg.leak_reports().await.unwrap();
            assert_eq!(current.len(), 2, "superseded rows are kept but not current");
            let overdue = reg.overdue_leak_reports(t0() + Duration::days(31)).await.unwrap();
            assert!(overdue.is_empty(), "the malicious one has 60 days, the other is final");
            let overdue = reg.overdue_leak_reports(t0() + Duration::days(61)).await.unwrap();
            assert_eq!(overdue.iter().map(|r| r.report_id.as_str()).collect::<Vec<_>>(), [mal.report_id.as_str()]);

            let inc =
                reg.record_incident(t0(), "monitor", "不正アクセス", "5 failed logins", "high", t0()).await.unwrap();
            let inc = reg.escalate_incident(&inc.incident_id, "responsible_officer", "so", "", t0()).await.unwrap();
            assert_eq!(inc.escalations.len(), 1);

            let d = NaiveDate::from_ymd_opt(2026, 4, 1).unwrap();
            let c = reg.record_complaint(d, "通知が届かない", "", "", None, "sec", t0()).await.unwrap();
            assert_eq!(c.retention_end, "2029-04-01", "kept 3 years");
            reg.record_complaint(d, "通知が届かない", "住所誤り", "確認手順追加", Some(&c.complaint_id), "sec", t0())
                .await
                .unwrap();
            let cs = reg.complaints().await.unwrap();
            assert_eq!((cs.len(), cs[0].cause.as_str()), (1, "住所誤り"));

            let mut k = Contract {
                name: "合成委託株式会社".into(),
                certification: String::new(),
                scope: "保守".into(),
                procedures: "p".into(),
                right_to_verify: "r".into(),
                instructions: "i".into(),
                instruction_checks: "c".into(),
                reporting: "漏えい時は即時報告".into(),
                other_terms: String::new(),
                contracted_on: "2026-04-01".into(),
            };
            assert!(matches!(reg.record_contractor(&k, "sec", t0()).await, Err(RecordError::NotCertified)));
            k.certification = "認定-0001".into();
            let ctr = reg.record_contractor(&k, "sec", t0()).await.unwrap();
            let ctr = reg.record_contractor_audit(&ctr.contractor_id, d, "auditor", "ok", true, t0()).await.unwrap();
            assert_eq!(ctr.audits.len(), 1);
            reg.close().await;
        }
    }
}
