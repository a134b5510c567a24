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
use kiban_server::identity::WithStore;
use kiban_server::{AppState, Authz, Inner, RouteDesc, ServerConfig, auth, gateway};
use proptest::prelude::*;
use tower::ServiceExt;

mod server {
    pub mod workspace;
}

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

/// The same test sealer, as the datasets' at-rest sealer.
struct TestDatasetSealer;

impl kiban_formats::Sealer for TestDatasetSealer {
    fn seal(&self, aad: &[u8], pt: &[u8]) -> Vec<u8> {
        kiban_server::Sealer::seal(&TestSealer, aad, pt)
    }
    fn open(&self, aad: &[u8], s: &[u8]) -> Result<Vec<u8>, String> {
        kiban_server::Sealer::open(&TestSealer, aad, s).ok_or_else(|| "does not open".to_owned())
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
    path.replace("{id}", "1")
        .replace("{provider}", "p")
        .replace("{name}", "n")
        .replace("{patient}", "x")
        .replace("{batch}", "b")
        .replace("{index}", "0")
        .replace("{tko}", "t")
        .replace("{rid}", "r")
        .replace("{item}", "1")
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
        if role == AccountRole::ProviderClerk {
            // The table is about roles; the provider scope (tested apart) is granted here.
            f.st.reg.register_provider("p", "p", 13).await.unwrap();
            f.st.reg.set_provider_scope(&a.account_id, "p", true, "admin", Utc::now()).await.unwrap();
        }
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
    let (clerk_id, clerk) = enrolled(&f.st, "clerk.k", AccountRole::ProviderClerk, PW).await;
    f.st.reg.register_provider("prov-a", "テスト病院", 13).await.unwrap();
    f.st.reg.set_provider_scope(&clerk_id, "prov-a", true, "admin", Utc::now()).await.unwrap();
    let (hid, handler) = enrolled(&f.st, "user.u", AccountRole::Handler, PW).await;
    let main = spawn(kiban_server::router(f.st.clone())).await;
    let intake = spawn(kiban_server::build_router(f.st.clone(), gateway::intake_routes())).await;
    let release = spawn(kiban_server::build_router(f.st.clone(), gateway::release_routes())).await;
    let c1 = cookie_of(&login(main, "clerk.k", PW, &auth::totp_code(&clerk, now_unix())).await);
    let r = http(intake, "POST", "/intake/prov-a/batch1.csv", &[("cookie", &c1)], "a,b\n1,2\n").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let r = http(intake, "POST", "/intake/prov-b/batch1.csv", &[("cookie", &c1)], "a,b\n1,2\n").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "X1: only the clerk's own provider: {}", r.body);
    let r = http(intake, "POST", "/intake/prov%2Db/batch1.csv", &[("cookie", &c1)], "a,b\n1,2\n").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "an escaped id is the same id: {}", r.body);
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

/// A claims table as a provider's system would send it, as Parquet bytes.
/// A fresh identity store under the data directory (what `kiban serve` opens).
fn identity_store(data_dir: &std::path::Path) -> kiban_identity::store::IdentityStore {
    let keys = kiban_identity::keystore::KeyStore::create(&data_dir.join("keys")).unwrap();
    let audit = kiban_identity::vault::MemoryAudit::default();
    kiban_identity::store::IdentityStore::open(
        &data_dir.join("identity"),
        keys,
        kiban_identity::mpi::MatchConfig::default(),
        &audit,
        "test",
    )
    .unwrap()
}

/// The identifiers `patients_parquet` sends for a patient id (each a string no clinical value may contain).
fn identifiers_of(patient: &str) -> Vec<String> {
    let n: u32 = patient[1..].parse().unwrap();
    vec![
        patient.to_owned(),
        format!("合成{}", ["一", "二", "三", "四", "五"][n as usize - 1]),
        "ゴウセイ".to_owned(),
        format!("198{n}-02-0{n}"),
        format!("0312340{n}"),
        format!("7700{n}"),
        "東京都千代田区".to_owned(),
    ]
}

/// The canonical identity table (`patients`) for the given patient ids of prov-a.
fn patients_parquet(patients: &[&str]) -> Vec<u8> {
    use arrow::array::{ArrayRef, StringArray};
    let cols = [
        "provider_id",
        "patient_id",
        "name_kanji",
        "name_kana",
        "sex",
        "birth_date",
        "postal_code",
        "address",
        "phone",
        "insurer_number",
        "card_symbol",
        "card_number",
        "card_branch",
    ];
    let schema = Arc::new(arrow::datatypes::Schema::new(
        cols.iter()
            .map(|c| arrow::datatypes::Field::new(*c, arrow::datatypes::DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let rows: Vec<Vec<String>> = patients
        .iter()
        .map(|p| {
            let i = identifiers_of(p);
            let n: u32 = p[1..].parse().unwrap();
            let kana = ["イチ", "ニ", "サン", "シ", "ゴ"][n as usize - 1];
            vec![
                "prov-a".into(),
                p.to_string(),
                format!("山田 {}", i[1]),
                format!("{} {kana}", i[2]),
                "1".into(),
                i[3].clone(),
                "1000001".into(),
                format!("{}千代田1-1", i[6]),
                i[4].clone(),
                String::new(),
                String::new(),
                i[5].clone(),
                String::new(),
            ]
        })
        .collect();
    let arrays: Vec<ArrayRef> = (0..cols.len())
        .map(|c| Arc::new(rows.iter().map(|r| Some(r[c].as_str())).collect::<StringArray>()) as ArrayRef)
        .collect();
    let b = arrow::record_batch::RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    out
}

/// `TestSealer` as the datasets' sealer, to read clinical parts back.
struct PlainSealer;

impl kiban_formats::Sealer for PlainSealer {
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        kiban_server::Sealer::seal(&TestSealer, aad, plain)
    }
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
        kiban_server::Sealer::open(&TestSealer, aad, sealed).ok_or_else(|| "does not open".to_owned())
    }
}

fn claims_parquet(patients: &[&str]) -> Vec<u8> {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("provider_id", arrow::datatypes::DataType::Utf8, false),
        arrow::datatypes::Field::new("patient_id", arrow::datatypes::DataType::Utf8, false),
        arrow::datatypes::Field::new("points", arrow::datatypes::DataType::Int64, false),
    ]));
    let prov: StringArray = patients.iter().map(|_| Some("prov-a")).collect();
    let pat: StringArray = patients.iter().map(|p| Some(*p)).collect();
    let pts: Int64Array = (0..patients.len() as i64).map(Some).collect();
    let b = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(prov) as ArrayRef, Arc::new(pat), Arc::new(pts)],
    )
    .unwrap();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    out
}

#[tokio::test]
async fn c1_c2_c3_p3_p4_p7_registry_and_intake_over_http() {
    let f = fixture().await;
    let (_, op) = enrolled(&f.st, "op.sato", AccountRole::IntakeOperator, PW).await;
    let (clerk_id, clerk) = enrolled(&f.st, "clerk.k", AccountRole::ProviderClerk, PW).await;
    let vault = identity_store(&f.st.data_dir);
    let main = spawn(kiban_server::router(f.st.clone()).with_identity_store(vault)).await;
    let intake = spawn(kiban_server::build_router(f.st.clone(), gateway::intake_routes())).await;
    let op = cookie_of(&login(main, "op.sato", PW, &auth::totp_code(&op, now_unix())).await);
    let clerk = cookie_of(&login(main, "clerk.k", PW, &auth::totp_code(&clerk, now_unix())).await);
    let json = |c: &str| [("cookie", c.to_owned()), ("content-type", "application/json".to_owned())];
    let call = |addr, m: &'static str, p: String, c: String, body: String| async move {
        let h = json(&c);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http(addr, m, &p, &h, &body).await
    };
    let today = kiban_registry::records::today_jst();
    let ago = |d: i64| (today - Duration::days(d)).to_string();

    // C1/C4: a provider with a filing, not yet published, cannot submit.
    let r = call(
        main,
        "POST",
        "/api/providers".into(),
        op.clone(),
        serde_json::json!({"provider_id": "prov-a", "name": "テスト病院", "filed_on": ago(200), "update_method": "月次",
            "planned_start": ago(100), "transmission_method": "SFTP", "security_checked_on": ago(150)})
        .to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // X1: a clerk acts only for the providers granted to the account; none at first.
    let r = call(main, "GET", "/api/providers/prov-a/filings".into(), clerk.clone(), String::new()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no scope, no access: {}", r.body);
    f.st.reg.set_provider_scope(&clerk_id, "prov-a", true, "admin", Utc::now()).await.unwrap();
    let r = call(main, "GET", "/api/providers/prov-a/filings".into(), clerk.clone(), String::new()).await;
    assert!(r.body.contains("\"may_submit\":false"), "{}", r.body);
    let r = call(main, "GET", "/api/providers/prov-b/filings".into(), clerk.clone(), String::new()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "another provider's filings: {}", r.body);
    assert!(r.body.contains("prov-b"), "the error names the provider: {}", r.body);
    let other = serde_json::json!({"provider_id": "prov-b", "patient_id": "X1", "notice_date": ago(10), "method": "mail",
        "recipient": "patient", "guardian_name": null, "patient_birth_date": null, "lacks_capacity": false,
        "text_version": "v1", "corrects": null, "source": ""});
    let r = call(main, "POST", "/api/notices".into(), clerk.clone(), other.to_string()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a notice for another provider: {}", r.body);

    let file = claims_parquet(&["P0001", "P0002", "P0003", "P0004", "P0001"]);
    let upload_as = |name: &'static str, file: Vec<u8>| {
        let clerk = clerk.clone();
        async move {
            // `http` sends text bodies; the Parquet bytes go through hyper directly.
            let stream = tokio::net::TcpStream::connect(intake).await.unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let req = Request::builder()
                .method("POST")
                .uri(format!("/intake/prov-a/{name}.parquet"))
                .header("host", "127.0.0.1")
                .header("cookie", clerk.as_str())
                .body(http_body_util::Full::new(axum::body::Bytes::from(file)))
                .unwrap();
            let res = send.send_request(req).await.unwrap();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            v["received"].as_str().unwrap().to_owned()
        }
    };
    let upload = |file: Vec<u8>| upload_as("claims", file);
    let batch = |inbox: String| {
        serde_json::json!({"provider_id": "prov-a", "provision_date": today, "inbox": inbox, "table": "claims"})
            .to_string()
    };
    let first = upload(file.clone()).await;
    let r = call(main, "POST", "/api/batches".into(), op.clone(), batch(first.clone())).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("publish"), "the refusal says why: {}", r.body);

    let r = call(
        main,
        "POST",
        "/api/providers/prov-a/publish".into(),
        op.clone(),
        serde_json::json!({"minister_date": ago(120), "provider_date": ago(110), "where": "https://example.org"})
            .to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // P1/P2: P0001 notified long ago, P0002 too recently, P0003 never; P0004 by CSV import, then opts out.
    for (p, d) in [("P0001", 60), ("P0002", 5)] {
        let r = call(
            main,
            "POST",
            "/api/notices".into(),
            clerk.clone(),
            serde_json::json!({"provider_id": "prov-a", "patient_id": p, "notice_date": ago(d), "method": "mail",
                "recipient": "patient", "guardian_name": null, "patient_birth_date": null, "lacks_capacity": false,
                "text_version": "v1", "corrects": null, "source": "spoofed"})
            .to_string(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(r.body.contains("http:") && !r.body.contains("spoofed"), "the source is the caller: {}", r.body);
    }
    let csv = format!(
        "provider_id,patient_id,notice_date,method,recipient,guardian_name,patient_birth_date,lacks_capacity,text_version\n\
         prov-a,P0004,{},mail,patient,,,0,v1\nprov-a,P0005,2月30日,mail,patient,,,0,v1\nprov-b,Q1,{},mail,patient,,,0,v1\n",
        ago(90),
        ago(90)
    );
    let r = http(main, "POST", "/api/notices/import", &[("cookie", &clerk), ("content-type", "text/csv")], &csv).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let rep: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!((rep["recorded"].as_u64(), rep["errors"].as_array().unwrap().len()), (Some(1), 2), "{rep}");
    assert_eq!(rep["errors"][0]["line"], 3, "the bad row is named by its line: {rep}");
    assert_eq!((rep["errors"][1]["line"].as_u64(), rep["errors"][1]["rule"].as_str()), (Some(4), Some("X1")), "{rep}");

    // P3/P4: an opt-out issues its confirmation document.
    let r = call(
        main,
        "POST",
        "/api/optouts".into(),
        clerk.clone(),
        serde_json::json!({"provider_id": "prov-a", "patient_id": "P0004", "requester_kind": "patient",
            "requester_name": "山田 花子", "requester_detail": "本人確認済", "channel": "oral",
            "person_deceased": false, "received_at": null, "source": ""})
        .to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let conf = v["confirmation_id"].as_str().unwrap().to_owned();
    let r = call(main, "GET", format!("/api/optouts/{conf}/confirmation"), clerk.clone(), String::new()).await;
    assert!(r.status == StatusCode::OK && r.body.contains("lang=\"ja\"") && r.body.contains("山田"), "{}", r.body);
    let r = call(main, "GET", "/api/providers/prov-a/patients/P0004".into(), clerk.clone(), String::new()).await;
    assert!(r.body.contains("\"notices\"") && r.body.contains("P0004"), "{}", r.body);

    // Issue 4 item 1: the identities come first, as the patients table; the gate admits P0001 only,
    // and its identity goes to the vault, not to the clinical store.
    let ids = upload_as("patients", patients_parquet(&["P0001", "P0002", "P0003", "P0004", "P0005"])).await;
    let body = serde_json::json!({"provider_id": "prov-a", "provision_date": today, "inbox": ids, "table": "patients"});
    let r = call(main, "POST", "/api/batches".into(), op.clone(), body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!((v["report"]["rows_in"].as_u64(), v["report"]["admitted"].as_u64()), (Some(5), Some(1)), "{v}");
    let id_batch = v["report"]["batch_id"].as_str().unwrap().to_owned();
    assert!(!f.st.data_dir.join("clinical").join(&id_batch).exists(), "identities never reach clinical/");

    // C3: the batch through the gate; each exclusion with its reason.
    let r = call(main, "POST", "/api/batches".into(), op.clone(), batch(first)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let rep = &v["report"];
    assert_eq!((rep["rows_in"].as_u64(), rep["admitted"].as_u64()), (Some(5), Some(2)), "{rep}");
    let by = &rep["excluded_by_reason"];
    assert_eq!(
        (by["notice_too_recent"].as_u64(), by["unknown_person"].as_u64(), by["opted_out"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{rep}"
    );
    let batch_id = rep["batch_id"].as_str().unwrap().to_owned();
    // R12: the clinical store and the quarantine are encrypted at rest.
    for area in ["clinical", "quarantine"] {
        let dir = f.st.data_dir.join(area).join(&batch_id).join("claims");
        let m = kiban_formats::verify_dataset(&dir).unwrap();
        assert!(m.sealed, "{area} is sealed");
        for file in &m.files {
            let raw = std::fs::read(dir.join(&file.path)).unwrap();
            assert!(!raw.windows(4).any(|w| w == b"P000"), "plaintext patient id in {area}/{}", file.path);
        }
    }
    // Issue 4 item 1: every clinical part, column by column and value by value, holds none of the
    // identifiers sent; rows carry the vault's person key instead of the patient id.
    let sent = identifiers_of("P0001");
    let (mut rows, mut parts) = (0, 0);
    for entry in std::fs::read_dir(f.st.data_dir.join("clinical")).unwrap() {
        for table in std::fs::read_dir(entry.unwrap().path()).unwrap() {
            let dir = table.unwrap().path();
            let m = kiban_formats::read_manifest(&dir).unwrap();
            for file in &m.files {
                parts += 1;
                for b in kiban_formats::read_part(&dir, &m, file, Some(&PlainSealer)).unwrap() {
                    let names: Vec<String> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
                    assert!(names.contains(&"person_key".to_owned()), "{names:?}");
                    for id_col in ["patient_id", "name_kanji", "name_kana", "birth_date", "phone", "card_number"] {
                        assert!(!names.iter().any(|n| n == id_col), "{id_col} in clinical/{}", dir.display());
                    }
                    for col in b.columns() {
                        let col = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8).unwrap();
                        let col = col.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
                        for v in col.iter().flatten() {
                            assert!(!sent.iter().any(|x| v.contains(x.as_str())), "identifier {v:?} in clinical/");
                        }
                    }
                    let keys = b.column_by_name("person_key").unwrap();
                    let keys = keys.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
                    assert!(keys.iter().flatten().all(|k| kiban_model::id::PersonKey::parse(k).is_ok()));
                    rows += b.num_rows();
                }
            }
        }
    }
    assert_eq!((parts, rows), (1, 2), "P0001's two claims, linked by person key");

    // C2: the same file again is caught by its digest.
    let again = upload(file).await;
    let r = call(main, "POST", "/api/batches".into(), op.clone(), batch(again)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("already received"), "{}", r.body);
    let r = call(main, "GET", format!("/api/batches/{batch_id}"), op.clone(), String::new()).await;
    assert!(r.status == StatusCode::OK && r.body.contains("\"persons\":1") && !r.body.contains("P0001"), "{}", r.body);

    // P7: deletion removes the person's rows and names the batches.
    let r = call(main, "POST", "/api/providers/prov-a/patients/P0001/delete".into(), op.clone(), "{}".into()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains(&batch_id) && r.body.contains(":2"), "two rows of P0001 removed: {}", r.body);
    // The clerk may not run the gate.
    let r = call(main, "POST", "/api/batches".into(), clerk.clone(), "{}".into()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The audit log names records by id, never a patient id in the clear.
    f.st.audit.flush().unwrap();
    let entries =
        f.st.audit.read(&kiban_audit::Actor::system(), "test", kiban_audit::Seq(1), kiban_audit::Seq(10_000)).unwrap();
    let text = serde_json::to_string(&entries).unwrap();
    assert!(entries.len() > 10);
    for p in ["P0001", "P0002", "P0004", "山田"] {
        assert!(!text.contains(p), "{p} reached the audit log");
    }
}

#[tokio::test]
async fn r12_the_server_speaks_tls_with_the_configured_certificate_and_refuses_plain_http() {
    let f = fixture().await;
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let router = kiban_server::router(f.st.clone());
    tokio::spawn(async move { kiban_server::serve_tls(addr, &cert_path, &key_path, router).await.unwrap() });
    let mut stream = None;
    for _ in 0..100 {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            stream = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A client that trusts only this certificate completes the handshake and gets the login page.
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, stream.expect("server listening")).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut resp = Vec::new();
    tls.read_to_end(&mut resp).await.unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200") && resp.contains("ログイン"), "{resp}");
    // Plain HTTP to the TLS port gets no page.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), plain.read_to_end(&mut got)).await;
    assert!(!String::from_utf8_lossy(&got).contains("ログイン"), "plain HTTP must not be served");
    // A client that does not trust the certificate fails the handshake.
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
    .with_no_client_auth();
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    assert!(tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, s).await.is_err());
}

#[tokio::test]
async fn r2_d2_d8_applications_and_sanctions_over_http_each_route_takes_its_steps_only() {
    use kiban_registry::review::application::sample_application;
    let f = fixture().await;
    let (_, sec) = enrolled(&f.st, "sec.s", AccountRole::Secretariat, PW).await;
    let main = spawn(kiban_server::router(f.st.clone())).await;
    let sec = cookie_of(&login(main, "sec.s", PW, &auth::totp_code(&sec, now_unix())).await);
    let h = [("cookie", sec.as_str()), ("content-type", "application/json")];
    let app = serde_json::to_string(&sample_application()).unwrap();
    let r = http(main, "POST", "/api/applications", &h, &app).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let id = v["application_id"].as_str().unwrap().to_owned();
    let r = http(main, "GET", &format!("/api/applications/{id}"), &h, "").await;
    assert!(r.status == StatusCode::OK && r.body.contains("\"phase\""), "{}", r.body);
    // The provision route does not carry a committee vote, and the workflow refuses steps out of order.
    let vote = r#"{"command":"vote","member_id":"m0","vote":"approve","reason":"x"}"#;
    let r = http(main, "POST", &format!("/api/applications/{id}/provision"), &h, vote).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("this route takes"), "{}", r.body);
    let pay = r#"{"command":"record_payment","amount_yen":1000,"on":"2026-06-01"}"#;
    let r = http(main, "POST", &format!("/api/applications/{id}/provision"), &h, pay).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "no payment before approval: {}", r.body);
    // D8: a violation and its measure.
    let r = http(
        main,
        "POST",
        "/api/violations",
        &h,
        r#"{"offender":"架空大学","code":"loss","recognized_on":"2026-08-01","detail":"紛失"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let vid = v["violation_id"].as_str().unwrap();
    let r = http(
        main,
        "POST",
        &format!("/api/violations/{vid}/sanction"),
        &h,
        r#"{"period":{"period":"months","months":2},"decided_on":"2026-08-05"}"#,
    )
    .await;
    assert!(r.status == StatusCode::OK && r.body.contains("ban_until"), "{}", r.body);
    let r = http(main, "GET", "/api/ledger", &h, "").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn r1_r2_a_committee_member_votes_only_as_the_roster_member_linked_to_their_account() {
    use kiban_registry::review::application::sample_application;
    use kiban_registry::review::committee::sample_committee;
    let f = fixture().await;
    let (_, sec) = enrolled(&f.st, "sec.v", AccountRole::Secretariat, PW).await;
    let (a_id, a_totp) = enrolled(&f.st, "cm.a", AccountRole::CommitteeMember, PW).await;
    let (b_id, b_totp) = enrolled(&f.st, "cm.b", AccountRole::CommitteeMember, PW).await;
    let mut roster = sample_committee(6);
    roster[0].account_id = Some(a_id);
    roster[1].account_id = Some(b_id);
    for m in &roster {
        f.st.reg.add_committee_member(m).await.unwrap();
    }
    let main = spawn(kiban_server::router(f.st.clone())).await;
    let cookie = |r: Resp| cookie_of(&r);
    let sec = cookie(login(main, "sec.v", PW, &auth::totp_code(&sec, now_unix())).await);
    let h = [("cookie", sec.as_str()), ("content-type", "application/json")];
    let r = http(main, "POST", "/api/applications", &h, &serde_json::to_string(&sample_application()).unwrap()).await;
    let id = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["application_id"].as_str().unwrap().to_owned();
    let r = http(main, "POST", &format!("/api/applications/{id}/review"), &h, r#"{"on":"2026-06-01"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let a = cookie(login(main, "cm.a", PW, &auth::totp_code(&a_totp, now_unix())).await);
    let b = cookie(login(main, "cm.b", PW, &auth::totp_code(&b_totp, now_unix())).await);
    let vote =
        |member: &str| format!(r#"{{"command":"vote","member_id":"{member}","vote":"approve","reason":"適切"}}"#);
    let path = format!("/api/applications/{id}/committee");
    let as_a = [("cookie", a.as_str()), ("content-type", "application/json")];
    let as_b = [("cookie", b.as_str()), ("content-type", "application/json")];
    // Voting for another member, or for a member no account is linked to, is refused and audited.
    for other in ["m1", "m3"] {
        let r = http(main, "POST", &path, &as_a, &vote(other)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{other}: {}", r.body);
        assert!(r.body.contains("not linked"), "{}", r.body);
    }
    let conflict = r#"{"command":"declare_conflict","member_id":"m0","reason":"x"}"#;
    assert_eq!(http(main, "POST", &path, &as_b, conflict).await.status, StatusCode::FORBIDDEN);
    // Each votes as themself.
    let r = http(main, "POST", &path, &as_a, &vote("m0")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = http(main, "POST", &path, &as_b, &vote("m1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let s = f.st.reg.application_state(&id).await.unwrap();
    assert_eq!(s.votes.len(), 2, "only the two own votes count");
    f.st.audit.flush().unwrap();
    let entries =
        f.st.audit.read(&kiban_audit::Actor::system(), "test", kiban_audit::Seq(1), kiban_audit::Seq(10_000)).unwrap();
    assert!(
        entries.iter().any(|e| e.event.object.id.ends_with("/member/m1") && e.event.outcome == Outcome::Denied),
        "the refusal is audited"
    );
}

/// The pseudonymization policy of the release tests: patient ids tokenized, names deleted, the
/// age band kept.
const RELEASE_POLICY: &str = "version = 1\nname = \"release-extract\"\nkind = \"pseudonymization\"\n\
    [[columns]]\nname = \"patient_id\"\nrole = \"link_code\"\ntreatment = \"token\"\n\
    [[columns]]\nname = \"name\"\nrole = \"identifier\"\n\
    [[columns]]\nname = \"age_band\"\nrole = \"keep\"\n";

/// An application submitted, reviewed by six members, approved (with `policy_sha256` as the
/// approved processing policy), agreed and paid for, through the registry (the committee must be
/// seated). Returns its id.
async fn approved_application(
    reg: &kiban_registry::Registry,
    app: &kiban_registry::review::application::Application,
    policy_sha256: Option<String>,
) -> String {
    use kiban_registry::review::agreement::sample_agreement_for;
    use kiban_registry::review::workflow::{Command, Decision, VoteKind};
    let day = |s: &str| s.parse::<chrono::NaiveDate>().unwrap();
    let (id, _) = reg.submit_application(app, day("2026-06-01")).await.unwrap();
    reg.open_review(&id, day("2026-06-10")).await.unwrap();
    for i in 0..6 {
        let vote = Command::Vote { member_id: format!("m{i}"), vote: VoteKind::Approve, reason: "妥当".into() };
        reg.execute_review(&id, &vote).await.unwrap();
    }
    let decision = Decision::Approve {
        expected_provision: "2026年7月".into(),
        conditions: vec![],
        guidelines: vec![],
        remarks: String::new(),
        processing_policy_sha256: policy_sha256,
    };
    reg.execute_review(&id, &Command::Decide { decision, on: day("2026-06-10") }).await.unwrap();
    let app = reg.application_state(&id).await.unwrap().application.unwrap();
    reg.execute_review(&id, &Command::ConcludeAgreement { agreement: Box::new(sample_agreement_for(&app)) })
        .await
        .unwrap();
    reg.execute_review(&id, &Command::FinalFee { hourly_rate_yen: 1_000, minutes: 60 }).await.unwrap();
    reg.execute_review(&id, &Command::RecordPayment { amount_yen: 1_000, on: day("2026-06-20") }).await.unwrap();
    id
}

/// The source table of the release tests, sealed at rest under `datasets/<name>`: each patient id
/// and name is a planted string that must never reach a released dataset or the package.
fn source_dataset(data_dir: &std::path::Path, name: &str) {
    use arrow::array::StringArray;
    let ds = data_dir.join("datasets").join(name);
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(
        ["patient_id", "name", "age_band"]
            .map(|c| arrow::datatypes::Field::new(c, arrow::datatypes::DataType::Utf8, false))
            .to_vec(),
    ));
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(StringArray::from(vec!["PLANTED-PID-0001", "PLANTED-PID-0002"])),
            std::sync::Arc::new(StringArray::from(vec!["植田PLANTED花子", "森PLANTED太郎"])),
            std::sync::Arc::new(StringArray::from(vec!["40-44", "45-49"])),
        ],
    )
    .unwrap();
    // Sealed at rest, as the clinical store's tables are.
    let w = kiban_formats::DatasetWriter::create(&ds, name, schema, kiban_formats::FileFormat::Parquet)
        .unwrap()
        .sealed(std::sync::Arc::new(TestDatasetSealer));
    w.write_part("part-00000", &[batch]).unwrap();
    w.commit(serde_json::json!({})).unwrap();
}

/// Opens a delivered package and returns its table's column `patient_id` (as released).
fn released_tokens(pkg: &std::path::Path, key_hex: &str, into: &std::path::Path) -> Vec<String> {
    let key: [u8; 32] = hex::decode(key_hex).unwrap().try_into().unwrap();
    let (_, m) = kiban_formats::package::open_package(pkg, &key, into).unwrap();
    assert!(!m.sealed, "the recipient opens the plain dataset that was released");
    let mut out = Vec::new();
    for f in &m.files {
        for b in kiban_formats::read_part(into, &m, f, None).unwrap() {
            let a = b.column_by_name("patient_id").unwrap();
            let a = arrow::array::cast::AsArray::as_string::<i32>(a);
            out.extend(a.iter().map(|v| v.unwrap().to_owned()));
        }
        assert!(
            !std::fs::read(into.join(&f.path)).unwrap().windows(7).any(|w| w == b"PLANTED"),
            "no patient id or name is released"
        );
    }
    out
}

/// The committee of six and the release policy in `<data-dir>/policies/extract.toml`.
async fn committee_and_release_policy(f: &Fixture) {
    for m in kiban_registry::review::committee::sample_committee(6) {
        f.st.reg.add_committee_member(&m).await.unwrap();
    }
    std::fs::create_dir_all(f.st.data_dir.join("policies")).unwrap();
    std::fs::write(f.st.data_dir.join("policies/extract.toml"), RELEASE_POLICY).unwrap();
}

#[tokio::test]
async fn r9_d6_a7_the_secretariat_builds_the_release_package_over_http_by_running_the_approved_policy() {
    use kiban_registry::review::application::sample_application;
    let f = fixture().await;
    let reg = &f.st.reg;
    let dd = &f.st.data_dir;
    committee_and_release_policy(&f).await;
    std::fs::write(dd.join("policies/other.toml"), RELEASE_POLICY.replace("release-extract", "other")).unwrap();
    let hash = kiban_deid::PseudoPolicy::load(&dd.join("policies/extract.toml")).unwrap().hash;
    let id = approved_application(reg, &sample_application(), Some(hash)).await;
    let app = reg.application_state(&id).await.unwrap().application.unwrap();
    source_dataset(dd, "extract-1");

    let (_, sec) = enrolled(&f.st, "sec.p", AccountRole::Secretariat, PW).await;
    let router = kiban_server::router(f.st.clone()).with_identity_store(identity_store(dd));
    let main = spawn(router).await;
    let sec = cookie_of(&login(main, "sec.p", PW, &auth::totp_code(&sec, now_unix())).await);
    let h = [("cookie", sec.as_str()), ("content-type", "application/json")];
    let path = format!("/api/applications/{id}/package");
    // A path instead of a dataset name is refused before anything is read.
    let r = http(main, "POST", &path, &h, r#"{"dataset":"../keys","recipient":"u-1","on":"2026-07-01"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = http(main, "POST", &path, &h, r#"{"source":"../keys","policy":"extract.toml","recipient":"u-1"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let item = &app.extraction.items[0].item;
    let place = &app.places[0].place_id;
    let body = |data: &str| {
        format!(
            r#"{{{data},"recipient":"u-1","items":["{item}"],"media":[{{"medium_id":"hdd-1","place_id":"{place}"}}],"on":"2026-07-01"}}"#
        )
    };
    // A pseudonymized release is made by the pipeline, not packaged from a dataset made elsewhere.
    let r = http(main, "POST", &path, &h, &body(r#""dataset":"extract-1""#)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("A7"), "{}", r.body);
    // A7: another policy than the approved one is refused before any work.
    let r = http(main, "POST", &path, &h, &body(r#""source":"datasets/extract-1","policy":"other.toml""#)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("A7") && r.body.contains("approved processing policy"), "{}", r.body);
    let r = http(main, "POST", &path, &h, &body(r#""source":"datasets/extract-1","policy":"extract.toml""#)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store", "the key is never cached");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["ledger"].as_array().unwrap().len(), 1, "R9 ledger entry written: {v}");
    let release = v["release_id"].as_str().unwrap().to_owned();
    let key_hex = v["recipient_key_hex"].as_str().unwrap().to_owned();
    // The processed dataset is kept sealed under datasets/<release>, its manifest naming the policy.
    let made = kiban_formats::read_manifest(&dd.join("datasets").join(&release)).unwrap();
    assert!(made.sealed);
    assert_eq!(
        made.provenance["policy_sha256"],
        reg.application_state(&id).await.unwrap().releases[0].spec.policy_sha256.clone().unwrap()
    );
    assert_eq!(made.provenance["pseudonym_domain"], format!("release/{release}"));
    let pkg = dd.join("releases/outbox/u-1").join(v["package"].as_str().unwrap());
    let tokens = released_tokens(&pkg, &key_hex, &dd.join("opened"));
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())), "{tokens:?}");
    // Another application, never approved: refused, and nothing reaches the outbox.
    let mut other = sample_application();
    other.contact.name = "合成 次郎".into();
    let (id2, _) = reg.submit_application(&other, "2026-06-01".parse().unwrap()).await.unwrap();
    let r = http(
        main,
        "POST",
        &format!("/api/applications/{id2}/package"),
        &h,
        &body(r#""source":"datasets/extract-1","policy":"extract.toml""#),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(std::fs::read_dir(dd.join("releases/outbox/u-1")).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(dd.join("staging")).unwrap().count(), 0, "no staged package left");
    // The release is audited; the key is not.
    f.st.audit.flush().unwrap();
    let entries =
        f.st.audit.read(&kiban_audit::Actor::system(), "test", kiban_audit::Seq(1), kiban_audit::Seq(10_000)).unwrap();
    assert!(entries.iter().any(|e| e.event.action == Action::Export && e.event.object.kind == ObjectKind::Release));
    assert!(!serde_json::to_string(&entries).unwrap().contains(&key_hex));
}

#[tokio::test]
async fn s2_a3_two_releases_of_the_same_data_give_unlinkable_tokens_unless_the_approved_application_links_them() {
    use kiban_registry::review::application::sample_application;
    let f = fixture().await;
    let reg = &f.st.reg;
    let dd = &f.st.data_dir;
    committee_and_release_policy(&f).await;
    let hash = kiban_deid::PseudoPolicy::load(&dd.join("policies/extract.toml")).unwrap().hash;
    source_dataset(dd, "claims");
    let router = kiban_server::router(f.st.clone()).with_identity_store(identity_store(dd));
    let (_, sec) = enrolled(&f.st, "sec.l", AccountRole::Secretariat, PW).await;
    let main = spawn(router.clone()).await;
    let sec = cookie_of(&login(main, "sec.l", PW, &auth::totp_code(&sec, now_unix())).await);
    let h = [("cookie", sec.as_str()), ("content-type", "application/json")];
    let release = |id: String, link: Option<String>| async move {
        let app = reg.application_state(&id).await.unwrap().application.unwrap();
        let link = link.map(|l| format!(r#","link_to":"{l}""#)).unwrap_or_default();
        let body = format!(
            r#"{{"source":"datasets/claims","policy":"extract.toml"{link},"recipient":"u-1","items":["{}"],"media":[{{"medium_id":"hdd-1","place_id":"{}"}}],"on":"2026-07-01"}}"#,
            app.extraction.items[0].item, app.places[0].place_id
        );
        let r = http(main, "POST", &format!("/api/applications/{id}/package"), &h, &body).await;
        (r.status, serde_json::from_str::<serde_json::Value>(&r.body).unwrap_or_default(), r.body)
    };
    let contact = |n: &str| {
        let mut a = sample_application();
        a.contact.name = n.into();
        a
    };
    let tokens = |v: &serde_json::Value, tag: &str| {
        let pkg = dd.join("releases/outbox/u-1").join(v["package"].as_str().unwrap());
        released_tokens(&pkg, v["recipient_key_hex"].as_str().unwrap(), &dd.join(format!("opened-{tag}")))
    };
    let first = approved_application(reg, &contact("合成 一郎"), Some(hash.clone())).await;
    let (st, v1, b) = release(first, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let r1 = v1["release_id"].as_str().unwrap().to_owned();
    let t1 = tokens(&v1, "1");
    // A second release of the same data: its own domain, tokens that cannot be joined with the first.
    let second = approved_application(reg, &contact("合成 二郎"), Some(hash.clone())).await;
    let (st, v2, b) = release(second.clone(), None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let t2 = tokens(&v2, "2");
    assert!(t1.iter().all(|t| !t2.contains(t)), "unlinkable: {t1:?} {t2:?}");
    // Linkage the approved application does not name is refused (A3) …
    let (st, _, b) = release(second, Some(r1.clone())).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.contains("A3") && b.contains(&r1), "{b}");
    // … and allowed when the committee approved an application naming it: the tokens match.
    let mut linked = contact("合成 三郎");
    linked.plan.linkage = vec![format!("release:{r1}")];
    let third = approved_application(reg, &linked, Some(hash)).await;
    let (st, v3, b) = release(third, Some(r1.clone())).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(tokens(&v3, "3"), t1, "linkage allowed: the earlier release's tokens");
    let made = kiban_formats::read_manifest(&dd.join("datasets").join(v3["release_id"].as_str().unwrap())).unwrap();
    assert_eq!(made.provenance["linked_to"], r1.as_str());
    // /api/pseudonymize: the same release gives the same tokens, another release other tokens.
    let pe =
        f.st.reg.create_account("pe.rel", "r", AccountRole::ProcessingEngineer, "admin", Utc::now()).await.unwrap();
    let post = |release: &str| {
        post_json_as(
            f.st.clone(),
            router.clone(),
            pe.account_id.clone(),
            AccountRole::ProcessingEngineer,
            "/api/pseudonymize",
            serde_json::json!({"policy": RELEASE_POLICY, "release": release,
                "columns": ["patient_id", "name", "age_band"], "rows": [["PLANTED-PID-0001", "x", "40-44"]]}),
        )
    };
    let (s1, a) = post("api-rel-a").await;
    assert_eq!(s1, StatusCode::OK, "{a}");
    let (_, a2) = post("api-rel-a").await;
    let (_, b2) = post("api-rel-b").await;
    assert_eq!(a["rows"][0][0], a2["rows"][0][0], "one release, one domain");
    assert_ne!(a["rows"][0][0], b2["rows"][0][0], "two releases, unlinkable");
    assert_eq!(a["report"]["pseudonym_domain"], "release/api-rel-a");
}

#[tokio::test]
async fn a7_an_anonymized_release_is_made_under_its_approved_anonymization_policy() {
    use kiban_registry::review::application::{ApplicationKind, sample_application};
    use kiban_registry::review::committee::sample_committee;
    let f = fixture().await;
    let reg = &f.st.reg;
    for m in sample_committee(6) {
        reg.add_committee_member(&m).await.unwrap();
    }
    let dd = &f.st.data_dir;
    std::fs::create_dir_all(dd.join("policies")).unwrap();
    let policy = "version = 1\nname = \"release-anon\"\n[privacy]\nk = 2\n\
        [hierarchies]\nage = { builder = \"flat\" }\n\
        [[columns]]\nname = \"patient_id\"\nrole = \"identifier\"\n\
        [[columns]]\nname = \"name\"\nrole = \"identifier\"\n\
        [[columns]]\nname = \"age_band\"\nrole = \"quasi_identifier\"\nhierarchy = \"age\"\n";
    std::fs::write(dd.join("policies/anon.toml"), policy).unwrap();
    let hash = kiban_deid::Policy::load(&dd.join("policies/anon.toml")).unwrap().hash;
    let mut app = sample_application();
    app.kind = ApplicationKind::Anonymized;
    let id = approved_application(reg, &app, Some(hash)).await;
    let app = reg.application_state(&id).await.unwrap().application.unwrap();
    source_dataset(dd, "extract-a");
    let (_, sec) = enrolled(&f.st, "sec.a", AccountRole::Secretariat, PW).await;
    let main = spawn(kiban_server::router(f.st.clone())).await;
    let sec = cookie_of(&login(main, "sec.a", PW, &auth::totp_code(&sec, now_unix())).await);
    let h = [("cookie", sec.as_str()), ("content-type", "application/json")];
    let body = format!(
        r#"{{"source":"datasets/extract-a","policy":"anon.toml","recipient":"u-2","items":["{}"],"media":[{{"medium_id":"hdd-1","place_id":"{}"}}],"on":"2026-07-01"}}"#,
        app.extraction.items[0].item, app.places[0].place_id
    );
    let r = http(main, "POST", &format!("/api/applications/{id}/package"), &h, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let made = kiban_formats::read_manifest(&dd.join("datasets").join(v["release_id"].as_str().unwrap())).unwrap();
    assert_eq!(made.provenance["process"], "anonymization");
    assert!(made.sealed && made.columns.iter().all(|(c, _)| c != "patient_id" && c != "name"), "{made:?}");
}

/// Opens sealed parts like [`TestDatasetSealer`], but its first `open` says so and then waits for
/// a go-ahead: a release that processed on the server's async thread would hold that thread here.
struct PausingSealer {
    started: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl kiban_formats::Sealer for PausingSealer {
    fn seal(&self, aad: &[u8], pt: &[u8]) -> Vec<u8> {
        TestDatasetSealer.seal(aad, pt)
    }
    fn open(&self, aad: &[u8], s: &[u8]) -> Result<Vec<u8>, String> {
        if let Some(started) = self.started.lock().unwrap().take() {
            let _ = started.send(());
            // No timing is measured: only a stalled runtime never sends the go-ahead.
            let go = self.go.lock().unwrap().recv_timeout(std::time::Duration::from_secs(60));
            go.map_err(|_| "the server stalled while the release was processing".to_owned())?;
        }
        TestDatasetSealer.open(aad, s)
    }
}

#[tokio::test]
async fn r9_the_server_answers_other_requests_while_a_release_is_processing() {
    use kiban_formats::Sealer;
    use kiban_registry::review::application::sample_application;
    use kiban_registry::review::package::{PackageRequest, Processing, ReleaseData, ReleaseDomainKey, release_package};
    // One runtime thread (tokio::test's default): the release and the server share it.
    let f = fixture().await;
    let reg = &f.st.reg;
    let dd = &f.st.data_dir;
    committee_and_release_policy(&f).await;
    let hash = kiban_deid::PseudoPolicy::load(&dd.join("policies/extract.toml")).unwrap().hash;
    let id = approved_application(reg, &sample_application(), Some(hash)).await;
    let app = reg.application_state(&id).await.unwrap().application.unwrap();
    source_dataset(dd, "extract-p");
    let main = spawn(kiban_server::router(f.st.clone())).await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let sealer: Arc<dyn Sealer> =
        Arc::new(PausingSealer { started: std::sync::Mutex::new(Some(started_tx)), go: std::sync::Mutex::new(go_rx) });
    let release_key = |release: &str, _: Option<&kiban_registry::review::package::LinkageAllowed>| {
        Ok(ReleaseDomainKey { key: kiban_deid::ReleaseKey::random(), domain: format!("release/{release}") })
    };
    let (source, policy) = (dd.join("datasets/extract-p"), dd.join("policies/extract.toml"));
    let req = PackageRequest {
        sealer: Some(sealer.clone()),
        application_id: &id,
        data: ReleaseData::Process(Processing {
            source: &source,
            policy: &policy,
            link_to: None,
            release_key: &release_key,
            sealer: sealer.clone(),
        }),
        recipient: "u-1",
        items: vec![app.extraction.items[0].item.clone()],
        media: serde_json::from_value(
            serde_json::json!([{"medium_id": "hdd-1", "place_id": app.places[0].place_id.clone()}]),
        )
        .unwrap(),
        on: "2026-07-01".parse().unwrap(),
    };
    let other = async {
        // The release has opened its source and is now held in the middle of processing it.
        started_rx.await.unwrap();
        let r = http(main, "GET", "/login", &[], "").await;
        go_tx.send(()).unwrap();
        r.status
    };
    let (released, status) = tokio::join!(release_package(reg, dd, req), other);
    assert_eq!(status, StatusCode::OK, "another request is answered during the release");
    let d = released.unwrap_or_else(|e| panic!("{e}"));
    assert!(d.package.is_file() && d.ledger.len() == 1);
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

/// POSTs `body` as JSON to `uri` in a fresh session of `account` acting as `role`; returns the status
/// and the JSON answer (null when the answer is not JSON).
async fn post_json_as(
    st: AppState,
    router: axum::Router,
    account: String,
    role: AccountRole,
    uri: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let token = auth::new_token();
    st.reg.create_session(&auth::sha256_hex(&token), &account, role, "t", Utc::now()).await.unwrap();
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("cookie", format!("kiban_session={}", token.as_str()))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = router.oneshot(req).await.unwrap();
    let status = res.status();
    let v = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap_or_default();
    (status, v)
}

#[tokio::test]
async fn s1_s3_pseudonymize_endpoint_applies_the_policy_and_refuses_naming_the_column() {
    let f = fixture().await;
    let router = kiban_server::router(f.st.clone());
    let a =
        f.st.reg.create_account("pe.pseudo", "r", AccountRole::ProcessingEngineer, "admin", Utc::now()).await.unwrap();
    let post = |body: serde_json::Value| {
        post_json_as(
            f.st.clone(),
            router.clone(),
            a.account_id.clone(),
            AccountRole::ProcessingEngineer,
            "/api/pseudonymize",
            body,
        )
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

#[tokio::test]
async fn a1_a5_anonymize_endpoint_returns_a_k_anonymous_table_and_refuses_file_paths() {
    let f = fixture().await;
    let router = kiban_server::router(f.st.clone());
    let a =
        f.st.reg.create_account("pe.anon", "r", AccountRole::ProcessingEngineer, "admin", Utc::now()).await.unwrap();
    let post = |body: serde_json::Value| {
        post_json_as(
            f.st.clone(),
            router.clone(),
            a.account_id.clone(),
            AccountRole::ProcessingEngineer,
            "/api/anonymize",
            body,
        )
    };
    let policy = "version = 1\nname = \"http-anon\"\n[privacy]\nk = 2\n\
        [hierarchies]\nage = { builder = \"age\", widths = [10] }\nsex = { builder = \"flat\" }\n\
        [[columns]]\nname = \"name\"\nrole = \"identifier\"\n\
        [[columns]]\nname = \"age\"\nrole = \"quasi_identifier\"\nhierarchy = \"age\"\n\
        [[columns]]\nname = \"sex\"\nrole = \"quasi_identifier\"\nhierarchy = \"sex\"\n";
    let (status, v) = post(serde_json::json!({
        "policy": policy,
        "columns": ["name", "age", "sex"],
        "rows": [["山田太郎", "31", "M"], ["佐藤花子", "35", "F"], ["鈴木一郎", "38", "M"], ["田中次郎", "33", "F"]],
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["columns"], serde_json::json!(["age", "sex"]), "identifier deleted (A1)");
    assert_eq!(v["report"]["k_achieved"], 2, "{v}");
    assert!(!v.to_string().contains("山田"), "no identifier anywhere in the answer");
    let with_file = policy.replace("sex = { builder = \"flat\" }", "sex = { file = \"/etc/passwd\" }");
    let (status, v) = post(serde_json::json!({"policy": with_file, "columns": ["name"], "rows": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v.to_string().contains("hierarchy sex"), "{v}");
}

#[tokio::test]
async fn o1_o9_d9_the_checker_over_http_finds_small_cells_and_protects_the_table() {
    let f = fixture().await;
    let (_, user) = enrolled(&f.st, "user.h", AccountRole::Handler, PW).await;
    let main = spawn(kiban_server::router(f.st.clone())).await;
    let user = cookie_of(&login(main, "user.h", PW, &auth::totp_code(&user, now_unix())).await);
    let h = [("cookie", user.as_str()), ("content-type", "application/json")];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiban-disclosure/tests/vectors/o1_min_cell");
    let table = std::fs::read_to_string(root.join("table.csv")).unwrap();
    let decl = std::fs::read_to_string(root.join("decl.toml")).unwrap();
    let body = |mode: &str| serde_json::json!({"table_csv": table, "declaration": decl, "mode": mode}).to_string();
    let r = http(main, "POST", "/api/check-output", &h, &body("check")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["report"]["passed"], false, "a cell of 3 breaks O1: {v}");
    assert!(v["report"].to_string().contains("O1"), "{v}");
    let r = http(main, "POST", "/api/check-output", &h, &body("suppress")).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["report"]["passed"], true, "{v}");
    let protected = v["protected_csv"].as_str().unwrap();
    assert!(!protected.contains(",3\n") && !protected.contains(",3\r\n"), "the small cell is suppressed: {protected}");
    let r = http(main, "POST", "/api/check-output?format=html", &h, &body("suppress")).await;
    assert!(r.status == StatusCode::OK && r.body.contains("lang=\"ja\""), "{}", r.body);
    let r = http(main, "POST", "/api/check-output", &h, r#"{"table_csv":"a,b\n","declaration":"x = ","mode":"check"}"#)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// The demo's security drill (issue 11 item 9): a brute force is locked out and alerted, the officer
/// logs in with TOTP and unlocks, and every step is in the verified audit log.
#[tokio::test]
async fn x4_x5_i2_the_security_drill_locks_out_a_brute_force_alerts_and_is_audited() {
    let f = fixture().await;
    let r = kiban_server::drill::run(&f.st).await.unwrap();
    assert!(r.passed(), "{}", r.summary());
    assert!(r.attempt_statuses.iter().all(|s| *s == 401), "{:?}", r.attempt_statuses);
    assert_eq!((r.totp_enrolled, r.totp_required), (9, 9));
    assert!(r.alerts.contains(&"repeated-login-failures".to_owned()), "{:?}", r.alerts);
    let target = f.st.reg.account_by_login(&r.target).await.unwrap().unwrap();
    let kinds: Vec<String> =
        f.st.reg.account_events(&target.account_id).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&"lockout".to_owned()) && kinds.contains(&"unlocked".to_owned()), "{kinds:?}");
    assert!(!target.locked_out_at(Utc::now()), "the officer's unlock holds");
    let mut failures_from_attacker = 0;
    kiban_audit::for_each_entry(f.st.audit.dir(), |e| {
        if e.event.action == Action::Login
            && e.event.outcome == Outcome::Failure
            && e.event.source == kiban_server::drill::ATTACKER
        {
            failures_from_attacker += 1;
        }
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(failures_from_attacker, r.attempt_statuses.len());
    // A second drill straight after still logs the officer in: the used TOTP step is not replayed.
    let again = kiban_server::drill::run(&f.st).await.unwrap();
    assert!(again.officer_login && again.unlocked, "{}", again.summary());
}

mod console;
#[path = "server/public.rs"]
mod public;
