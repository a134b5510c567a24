//! The server as a client meets it: real HTTP on 127.0.0.1, a real registry and audit log.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration, NaiveDate, Utc};
use http_body_util::BodyExt;
use kiban_audit::{Action, AuditLog, AuditSink, CheckpointKey, ObjectKind, Outcome};
use kiban_registry::Registry;
use kiban_registry::accounts::{AccountRole, Vetting};
use kiban_server::{AppState, Authz, Inner, RouteDesc, ServerConfig, auth, gateway};
use proptest::prelude::*;
use tower::ServiceExt;

/// A test-only sealer (XOR with a fixed pad plus a tag); the binary uses the key store.
struct TestSealer;

impl kiban_server::Sealer for TestSealer {
    fn seal(&self, aad: &[u8], pt: &[u8]) -> Vec<u8> {
        let mut v: Vec<u8> = pt.iter().map(|b| b ^ 0x5a).collect();
        v.extend_from_slice(&aad[..aad.len().min(8)]);
        v
    }
    fn open(&self, aad: &[u8], s: &[u8]) -> Option<Vec<u8>> {
        let tag = &aad[..aad.len().min(8)];
        let body = s.strip_suffix(tag)?;
        Some(body.iter().map(|b| b ^ 0x5a).collect())
    }
}

struct Fixture {
    st: AppState,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(&Registry::sqlite_url(&dir.path().join("registry.sqlite"))).await.unwrap();
    reg.migrate().await.unwrap();
    let key = CheckpointKey::from_bytes(&[7u8; 32]).unwrap();
    let audit = Arc::new(AuditLog::open(dir.path().join("audit"), key.clone()).unwrap());
    let st = Arc::new(Inner {
        reg,
        audit,
        sealer: Arc::new(TestSealer),
        authz: Authz::builtin(),
        cfg: ServerConfig::default(),
        audit_key: key,
        data_dir: dir.path().to_owned(),
    });
    Fixture { st, _dir: dir }
}

/// Creates a cleared account for `role`, completes setup; returns (account id, TOTP secret).
async fn enrolled(st: &AppState, login: &str, role: AccountRole, password: &str) -> (String, Vec<u8>) {
    let now = Utc::now();
    let a = st.reg.create_account(login, "テスト", role, "admin", now).await.unwrap();
    clear(st, &a.account_id).await;
    let token = auth::issue_setup(&st.reg, &a.account_id, false, "", "admin", now).await.unwrap();
    let r = auth::complete_setup(&st.reg, st.sealer.as_ref(), login, &token, password, now).await.unwrap();
    (a.account_id, auth::from_base32(&r.totp_base32).unwrap())
}

async fn clear(st: &AppState, id: &str) {
    let today = Utc::now().date_naive();
    let v = Vetting {
        checked_on: today,
        adult_guardianship: false,
        bankruptcy: false,
        conviction_on: None,
        revoked_officer: false,
        organized_crime: false,
        pledge_signed: true,
        note: "checked".into(),
    };
    st.reg.record_vetting(id, &v, "so", Utc::now()).await.unwrap();
    st.reg.record_training(id, "研修", today, today + Duration::days(365), "so", Utc::now()).await.unwrap();
}

async fn spawn(router: axum::Router) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(l, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    addr
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header("host", "127.0.0.1");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = send.send_request(req.body(body.to_owned()).unwrap()).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Resp { status, headers, body }
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const PW: &str = "kiban-Pass-1!";

fn now_unix() -> u64 {
    Utc::now().timestamp() as u64
}

async fn login(addr: SocketAddr, login: &str, password: &str, code: &str) -> Resp {
    http(addr, "POST", "/login", &[FORM], &form(&[("login", login), ("password", password), ("totp", code)])).await
}

fn cookie_of(r: &Resp) -> String {
    let c = r.headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
    c.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn x5_x6_login_with_password_and_totp_then_api_call_is_audited() {
    let f = fixture().await;
    let (id, secret) = enrolled(&f.st, "so.tanaka", AccountRole::SecurityOfficer, PW).await;
    let addr = spawn(kiban_server::router(f.st.clone())).await;

    let page = http(addr, "GET", "/login", &[], "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("lang=\"ja\"") && page.body.contains("ログイン") && !page.body.contains("<script"));

    // Without a session: 401.
    assert_eq!(http(addr, "GET", "/api/incidents", &[], "").await.status, StatusCode::UNAUTHORIZED);
    // Password without the right TOTP: refused.
    let r = login(addr, "so.tanaka", PW, "000000").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.get("set-cookie").is_none());

    let r = login(addr, "so.tanaka", PW, &auth::totp_code(&secret, now_unix())).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains("Secure"), "{set}");
    let cookie = cookie_of(&r);
    // The same TOTP code is not accepted twice (RFC 6238 §5.2).
    let replay = login(addr, "so.tanaka", PW, &auth::totp_code(&secret, now_unix())).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);

    let me = http(addr, "GET", "/api/me", &[("cookie", &cookie)], "").await;
    assert!(me.body.contains("security_officer"), "{}", me.body);
    let inc = http(
        addr,
        "POST",
        "/api/incidents",
        &[("cookie", &cookie), ("content-type", "application/json")],
        r#"{"risk_item":"不正アクセス","description":"port scan","severity":"high"}"#,
    )
    .await;
    assert_eq!(inc.status, StatusCode::OK, "{}", inc.body);
    // A role outside the table is refused and the refusal is audited.
    let denied =
        http(addr, "POST", "/api/complaints", &[("cookie", &cookie), ("content-type", "application/json")], "{}").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let verify = http(addr, "POST", "/api/audit/verify", &[("cookie", &cookie)], "").await;
    assert!(verify.body.contains("\"intact\":true"), "{}", verify.body);
    let out = http(addr, "POST", "/logout", &[("cookie", &cookie)], "").await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(http(addr, "GET", "/api/me", &[("cookie", &cookie)], "").await.status, StatusCode::UNAUTHORIZED);

    f.st.audit.flush().unwrap();
    let entries =
        f.st.audit.read(&kiban_audit::Actor::system(), "test", kiban_audit::Seq(1), kiban_audit::Seq(1000)).unwrap();
    let mine = |a: Action, o: Outcome| {
        entries.iter().any(|e| e.event.actor.id == id && e.event.action == a && e.event.outcome == o)
    };
    assert!(mine(Action::Login, Outcome::Success) && mine(Action::Login, Outcome::Failure));
    assert!(mine(Action::Write, Outcome::Success) && mine(Action::Read, Outcome::Denied));
    assert!(mine(Action::Verify, Outcome::Success) && mine(Action::Logout, Outcome::Success));
    assert!(entries.iter().any(|e| e.event.object.kind == ObjectKind::Ledger && e.event.actor.id == id));
    // No secret reaches the log.
    let text = serde_json::to_string(&entries).unwrap();
    assert!(!text.contains(PW) && !text.contains(cookie.split('=').nth(1).unwrap()));
}

#[tokio::test]
async fn x4_x5_brute_force_is_locked_out_and_alerted() {
    let f = fixture().await;
    let (_, secret) = enrolled(&f.st, "aud.sato", AccountRole::Auditor, PW).await;
    let addr = spawn(kiban_server::router(f.st.clone())).await;
    for _ in 0..6 {
        let r = login(addr, "aud.sato", "wrong-Pass-1!", "123456").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Locked out now: even the right password and code are refused.
    let r = login(addr, "aud.sato", PW, &auth::totp_code(&secret, now_unix())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("しばらくログインできません"), "{}", r.body);
    let acct = f.st.reg.account_by_login("aud.sato").await.unwrap().unwrap();
    assert!(
        acct.locked_out_at(Utc::now()) && acct.failed_count == 3,
        "attempts while locked out are refused unchecked"
    );
    assert!(
        f.st.audit.alerts().iter().any(|a| a.rule == "repeated-login-failures"),
        "repeated failures raise an alert: {:?}",
        f.st.audit.alerts()
    );
}

#[tokio::test]
async fn x5_recovery_code_works_once_and_reset_issues_a_setup_token_only() {
    let f = fixture().await;
    let now = Utc::now();
    let a = f.st.reg.create_account("sec.ito", "伊藤", AccountRole::Secretariat, "admin", now).await.unwrap();
    clear(&f.st, &a.account_id).await;
    let token = auth::issue_setup(&f.st.reg, &a.account_id, false, "", "admin", now).await.unwrap();
    let r = auth::complete_setup(&f.st.reg, f.st.sealer.as_ref(), "sec.ito", &token, PW, now).await.unwrap();
    assert!(!format!("{r:?}").contains(r.totp_base32.as_str()), "Debug hides the secret");
    let addr = spawn(kiban_server::router(f.st.clone())).await;
    let code = r.recovery_codes[0].as_str();
    assert_eq!(login(addr, "sec.ito", PW, code).await.status, StatusCode::SEE_OTHER);
    assert_eq!(login(addr, "sec.ito", PW, code).await.status, StatusCode::UNAUTHORIZED, "one-time");
    // A weak password is refused at setup.
    let t2 = auth::issue_setup(&f.st.reg, &a.account_id, true, "運転免許証で本人確認", "admin", now).await.unwrap();
    let weak = auth::complete_setup(&f.st.reg, f.st.sealer.as_ref(), "sec.ito", &t2, "password", now).await;
    assert!(weak.is_err());
    // After the reset the old password no longer works.
    assert_eq!(login(addr, "sec.ito", PW, r.recovery_codes[1].as_str()).await.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn x5_password_rules() {
    assert!(auth::check_password_rules("abc1!").is_err(), "too short");
    assert!(auth::check_password_rules("abcdefgh1").is_err(), "no symbol");
    assert!(auth::check_password_rules("abcdefgh!").is_err(), "no digit");
    assert!(auth::check_password_rules("12345678!").is_err(), "no letter");
    assert_eq!(auth::check_password_rules("abcd123!"), Ok(false), "8 mixed: valid, expires");
    assert_eq!(auth::check_password_rules("abcdefgh1234!"), Ok(true), "13: does not expire");
    let h = auth::hash_password("abcd123!");
    assert!(h.starts_with("$argon2id$") && !h.contains("abcd123!"));
    assert!(auth::verify_password("abcd123!", &h) && !auth::verify_password("abcd123?", &h));
}

fn fill(path: &str) -> String {
    path.replace("{id}", "1").replace("{provider}", "p").replace("{name}", "n")
}

#[tokio::test]
async fn x1_every_route_and_role_matches_the_authz_table() {
    let f = fixture().await;
    let authz = Authz::builtin();
    let lists: Vec<fn() -> Vec<RouteDesc>> =
        vec![kiban_server::routes, gateway::intake_routes, gateway::release_routes];
    let mut seen = Vec::new();
    let mut tokens = Vec::new();
    for role in AccountRole::ALL {
        let a = f.st.reg.create_account(&format!("r.{role}"), "r", role, "admin", Utc::now()).await.unwrap();
        tokens.push((role, a.account_id));
    }
    let mut checked = 0;
    for list in lists {
        let descs: Vec<(String, String)> = list().iter().map(|d| (d.method.to_string(), d.path.to_owned())).collect();
        let router = kiban_server::build_router(f.st.clone(), list());
        for (method, path) in &descs {
            let key = format!("{method} {path}");
            assert!(authz.rule(method, path).is_some(), "{key} is not in authz.toml (it would be denied to all)");
            seen.push(key.clone());
            for (role, id) in &tokens {
                // A fresh session per request: POST /logout ends the one it is given.
                let token = auth::new_token();
                f.st.reg.create_session(&auth::sha256_hex(&token), id, *role, "test", Utc::now()).await.unwrap();
                let req = Request::builder()
                    .method(method.as_str())
                    .uri(fill(path))
                    .header("cookie", format!("kiban_session={}", token.as_str()))
                    .header("content-type", "application/json")
                    .body(Body::from("{}"))
                    .unwrap();
                let res = router.clone().oneshot(req).await.unwrap();
                let status = res.status();
                let passed = status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED;
                assert_eq!(passed, authz.allows(method, path, *role), "{key} as {role}: {status}");
                checked += 1;
            }
            let anon = Request::builder().method(method.as_str()).uri(fill(path)).body(Body::empty()).unwrap();
            let status = router.clone().oneshot(anon).await.unwrap().status();
            assert_eq!(status != StatusCode::UNAUTHORIZED, authz.is_public(method, path), "{key} anonymous: {status}");
        }
    }
    assert_eq!(checked, seen.len() * AccountRole::ALL.len());
    let mut table: Vec<String> = authz.routes().map(str::to_owned).collect();
    table.sort();
    seen.sort();
    assert_eq!(table, seen, "every table row is a route and every route a table row");
}

#[test]
fn r12_intake_gateway_returns_no_data_and_release_gateway_accepts_no_body() {
    for d in gateway::intake_routes() {
        assert_eq!(d.method, axum::http::Method::POST, "intake route {} must only receive", d.path);
    }
    for d in gateway::release_routes() {
        assert!(
            d.method == axum::http::Method::GET || d.method == axum::http::Method::HEAD,
            "release route {} must only send",
            d.path
        );
    }
    // No outbound client in the gateway's source.
    let src = include_str!("../src/gateway.rs");
    for needle in ["TcpStream", "reqwest", "hyper::client", "connect("] {
        assert!(!src.contains(needle), "gateway.rs holds an outbound client path: {needle}");
    }
}

#[tokio::test]
async fn r12_intake_stores_into_the_inbox_and_release_serves_only_the_recipients_packages() {
    let f = fixture().await;
    let (_, clerk) = enrolled(&f.st, "clerk.k", AccountRole::ProviderClerk, PW).await;
    let (hid, handler) = enrolled(&f.st, "user.u", AccountRole::Handler, PW).await;
    let main = spawn(kiban_server::router(f.st.clone())).await;
    let intake = spawn(kiban_server::build_router(f.st.clone(), gateway::intake_routes())).await;
    let release = spawn(kiban_server::build_router(f.st.clone(), gateway::release_routes())).await;
    let c1 = cookie_of(&login(main, "clerk.k", PW, &auth::totp_code(&clerk, now_unix())).await);
    let r = http(intake, "POST", "/intake/prov-a/batch1.csv", &[("cookie", &c1)], "a,b\n1,2\n").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let inbox = f.st.data_dir.join("staging/inbox/prov-a");
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 1);
    assert_eq!(
        http(intake, "GET", "/intake/prov-a/batch1.csv", &[("cookie", &c1)], "").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let out = f.st.data_dir.join("releases/outbox").join(&hid);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("pkg-1.zip"), b"PK").unwrap();
    let c2 = cookie_of(&login(main, "user.u", PW, &auth::totp_code(&handler, now_unix())).await);
    let r = http(release, "GET", "/release/packages/pkg-1.zip", &[("cookie", &c2)], "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "PK"));
    assert_eq!(
        http(release, "POST", "/release/packages/pkg-1.zip", &[("cookie", &c2)], "x").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // The clerk is not a recipient.
    assert_eq!(http(release, "GET", "/release/packages", &[("cookie", &c1)], "").await.status, StatusCode::FORBIDDEN);
    let alerts_or_entries = f.st.audit.last_seq().get();
    assert!(alerts_or_entries > 4);
}

#[test]
fn x5_arbitrary_passwords_do_not_match_a_stored_hash() {
    // Argon2 is slow without optimization: a few cases suffice to show no input slips through.
    let h = auth::hash_password(PW);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(6));
    runner
        .run(&".{0,40}", |s| {
            prop_assert!(s == PW || !auth::verify_password(&s, &h));
            Ok(())
        })
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn x5_arbitrary_cookie_and_totp_input_never_panics_or_authenticates(bytes in proptest::collection::vec(any::<u8>(), 0..200), t in any::<u64>()) {
        let s = String::from_utf8_lossy(&bytes);
        if let Some(tok) = kiban_server::session_token(&s) {
            prop_assert!(tok.len() == 64 && s.contains("kiban_session="));
        }
        prop_assert!(auth::totp_check(&[1u8; 20], &s, t % 4_000_000_000).is_none() || s.len() == 6);
        let _ = auth::from_base32(&s);
        prop_assert!(!auth::verify_password(&s, &s), "arbitrary text is never a hash of itself");
    }
}

#[tokio::test]
async fn x5_arbitrary_login_bodies_never_authenticate() {
    let f = fixture().await;
    enrolled(&f.st, "so.x", AccountRole::SecurityOfficer, PW).await;
    let router = kiban_server::router(f.st.clone());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(12));
    let strat = (
        proptest::collection::vec(any::<u8>(), 0..300),
        prop_oneof![Just("so.x".to_owned()), ".{0,20}"],
        ".{0,20}",
        "[0-9]{6}",
    );
    for _ in 0..12 {
        let (raw, login, pw, code) = proptest::strategy::ValueTree::current(&strategy_tree(&strat, &mut runner));
        for body in [raw.clone(), form(&[("login", &login), ("password", &pw), ("totp", &code)]).into_bytes()] {
            let req = Request::builder()
                .method("POST")
                .uri("/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", raw.iter().filter(|b| b.is_ascii_graphic()).map(|b| *b as char).collect::<String>())
                .body(Body::from(body))
                .unwrap();
            let res = router.clone().oneshot(req).await.unwrap();
            assert!(res.status() != StatusCode::SEE_OTHER && res.headers().get("set-cookie").is_none());
        }
    }
    let _ = f.st.audit.record(kiban_audit::Event::new(
        kiban_audit::Actor::system(),
        "test",
        Action::Verify,
        kiban_audit::Object::new(ObjectKind::Audit, "x"),
    ));
    let _ = NaiveDate::MIN;
}

fn strategy_tree<S: Strategy>(s: &S, r: &mut proptest::test_runner::TestRunner) -> S::Tree {
    s.new_tree(r).unwrap()
}

#[tokio::test]
async fn s5_deid_text_endpoint_returns_tagged_text_and_audits_no_content() {
    let f = fixture().await;
    let router = kiban_server::router(f.st.clone());
    let a =
        f.st.reg.create_account("pe.deid", "r", AccountRole::ProcessingEngineer, "admin", Utc::now()).await.unwrap();
    let call = |mode: &str| {
        let token = auth::new_token();
        let body = serde_json::json!({"text": "山田太郎さん（95歳）は令和5年4月1日に入院。電話 03-1234-5678。", "mode": mode, "shift_days": 3});
        (token, body.to_string())
    };
    for (mode, want) in [
        ("tag", "［氏名］さん（［年齢］）は［日付］に入院。電話 ［電話］。"),
        ("pseudo", "［氏名］さん（90歳以上）は令和5年4月4日に入院。電話 ［電話］。"),
    ] {
        let (token, body) = call(mode);
        f.st.reg
            .create_session(&auth::sha256_hex(&token), &a.account_id, AccountRole::ProcessingEngineer, "t", Utc::now())
            .await
            .unwrap();
        let req = Request::builder()
            .method("POST")
            .uri("/api/deid/text")
            .header("cookie", format!("kiban_session={}", token.as_str()))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{mode}");
        let v: serde_json::Value =
            serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(v["text"], want, "{mode}");
        assert!(v["spans"].as_array().unwrap().iter().any(|s| s["tag"] == "person"));
    }
    // The audit log names the operation, never the text.
    f.st.audit.flush().unwrap();
    let entries =
        f.st.audit.read(&kiban_audit::Actor::system(), "test", kiban_audit::Seq(1), kiban_audit::Seq(1000)).unwrap();
    let logged: String = entries.iter().map(|e| format!("{e:?}\n")).collect();
    assert!(logged.contains("deid-text/tag"), "the call is audited: {logged}");
    assert!(!logged.contains("山田") && !logged.contains("03-1234-5678"), "no content in the audit log");
}

#[tokio::test]
async fn s1_s3_pseudonymize_endpoint_applies_the_policy_and_refuses_naming_the_column() {
    let f = fixture().await;
    let router = kiban_server::router(f.st.clone());
    let a =
        f.st.reg.create_account("pe.pseudo", "r", AccountRole::ProcessingEngineer, "admin", Utc::now()).await.unwrap();
    let post = |body: serde_json::Value| {
        let router = router.clone();
        let st = f.st.clone();
        let id = a.account_id.clone();
        async move {
            let token = auth::new_token();
            st.reg
                .create_session(&auth::sha256_hex(&token), &id, AccountRole::ProcessingEngineer, "t", Utc::now())
                .await
                .unwrap();
            let req = Request::builder()
                .method("POST")
                .uri("/api/pseudonymize")
                .header("cookie", format!("kiban_session={}", token.as_str()))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let res = router.oneshot(req).await.unwrap();
            let status = res.status();
            let v: serde_json::Value =
                serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap_or_default();
            (status, v)
        }
    };
    let policy = "version = 1\nname = \"http\"\nkind = \"pseudonymization\"\n\
        [[columns]]\nname = \"name\"\nrole = \"identifier\"\n\
        [[columns]]\nname = \"insurer_number\"\nrole = \"id_code\"\ntreatment = \"token\"\n\
        [[columns]]\nname = \"memo\"\nrole = \"keep\"\n";
    let (status, v) = post(serde_json::json!({
        "policy": policy,
        "columns": ["name", "insurer_number", "memo"],
        "rows": [["山田太郎", "06137005", "カード 4111111111111111 で支払い"], ["佐藤花子", null, "HbA1c 7.2"]],
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["columns"], serde_json::json!(["insurer_number", "memo"]), "names deleted (S1)");
    assert_eq!(v["rows"][0][0].as_str().unwrap().len(), 32, "insurer number tokenized (S2)");
    assert!(v["rows"][0][1].as_str().unwrap().contains("［金融］"), "card number removed (S3): {v}");
    assert_eq!(v["rows"][1][0], serde_json::Value::Null);
    assert_eq!(v["rows"][1][1], "HbA1c 7.2", "clinical values kept");
    let bad = policy.replace("role = \"identifier\"", "role = \"keep\"");
    let (status, v) = post(serde_json::json!({"policy": bad, "columns": ["name"], "rows": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v.to_string().contains("column name") && v.to_string().contains("S1"), "{v}");
    let with_path = format!("{policy}[address]\npopulation_table = \"/etc/passwd\"\n");
    let (status, _) = post(serde_json::json!({"policy": with_path, "columns": ["name"], "rows": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no file path from a request");
}
