//! The web console (issue 12): pages over HTTP (language switch, no-store, CSRF, field errors), the
//! OpenAPI document with every endpoint called, and a journey per role in real Chromium.

use kiban_server::workspace::{WithWorkspaces, WorkspaceEnv};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration as StdDuration, Instant};

use axum::http::StatusCode;
use kiban_registry::accounts::AccountRole;
use kiban_server::auth;
use kiban_server::console::demo::{self, DEMO_PASSWORD, DemoAccount};

use super::{FORM, Fixture, cookie_of, fixture, form, http, now_unix, spawn};

struct Demo {
    f: Fixture,
    addr: SocketAddr,
    accounts: Vec<DemoAccount>,
    app: String,
}

async fn demo_server() -> Demo {
    let f = fixture().await;
    let accounts = demo::demo_accounts(&f.st.reg, f.st.sealer.as_ref()).await.unwrap();
    let app = demo::demo_records(&f.st.reg, "test").await.unwrap();
    // As `kiban serve` does: the Visiting environment attached to the router.
    let env = WorkspaceEnv {
        base: f.st.data_dir.join("workspaces"),
        datasets: f.st.data_dir.join("datasets"),
        sealer: std::sync::Arc::new(super::TestDatasetSealer),
        limits: kiban_workspace::Limits::default(),
    };
    let addr = spawn(kiban_server::router(f.st.clone()).with_workspaces(env)).await;
    Demo { f, addr, accounts, app }
}

fn account(d: &Demo, role: AccountRole) -> &DemoAccount {
    d.accounts.iter().find(|a| a.role == role).unwrap()
}

/// Logs `role` in over HTTP; returns the cookie header value and the CSRF token of the session.
async fn http_login(d: &Demo, role: AccountRole) -> (String, String) {
    let a = account(d, role);
    let body = form(&[
        ("login", &a.login),
        ("password", DEMO_PASSWORD),
        ("totp", &auth::totp_code(&a.totp_secret, now_unix())),
    ]);
    let r = http(d.addr, "POST", "/login", &[FORM], &body).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers.get("location").unwrap(), "/console");
    let cookie = cookie_of(&r);
    let token = cookie.split_once('=').unwrap().1.to_owned();
    (cookie, kiban_server::console::csrf_token(&token))
}

#[tokio::test]
async fn k12_console_pages_are_japanese_first_switch_to_english_and_are_not_cached() {
    let d = demo_server().await;
    // Without a session the console answers with the login form (401), not a JSON error.
    let r = http(d.addr, "GET", "/console", &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("<form") && r.body.contains("ログイン"), "{}", r.body);

    let (cookie, _) = http_login(&d, AccountRole::Secretariat).await;
    let h = [("cookie", cookie.as_str())];
    let r = http(d.addr, "GET", "/console/complaints", &h, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    assert!(r.body.contains("lang=\"ja\"") && r.body.contains("苦情を登録") && !r.body.contains("<script"));
    // Dates in Western and Japanese-era form.
    assert!(r.body.contains("（令和"), "wareki date shown: {}", r.body);
    // The menu holds only what the table allows the secretariat.
    assert!(r.body.contains("/console/applications") && !r.body.contains("href=\"/console/alerts\""));

    let r = http(d.addr, "GET", "/console/complaints?lang=en", &h, "").await;
    assert!(r.body.contains("lang=\"en\"") && r.body.contains("Record a complaint"), "{}", r.body);
    let set = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(set.starts_with("kiban_lang=en"), "{set}");
    // The cookie keeps the language on the next page.
    let both = format!("{cookie}; kiban_lang=en");
    let r = http(d.addr, "GET", "/console/applications", &[("cookie", &both)], "").await;
    assert!(r.body.contains("Applications and review") && r.body.contains("Under review"), "{}", r.body);
}

#[tokio::test]
async fn k12_forms_need_the_session_csrf_token_and_show_errors_next_to_the_field() {
    let d = demo_server().await;
    let (cookie, csrf) = http_login(&d, AccountRole::SecurityOfficer).await;
    let h = [("cookie", cookie.as_str()), FORM];
    let body =
        form(&[("csrf", "0".repeat(32).as_str()), ("risk_item", "x"), ("description", "y"), ("severity", "high")]);
    let r = http(d.addr, "POST", "/console/incidents", &h, &body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a wrong token is refused");
    let before = d.f.st.reg.incidents().await.unwrap().len();

    // An empty risk item: 422, the message sits next to the field, what was typed is kept.
    let body = form(&[("csrf", &csrf), ("risk_item", " "), ("description", "夜間の大量出力"), ("severity", "high")]);
    let r = http(d.addr, "POST", "/console/incidents", &h, &body).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"risk_item-error\"") && r.body.contains("入力してください"), "{}", r.body);
    assert!(r.body.contains("aria-describedby=\"risk_item-error\"") && r.body.contains("夜間の大量出力"));
    assert_eq!(d.f.st.reg.incidents().await.unwrap().len(), before, "nothing recorded");

    let body =
        form(&[("csrf", &csrf), ("risk_item", "大量出力"), ("description", "夜間の大量出力"), ("severity", "high")]);
    let r = http(d.addr, "POST", "/console/incidents", &h, &body).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(d.f.st.reg.incidents().await.unwrap().len(), before + 1);

    // A registry rule's refusal names the field: an opt-out for an unknown provider.
    let (clerk, csrf) = http_login(&d, AccountRole::ProviderClerk).await;
    let body = form(&[
        ("csrf", &csrf),
        ("provider_id", "9999999999"),
        ("patient_id", "P1"),
        ("requester_kind", "patient"),
        ("requester_name", "合成 太郎"),
        ("channel", "nowhere"),
    ]);
    let r = http(d.addr, "POST", "/console/optouts", &[("cookie", clerk.as_str()), FORM], &body).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"channel-error\""), "{}", r.body);
}

#[tokio::test]
async fn b2_the_published_traceability_matrix_is_a_console_page_for_auditors_only() {
    let d = demo_server().await;
    let (cookie, _) = http_login(&d, AccountRole::Auditor).await;
    let h = [("cookie", cookie.as_str())];
    let r = http(d.addr, "GET", "/console/compliance", &h, "").await;
    assert!(r.status == StatusCode::OK && r.body.contains("まだ作成されていません"), "{}", r.body);
    assert_eq!(http(d.addr, "GET", "/console/compliance/matrix", &h, "").await.status, StatusCode::NOT_FOUND);
    let dir = d.f.st.data_dir.join("compliance");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("matrix.html"), "<!doctype html><html lang=\"ja\"><h1>要件トレーサビリティ表</h1></html>")
        .unwrap();
    let r = http(d.addr, "GET", "/console/compliance", &h, "").await;
    assert!(r.body.contains("/console/compliance/matrix") && r.body.contains("作成日時"), "{}", r.body);
    let r = http(d.addr, "GET", "/console/compliance/matrix", &h, "").await;
    assert!(r.status == StatusCode::OK && r.body.contains("要件トレーサビリティ表"));
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    let (handler, _) = http_login(&d, AccountRole::Handler).await;
    let r = http(d.addr, "GET", "/console/compliance/matrix", &[("cookie", handler.as_str())], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn k12_openapi_lists_every_route_and_every_endpoint_answers_as_documented_and_matches_its_schema() {
    let d = demo_server().await;
    let (cookie, _) = http_login(&d, AccountRole::Auditor).await;
    let r = http(d.addr, "GET", "/api/openapi.json", &[("cookie", cookie.as_str())], "").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let n_ops: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(n_ops, kiban_server::routes().len(), "every route is documented");

    // One session per role, fresh for each call (logout routes end theirs).
    let mut sessions = Vec::new();
    for a in &d.accounts {
        sessions.push((a.role, a.account_id.clone()));
    }
    let mut called = 0;
    let mut validated = 0;
    let mut wrong = Vec::new();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let method = method.to_uppercase();
            let roles: Vec<&str> =
                op["x-kiban-roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
            let documented: Vec<u16> =
                op["responses"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect();
            let url = super::fill(path).replace("/console/applications/1", &format!("/console/applications/{}", d.app));
            let mut headers = vec![("content-type", "application/json".to_owned())];
            if roles != ["public"] {
                let role = AccountRole::parse(roles[0]).unwrap();
                let id = &sessions.iter().find(|(r, _)| *r == role).unwrap().1;
                let token = auth::new_token();
                d.f.st
                    .reg
                    .create_session(&auth::sha256_hex(&token), id, role, "test", chrono::Utc::now())
                    .await
                    .unwrap();
                headers.push(("cookie", format!("kiban_session={}", token.as_str())));
            }
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = http(d.addr, &method, &url, &h, if method == "POST" { "{}" } else { "" }).await;
            let code = r.status.as_u16();
            // 405 = the method is not routed; a 404 must be the handler's (JSON), not the router's.
            if code == 405 || (code == 404 && !r.body.starts_with('{')) || !documented.contains(&code) {
                wrong.push(format!("{method} {path} as {}: {code} (documented {documented:?}): {}", roles[0], r.body));
            }
            // The body is of a documented media type and, when JSON, valid against its schema.
            let content = &op["responses"][code.to_string()]["content"];
            if let Some(media) = content.as_object().filter(|m| !m.is_empty()) {
                let got = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
                let got = got.split(';').next().unwrap_or("").trim();
                match media.get(got) {
                    None => {
                        wrong.push(format!("{method} {path}: {code} answered {got:?}, documented {:?}", media.keys()))
                    }
                    Some(m) if got == "application/json" => {
                        let schema = resolve(&doc, &m["schema"]);
                        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
                        if let Err(e) = conforms(&doc, &schema, &body) {
                            wrong.push(format!(
                                "{method} {path}: {code} body does not match its schema: {e}: {}",
                                r.body
                            ));
                        }
                        validated += 1;
                    }
                    Some(_) => {}
                }
            }
            called += 1;
        }
    }
    assert!(wrong.is_empty(), "endpoints answering other than documented:\n{}", wrong.join("\n"));
    assert_eq!(called, n_ops);
    assert!(validated > n_ops / 2, "most answers are JSON checked against a schema ({validated} of {n_ops})");
    // The error schema is not vacuous: a body without the message fails it.
    let error = resolve(&doc, &serde_json::json!({"$ref": "#/components/schemas/Error"}));
    assert!(conforms(&doc, &error, &serde_json::json!({"message": "x"})).is_err());
    assert!(conforms(&doc, &error, &serde_json::json!({"error": ""})).is_err());
    assert!(conforms(&doc, &error, &serde_json::json!({"error": "x"})).is_ok());
}

#[tokio::test]
async fn k12_openapi_request_and_answer_schemas_are_generated_from_the_types_and_hold_for_real_calls() {
    let d = demo_server().await;
    let doc = kiban_server::console::openapi::main_document(&d.f.st.authz);
    let op = |m: &str, p: &str| doc["paths"][p][m].clone();
    // Specific schemas, not `object`: the request's required fields and the answer's properties.
    let me = resolve(&doc, &op("get", "/api/me")["responses"]["200"]["content"]["application/json"]["schema"]);
    assert!(me["properties"]["role"].is_object() && me["required"].as_array().unwrap().len() == 4, "{me}");
    let req = resolve(&doc, &op("post", "/api/incidents")["requestBody"]["content"]["application/json"]["schema"]);
    let required: Vec<&str> = req["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(required.contains(&"risk_item") && required.contains(&"description"), "{req}");
    // A role outside the enumeration breaks the answer's schema (the check is not vacuous).
    let bad_me = serde_json::json!({"account_id": "a", "login": "l", "display_name": "n", "role": "nobody"});
    assert!(conforms(&doc, &me, &bad_me).is_err());

    let session = |role: &str| {
        let role = AccountRole::parse(role).unwrap();
        let id = account(&d, role).account_id.clone();
        let reg = d.f.st.reg.clone();
        async move {
            let token = auth::new_token();
            reg.create_session(&auth::sha256_hex(&token), &id, role, "test", chrono::Utc::now()).await.unwrap();
            format!("kiban_session={}", token.as_str())
        }
    };
    // Each call: the request conforms to the documented request schema, the server answers 200,
    // and the answer conforms to the documented 200 schema.
    let contract = serde_json::json!({
        "name": "合成保守株式会社", "certification": "ISMS", "scope": "サーバ保守", "procedures": "手順書",
        "right_to_verify": "あり", "instructions": "指示書", "instruction_checks": "月次", "reporting": "月次報告",
        "other_terms": "なし", "contracted_on": "2026-04-01",
    });
    let calls: Vec<(&str, String, serde_json::Value)> = vec![
        (
            "post",
            "/api/incidents".into(),
            serde_json::json!({"risk_item": "大量出力", "description": "夜間の大量出力", "severity": "high"}),
        ),
        (
            "post",
            "/api/complaints".into(),
            serde_json::json!({"received_on": "2026-11-01", "content": "説明が分かりにくい"}),
        ),
        ("post", "/api/contractors".into(), contract),
        (
            "post",
            "/api/leaks".into(),
            serde_json::json!({"detected_at": "2026-11-20T01:00:00Z", "summary": "誤送信", "persons": 1}),
        ),
        ("get", "/api/me".into(), serde_json::Value::Null),
        ("get", "/api/incidents".into(), serde_json::Value::Null),
        ("get", "/api/leaks".into(), serde_json::Value::Null),
        ("get", "/api/contractors".into(), serde_json::Value::Null),
        ("get", "/api/accounts".into(), serde_json::Value::Null),
    ];
    let mut checked = 0;
    for (m, path, body) in calls {
        let o = op(m, &path);
        let role = o["x-kiban-roles"][0].as_str().unwrap().to_owned();
        let cookie = session(&role).await;
        if m == "post" {
            let rs = &o["requestBody"]["content"]["application/json"]["schema"];
            conforms(&doc, rs, &body).unwrap_or_else(|e| panic!("{path}: the example breaks its request schema: {e}"));
            // The same body without its required fields breaks the schema, and the server refuses it.
            let rs = resolve(&doc, rs);
            if let Some(first) = rs["required"].as_array().and_then(|r| r.first()).and_then(|f| f.as_str()) {
                let mut broken = body.clone();
                broken.as_object_mut().unwrap().remove(first);
                assert!(conforms(&doc, &rs, &broken).is_err(), "{path}: without {first} the schema still passes");
                let h = [("cookie", cookie.as_str()), ("content-type", "application/json")];
                let r = http(d.addr, "POST", &path, &h, &broken.to_string()).await;
                assert!(r.status.is_client_error(), "{path} without {first}: {} {}", r.status, r.body);
            }
        }
        let h = [("cookie", cookie.as_str()), ("content-type", "application/json")];
        let sent = if m == "post" { body.to_string() } else { String::new() };
        let r = http(d.addr, &m.to_uppercase(), &path, &h, &sent).await;
        assert_eq!(r.status, StatusCode::OK, "{m} {path}: {}", r.body);
        let answer: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let schema = &o["responses"]["200"]["content"]["application/json"]["schema"];
        conforms(&doc, schema, &answer)
            .unwrap_or_else(|e| panic!("{m} {path}: the answer breaks its schema: {e}: {answer}"));
        checked += 1;
    }
    assert_eq!(checked, 9);
}

/// Checks `v` against the JSON Schema keywords the document uses: `$ref` (local), type, required,
/// properties, additionalProperties, items (one schema or a tuple's list), prefixItems, minItems,
/// maxItems, enum, const, oneOf, anyOf, allOf, minimum, maximum, minLength. A validator crate (`jsonschema`) would change the features of
/// serde_json and chrono for the whole workspace and rebuild it, so this subset is checked here;
/// a keyword outside it fails the check rather than passing silently.
fn conforms(doc: &serde_json::Value, schema: &serde_json::Value, v: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    const KNOWN: &[&str] = &[
        "$ref",
        "type",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "enum",
        "const",
        "oneOf",
        "anyOf",
        "minimum",
        "minLength",
        "format",
        "description",
        "title",
        "default",
        "$schema",
        "allOf",
        "maximum",
    ];
    let Some(obj) = schema.as_object() else {
        return match schema {
            Value::Bool(true) => Ok(()),
            _ => Err(format!("bad schema {schema}")),
        };
    };
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("the test's validator does not know the keyword {k}"));
    }
    if obj.contains_key("$ref") {
        conforms(doc, &resolve(doc, schema), v)?;
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
            _ => return Err(format!("bad type keyword {t}")),
        };
        let kind = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let integer_as_number = kind == "integer" && types.contains(&"number");
        if !(types.contains(&kind) || integer_as_number) {
            return Err(format!("{kind} is not of type {types:?}"));
        }
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        return Err(format!("{v} is not {c}"));
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{v} is not one of {e:?}"));
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let n = one.iter().filter(|s| conforms(doc, s, v).is_ok()).count();
        if n != 1 {
            return Err(format!("{v} matches {n} of oneOf, not exactly one"));
        }
    }
    for (i, s) in schema.get("allOf").and_then(Value::as_array).into_iter().flatten().enumerate() {
        conforms(doc, s, v).map_err(|e| format!("allOf[{i}]: {e}"))?;
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(|s| conforms(doc, s, v).is_ok())
    {
        return Err(format!("{v} matches none of anyOf"));
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        return Err(format!("{n} is below {min}"));
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), v.as_f64())
        && n > max
    {
        return Err(format!("{n} is above {max}"));
    }
    if let (Some(min), Some(s)) = (schema.get("minLength").and_then(Value::as_u64), v.as_str())
        && (s.chars().count() as u64) < min
    {
        return Err(format!("shorter than {min}"));
    }
    if let Some(a) = v.as_array() {
        // A tuple: `prefixItems` (2020-12) or `items` as a list (draft 2019-09 and before).
        let prefix = schema
            .get("prefixItems")
            .and_then(Value::as_array)
            .or_else(|| schema.get("items").and_then(Value::as_array));
        for (i, x) in a.iter().enumerate() {
            let s = match prefix {
                Some(p) => p.get(i),
                None => schema.get("items"),
            };
            if let Some(s) = s {
                conforms(doc, s, x).map_err(|e| format!("[{i}]: {e}"))?;
            }
        }
        if schema.get("minItems").and_then(Value::as_u64).is_some_and(|m| (a.len() as u64) < m)
            || schema.get("maxItems").and_then(Value::as_u64).is_some_and(|m| (a.len() as u64) > m)
        {
            return Err(format!("{} items is outside minItems/maxItems", a.len()));
        }
    }
    if let Some(o) = v.as_object() {
        for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let r = r.as_str().unwrap_or_default();
            if !o.contains_key(r) {
                return Err(format!("{r} is required"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, x) in o {
            match props.and_then(|p| p.get(k)) {
                Some(s) => conforms(doc, s, x).map_err(|e| format!("{k}: {e}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{k} is not allowed"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// A schema with a local `$ref` (`#/components/schemas/…`) replaced by what it names.
fn resolve(doc: &serde_json::Value, schema: &serde_json::Value) -> serde_json::Value {
    match schema.get("$ref").and_then(|r| r.as_str()).and_then(|r| r.strip_prefix('#')) {
        Some(ptr) => doc.pointer(ptr).cloned().expect("the reference resolves"),
        None => schema.clone(),
    }
}

// ---- registers: batches and quarantine replay, leaks, contractors, vetting, supervision --------

/// A provider's submission with an identity table and a claims table, as Parquet files in `dir`.
fn submission(dir: &std::path::Path, provider: &str, patients: &[&str]) {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let write = |table: &str, schema: Arc<Schema>, cols: Vec<ArrayRef>| {
        let b = arrow::record_batch::RecordBatch::try_new(schema.clone(), cols).unwrap();
        std::fs::create_dir_all(dir.join(table)).unwrap();
        let f = std::fs::File::create(dir.join(table).join("part-00000.parquet")).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
    };
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
    let rows: Vec<Vec<String>> = patients
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let n = i + 1;
            let given = ["一", "二", "三"][i];
            let kana = ["イチ", "ニ", "サン"][i];
            vec![
                provider.into(),
                p.to_string(),
                format!("山田 合成{given}"),
                format!("ゴウセイ {kana}"),
                "1".into(),
                format!("198{n}-02-0{n}"),
                "1000001".into(),
                "東京都千代田区千代田1-1".into(),
                format!("0312340{n}"),
                String::new(),
                String::new(),
                format!("7700{n}"),
                String::new(),
            ]
        })
        .collect();
    let schema = Arc::new(Schema::new(cols.iter().map(|c| Field::new(*c, DataType::Utf8, false)).collect::<Vec<_>>()));
    let arrays: Vec<ArrayRef> = (0..cols.len())
        .map(|c| Arc::new(rows.iter().map(|r| Some(r[c].as_str())).collect::<StringArray>()) as ArrayRef)
        .collect();
    write("patients", schema, arrays);
    let schema = Arc::new(Schema::new(vec![
        Field::new("provider_id", DataType::Utf8, false),
        Field::new("patient_id", DataType::Utf8, false),
        Field::new("points", DataType::Int64, false),
    ]));
    let prov: StringArray = patients.iter().map(|_| Some(provider)).collect();
    let pat: StringArray = patients.iter().map(|p| Some(*p)).collect();
    let pts: Int64Array = (0..patients.len() as i64).map(|i| Some(100 + i)).collect();
    write("claims", schema, vec![Arc::new(prov), Arc::new(pat), Arc::new(pts)]);
}

async fn notice(d: &Demo, patient: &str, days_ago: i64) {
    use kiban_registry::records::{NoticeInput, NoticeMethod, Recipient, today_jst};
    d.f.st
        .reg
        .add_notice(&NoticeInput {
            provider_id: demo::DEMO_PROVIDER.into(),
            patient_id: patient.into(),
            notice_date: today_jst() - chrono::Duration::days(days_ago),
            method: NoticeMethod::parse("mail").unwrap(),
            recipient: Recipient::parse("patient").unwrap(),
            guardian_name: None,
            patient_birth_date: None,
            lacks_capacity: false,
            text_version: "v1".into(),
            corrects: None,
            source: "test".into(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn c2_c3_k12_batch_pages_show_the_gate_report_and_a_replay_admits_what_was_fixed() {
    let f = fixture().await;
    let accounts = demo::demo_accounts(&f.st.reg, f.st.sealer.as_ref()).await.unwrap();
    let app = demo::demo_records(&f.st.reg, "test").await.unwrap();
    // The vault the server routes identities through, shared with the first submission below.
    let vault: kiban_server::identity::SharedIdentity =
        std::sync::Arc::new(std::sync::Mutex::new(super::identity_store(&f.st.data_dir)));
    let addr = spawn(kiban_server::router(f.st.clone()).layer(axum::Extension(vault.clone()))).await;
    let d = Demo { f, addr, accounts, app };
    notice(&d, "P0001", 60).await;
    // P0002 has no notice yet: excluded by the gate (P1) and quarantined with its identity.
    let input = d.f.st.data_dir.join("staging/test-input");
    submission(&input, demo::DEMO_PROVIDER, &["P0001", "P0002"]);
    let provision = kiban_registry::records::today_jst() - chrono::Duration::days(1);
    let s = kiban_registry::intake::Submission {
        provider_id: demo::DEMO_PROVIDER.into(),
        provision_date: provision,
        input: input.clone(),
        bulk: false,
        dry_run: false,
        creator_name: "テスト作成事業者".into(),
        creator_address: "東京都".into(),
        sealer: Some(std::sync::Arc::new(super::TestDatasetSealer)),
    };
    let bridge = kiban_server::identity::AuditBridge {
        sink: d.f.st.audit.as_ref(),
        actor: kiban_audit::Actor::system(),
        source: "test".into(),
    };
    let routing = kiban_server::identity::VaultRouting { store: vault.as_ref(), audit: &bridge, actor: "test".into() };
    let out = kiban_registry::intake::submit_routed(&d.f.st.reg, &d.f.st.data_dir, &s, Some(&routing)).await.unwrap();
    let batch = out.report.batch_id.clone();
    assert_eq!((out.report.admitted, out.report.excluded), (2, 2), "{:?}", out.report);

    let (op, csrf) = http_login(&d, AccountRole::IntakeOperator).await;
    let h = [("cookie", op.as_str())];
    let r = http(d.addr, "GET", "/console/batches", &h, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains(&format!("/console/batches/{batch}")) && r.body.contains("取込バッチ"), "{}", r.body);
    let r = http(d.addr, "GET", &format!("/console/batches/{batch}"), &h, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The gate report (C3): the reason by name, the receipt record (C2), the quarantined tables.
    assert!(r.body.contains("通知の記録なし（unknown_person）"), "{}", r.body);
    assert!(r.body.contains(&out.receipt.as_ref().unwrap().receipt_id));
    let q = r.body.split("id=\"quarantine\"").nth(1).expect("a quarantine table");
    assert!(q.contains("<td>claims</td><td>1</td>") && q.contains("<td>patients</td><td>1</td>"), "{q}");
    assert!(r.body.contains(&format!("action=\"/console/batches/{batch}/replay\"")));
    // The auditor sees the batch but may not replay.
    let (aud, _) = http_login(&d, AccountRole::Auditor).await;
    let r = http(d.addr, "GET", &format!("/console/batches/{batch}"), &[("cookie", aud.as_str())], "").await;
    assert!(r.status == StatusCode::OK && !r.body.contains("/replay\""), "{}", r.body);

    let hp = [("cookie", op.as_str()), FORM];
    let replay = format!("/console/batches/{batch}/replay");
    let r = http(d.addr, "POST", &replay, &hp, &form(&[("csrf", "0")])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a replay needs the form token");
    // The cause is fixed: P0002's notice (made long ago) is recorded late. The replay admits it.
    notice(&d, "P0002", 60).await;
    let r = http(d.addr, "POST", &replay, &hp, &form(&[("csrf", &csrf)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let to = r.headers.get("location").unwrap().to_str().unwrap().to_owned();
    let new = to.trim_start_matches("/console/batches/").trim_end_matches("?saved=1").to_owned();
    assert_ne!(new, batch);
    let receipt = d.f.st.reg.receipt(&new).await.unwrap();
    assert_eq!(receipt.persons, vec!["P0002".to_owned()], "the replayed person is admitted");
    assert_eq!(receipt.provision_date, provision, "decided as of the original provision date");
    let r = http(d.addr, "GET", &to, &h, "").await;
    assert!(r.body.contains("再投入しました") && r.body.contains(&format!("/console/batches/{batch}\"")), "{}", r.body);
    assert!(r.body.contains("このバッチに隔離されたレコードはありません"), "{}", r.body);
    // The same records again: refused as an input already received, shown on the page.
    let r = http(d.addr, "POST", &replay, &hp, &form(&[("csrf", &csrf)])).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("role=\"alert\""), "{}", r.body);
    let r = http(d.addr, "GET", &format!("/console/batches/{batch}"), &h, "").await;
    assert!(r.body.contains("id=\"replays\"") && r.body.contains(&format!("/console/batches/{new}\"")), "{}", r.body);
    // The replay is a run with its report, and audited.
    let r = http(d.addr, "GET", &format!("/console/runs/replay-{new}"), &h, "").await;
    assert!(r.status == StatusCode::OK && r.body.contains("from_batch") && r.body.contains(&batch), "{}", r.body);
    d.f.st.audit.flush().unwrap();
    let entries =
        d.f.st
            .audit
            .read(&kiban_audit::Actor::system(), "test", kiban_audit::Seq(1), kiban_audit::Seq(100_000))
            .unwrap();
    assert!(entries.iter().any(|e| e.event.note.as_deref().is_some_and(|n| n.contains("quarantine replay"))));
}

#[tokio::test]
async fn i1_i4_x2_leak_reports_contractors_and_vetting_are_recorded_from_their_pages() {
    let d = demo_server().await;
    let (so, csrf) = http_login(&d, AccountRole::SecurityOfficer).await;
    let h = [("cookie", so.as_str()), FORM];
    let today = kiban_registry::records::today_jst();
    let body = form(&[("csrf", &csrf), ("detected_on", &today.to_string()), ("summary", " "), ("persons", "x")]);
    let r = http(d.addr, "POST", "/console/leaks", &h, &body).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"summary-error\"") && r.body.contains("id=\"persons-error\""), "{}", r.body);
    let body = form(&[
        ("csrf", &csrf),
        ("detected_on", &today.to_string()),
        ("possibly_malicious", "1"),
        ("summary", "委託先での媒体紛失"),
        ("persons", "12"),
    ]);
    let r = http(d.addr, "POST", "/console/leaks", &h, &body).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = http(d.addr, "GET", "/console/leaks", &h, "").await;
    assert!(r.body.contains("委託先での媒体紛失") && r.body.contains("<td>12</td>"), "{}", r.body);
    // I1: the confirmed report is due 60 days after detection when it may be malicious.
    let due = kiban_server::console::dual_date(kiban_server::console::Lang::Ja, today + chrono::Duration::days(60));
    assert!(r.body.contains(&due), "deadline {due}: {}", r.body);
    let r = http(d.addr, "GET", "/console/leaks?lang=en", &h, "").await;
    assert!(r.body.contains("Leak reports") && r.body.contains("Confirmed report due"), "{}", r.body);

    // I4: every item of the written contract is required; the missing one is named.
    let (sec, scsrf) = http_login(&d, AccountRole::Secretariat).await;
    let hs = [("cookie", sec.as_str()), FORM];
    let mut fields = vec![
        ("csrf", scsrf.as_str()),
        ("name", "合成データ処理株式会社"),
        ("certification", ""),
        ("scope", "データの変換"),
        ("procedures", "手順書による"),
        ("right_to_verify", "随時立入り"),
        ("instructions", "書面で指示"),
        ("instruction_checks", "月次報告"),
        ("reporting", "漏えい等は直ちに報告"),
        ("contracted_on", "2026-04-01"),
    ];
    let r = http(d.addr, "POST", "/console/contractors", &hs, &form(&fields)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"certification-error\""), "{}", r.body);
    fields[2] = ("certification", "認定-0001");
    let r = http(d.addr, "POST", "/console/contractors", &hs, &form(&fields)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = http(d.addr, "GET", "/console/contractors", &[("cookie", so.as_str())], "").await;
    assert!(r.body.contains("合成データ処理株式会社") && r.body.contains("監査記録なし"), "{}", r.body);
    assert!(!r.body.contains("action=\"/console/contractors\""), "the security officer reads, the secretariat records");

    // X2: a disqualification recorded for a handler makes the account not cleared.
    let target = account(&d, AccountRole::Handler).account_id.clone();
    let page = format!("/console/accounts/{target}");
    let r = http(d.addr, "GET", &page, &[("cookie", so.as_str())], "").await;
    assert!(r.status == StatusCode::OK && r.body.contains("可（資格確認・研修とも有効）"), "{}", r.body);
    let body =
        form(&[("csrf", &csrf), ("checked_on", &today.to_string()), ("bankruptcy", "1"), ("note", "登記事項証明書")]);
    let r = http(d.addr, "POST", &format!("{page}/vetting"), &h, &body).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = http(d.addr, "GET", &page, &[("cookie", so.as_str())], "").await;
    assert!(r.body.contains("<strong>不可</strong>") && r.body.contains("bankrupt"), "{}", r.body);
    let (admin, acsrf) = http_login(&d, AccountRole::Administrator).await;
    let r = http(
        d.addr,
        "POST",
        &format!("{page}/vetting"),
        &[("cookie", admin.as_str()), FORM],
        &body.replace(&csrf, &acsrf),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "vetting is the security officer's");
}

#[tokio::test]
async fn r5_d5_d7_r9_application_shows_agreement_fees_releases_and_the_calendar_what_is_due() {
    let d = demo_server().await;
    let approved =
        d.f.st
            .reg
            .applications()
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.phase == kiban_registry::review::workflow::Phase::Approved)
            .expect("the demo has an approved application")
            .application_id;
    let (sec, _) = http_login(&d, AccountRole::Secretariat).await;
    let h = [("cookie", sec.as_str())];
    let r = http(d.addr, "GET", &format!("/console/applications/{approved}"), &h, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let agreement = r.body.split("id=\"agreement\"").nth(1).expect("the agreement");
    assert!(agreement.contains("利用目的") && agreement.contains("取扱者"), "{agreement}");
    let fees = r.body.split("id=\"fees\"").nth(1).expect("the fees");
    assert!(fees.contains("12000 円") && fees.contains("16000 円") && fees.contains("<td>はい</td>"), "{fees}");
    let rel = r.body.split("id=\"releases\"").nth(1).expect("the releases");
    assert!(rel.contains("demo-release-1") && rel.contains("2026年7月1日"), "{rel}");
    // D7: the usage report was due 3 months after the publication of 2026-08-01: overdue, listed first.
    let r = http(d.addr, "GET", "/console/supervision", &h, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let due = r.body.split("id=\"due\"").nth(1).expect("a calendar");
    assert!(due.contains("利用実績報告") && due.contains("期限超過") && due.contains(&approved), "{due}");
    let r = http(
        d.addr,
        "GET",
        "/console/supervision",
        &[("cookie", http_login(&d, AccountRole::Handler).await.0.as_str())],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn k12_identity_review_decisions_are_made_shown_and_undone_from_the_console() {
    use kiban_identity::identity::IdentityInput;
    let f = fixture().await;
    let accounts = demo::demo_accounts(&f.st.reg, f.st.sealer.as_ref()).await.unwrap();
    let app = demo::demo_records(&f.st.reg, "test").await.unwrap();
    let keys = kiban_identity::keystore::KeyStore::create(&f.st.data_dir.join("keys")).unwrap();
    let m = kiban_identity::vault::MemoryAudit::default();
    // Every pair scores between the bounds: a review item rather than an automatic decision.
    let cfg = kiban_identity::mpi::MatchConfig { upper: 100.0, lower: 0.0, ..Default::default() };
    let mut store =
        kiban_identity::store::IdentityStore::open(&f.st.data_dir.join("identity"), keys, cfg, &m, "t").unwrap();
    let input = |patient: &str, kana: &str, branch: &str| IdentityInput {
        provider_id: demo::DEMO_PROVIDER.into(),
        patient_id: patient.into(),
        name_kanji: "佐藤 花子".into(),
        name_kana: kana.into(),
        sex: "2".into(),
        birth_date: "1985-01-02".into(),
        phone: "0312345678".into(),
        insurer_number: "01130012".into(),
        card_symbol: "1234".into(),
        card_number: "567".into(),
        card_branch: branch.into(),
        ..Default::default()
    };
    store.register(&m, "t", &[input("p1", "サトウ ハナコ", "00"), input("p2", "ｻﾄｳ ﾊﾅｺ", "01")]).unwrap();
    let item = store.review_queue()[0].id;
    let vault: kiban_server::identity::SharedIdentity = std::sync::Arc::new(std::sync::Mutex::new(store));
    let addr = spawn(kiban_server::router(f.st.clone()).layer(axum::Extension(vault.clone()))).await;
    let d = Demo { f, addr, accounts, app };
    let (op, csrf) = http_login(&d, AccountRole::IntakeOperator).await;
    let h = [("cookie", op.as_str())];
    let r = http(d.addr, "GET", "/console/identity", &h, "").await;
    assert!(r.body.contains(&format!("action=\"/console/identity/{item}\"")), "{}", r.body);
    // Both sides of the item, for the reviewer to compare.
    let r = http(d.addr, "GET", &format!("/console/identity?item={item}"), &h, "").await;
    let detail = r.body.split("id=\"detail\"").nth(1).expect("the item's detail");
    assert!(detail.matches("1985-01-02").count() >= 2, "{detail}");
    let hp = [("cookie", op.as_str()), FORM];
    let r = http(
        d.addr,
        "POST",
        &format!("/console/identity/{item}"),
        &hp,
        &form(&[("csrf", &csrf), ("decision", "nonsense")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = http(
        d.addr,
        "POST",
        &format!("/console/identity/{item}"),
        &hp,
        &form(&[("csrf", &csrf), ("decision", "keep-apart")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let decision = {
        let g = vault.lock().unwrap();
        assert!(g.review_queue().is_empty(), "the item is decided");
        g.mpi().decisions().last().unwrap().id
    };
    let r = http(d.addr, "GET", "/console/identity", &h, "").await;
    let table = r.body.split("id=\"decisions\"").nth(1).expect("the decisions");
    assert!(table.contains("別人として区別") && table.contains("action=\"/console/identity/undo\""), "{table}");
    // Reversible: the undo is recorded beside the decision, and the item is open again.
    let r = http(
        d.addr,
        "POST",
        "/console/identity/undo",
        &hp,
        &form(&[("csrf", &csrf), ("decision", &decision.to_string())]),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    {
        let g = vault.lock().unwrap();
        assert!(g.mpi().decisions().iter().find(|x| x.id == decision).unwrap().undone);
    }
    let r = http(d.addr, "GET", "/console/identity", &h, "").await;
    assert!(r.body.contains("取消済み"), "{}", r.body);
    // The auditor reads the queue but decides nothing.
    let (aud, acsrf) = http_login(&d, AccountRole::Auditor).await;
    let r = http(d.addr, "GET", "/console/identity", &[("cookie", aud.as_str())], "").await;
    assert!(r.status == StatusCode::OK && !r.body.contains("action=\"/console/identity/"), "{}", r.body);
    let r = http(
        d.addr,
        "POST",
        &format!("/console/identity/{item}"),
        &[("cookie", aud.as_str()), FORM],
        &form(&[("csrf", &acsrf), ("decision", "merge")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

// ---- the browser -------------------------------------------------------------------------------

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("artifacts/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(cmd)).find(|p| p.is_file())
}

/// Chromium and chromedriver, or why not. Under CI a missing browser fails the test.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let found = (which("chromedriver"), which("chromium").or_else(|| which("chromium-browser")));
    match found {
        (Some(d), Some(c)) => Some((d, c)),
        _ => {
            let msg = "chromium or chromedriver is missing: run scripts/fetch-browser.sh";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("skipping the browser tests: {msg}");
            None
        }
    }
}

/// A chromedriver process, killed on drop.
struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(bin: &std::path::Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(start.elapsed() < StdDuration::from_secs(20), "chromedriver did not start");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    Driver { child, port }
}

use fantoccini::{Client, Locator};

struct B {
    c: Client,
    base: String,
    shots: PathBuf,
    saved: std::sync::Mutex<Vec<PathBuf>>,
}

impl B {
    async fn go(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }
    async fn html(&self) -> String {
        self.c.source().await.unwrap()
    }
    async fn fill(&self, id: &str, text: &str) {
        let e = self.c.find(Locator::Id(id)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }
    /// Sets a date input (typing into one follows the browser's locale format).
    async fn date(&self, id: &str, iso: &str) {
        let js = "document.getElementById(arguments[0]).value = arguments[1];";
        self.c.execute(js, vec![serde_json::json!(id), serde_json::json!(iso)]).await.unwrap();
    }
    async fn select(&self, id: &str, value: &str) {
        let e = self.c.find(Locator::Id(id)).await.unwrap();
        e.select_by_value(value).await.unwrap();
    }
    async fn submit(&self, form_action: &str) {
        let css = format!("form[method=post][action='{form_action}'] button[type=submit]");
        let button = self.c.find(Locator::Css(&css)).await.unwrap();
        self.click_and_wait(button).await;
    }

    /// Clicks and waits until a new document has loaded (a form post answers with a new page).
    async fn click_and_wait(&self, e: fantoccini::elements::Element) {
        self.c.execute("window.__kibanOld = true;", vec![]).await.unwrap();
        e.click().await.unwrap();
        let probe = "return !window.__kibanOld && document.readyState === 'complete';";
        for _ in 0..200 {
            if self.c.execute(probe, vec![]).await.map(|v| v == serde_json::json!(true)).unwrap_or(false) {
                return;
            }
            tokio::time::sleep(StdDuration::from_millis(25)).await;
        }
        panic!("no new page after the click");
    }

    /// Saves a screenshot; checks it is not blank (many distinct pixels) and the page shows
    /// `japanese` (the IPA font is installed, so it renders as glyphs, not tofu).
    async fn shot(&self, name: &str, japanese: &str) {
        let png = self.c.screenshot().await.unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        self.saved.lock().unwrap().push(path);
        let dec = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let bytes = &buf[..info.buffer_size()];
        let ink = bytes.chunks(info.color_type.samples()).filter(|px| px[..3].iter().any(|&v| v < 128)).count();
        assert!(ink > 2_000, "{name}: the screenshot is (nearly) blank: {ink} dark pixels");
        let text = self.c.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
        assert!(text.contains(japanese), "{name}: the page does not show {japanese:?}: {text}");
    }

    /// Every visible input, select and textarea has a label naming it.
    async fn labels_ok(&self, page: &str) {
        let js = "return [...document.querySelectorAll('input:not([type=hidden]),select,textarea')]\
                  .filter(e => !(e.id && document.querySelector('label[for=\"' + e.id + '\"]')))\
                  .map(e => e.name || e.outerHTML);";
        let missing = self.c.execute(js, vec![]).await.unwrap();
        assert_eq!(missing, serde_json::json!([]), "{page}: inputs without a label");
    }

    /// Pressing Tab from the top of the page reaches the submit button of `form_action`.
    async fn tab_reaches(&self, form_action: &str) {
        self.c
            .execute("document.activeElement && document.activeElement.blur(); window.scrollTo(0,0);", vec![])
            .await
            .unwrap();
        let body = self.c.find(Locator::Css("body")).await.unwrap();
        let _ = body;
        let probe = format!(
            "const e = document.activeElement; return !!(e && e.matches(\"form[method=post][action='{form_action}'] button[type=submit]\"));"
        );
        for _ in 0..80 {
            self.c.active_element().await.unwrap().send_keys("\u{E004}").await.unwrap();
            if self.c.execute(&probe, vec![]).await.unwrap() == serde_json::json!(true) {
                return;
            }
        }
        panic!("Tab never reached the submit button of {form_action}");
    }

    async fn login(&self, a: &DemoAccount) {
        self.go("/login").await;
        self.labels_ok("login").await;
        self.fill("login", &a.login).await;
        self.fill("password", DEMO_PASSWORD).await;
        // A fresh step: each account logs in once, and a code is accepted once (RFC 6238 §5.2).
        self.fill("totp", &auth::totp_code(&a.totp_secret, now_unix())).await;
        self.submit("/login").await;
        let html = self.html().await;
        assert!(html.contains("ログイン中") && html.contains(&a.account_id), "{} did not log in: {html}", a.login);
    }

    async fn logout(&self) {
        self.submit("/console/logout").await;
        assert!(self.c.current_url().await.unwrap().path().ends_with("/login"));
    }
}

/// Runs every role's journey; returns the screenshots saved.
async fn journeys(d: &Demo, driver: &Driver, chromium: &std::path::Path) -> Vec<PathBuf> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000", "--lang=ja"],
        }),
    );
    let c = fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("chromedriver session");
    let b = B { c, base: format!("http://{}", d.addr), shots: artifacts(), saved: Default::default() };
    let acct = |r| account(d, r);

    // Provider clerk: records an opt-out for a patient and sees it with its confirmation.
    b.login(acct(AccountRole::ProviderClerk)).await;
    b.shot("provider_clerk-home", "ホーム").await;
    b.go(&format!("/console/optouts?provider={}&patient=P-0001", demo::DEMO_PROVIDER)).await;
    b.labels_ok("optouts").await;
    b.tab_reaches("/console/optouts").await;
    b.fill("requester_name", "").await;
    b.submit("/console/optouts").await;
    let html = b.html().await;
    assert!(html.contains("id=\"requester_name-error\""), "the empty name is reported next to the field: {html}");
    b.fill("requester_name", "合成 太郎").await;
    b.fill("requester_detail", "東京都千代田区 本人").await;
    b.select("channel", "written").await;
    b.submit("/console/optouts").await;
    let html = b.html().await;
    assert!(html.contains("登録しました") && html.contains("/confirmation"), "{html}");
    b.shot("provider_clerk-optouts", "通知・オプトアウト").await;
    b.logout().await;

    // Intake operator: records a provider's filing and finds it in the list.
    b.login(acct(AccountRole::IntakeOperator)).await;
    b.go("/console/providers").await;
    b.labels_ok("providers").await;
    b.tab_reaches("/console/providers").await;
    b.fill("provider_id", "1310000002").await;
    b.fill("name", "合成第二病院").await;
    b.date("filed_on", "2026-01-05").await;
    b.date("planned_start", "2026-03-01").await;
    b.fill("transmission_method", "専用回線").await;
    b.submit("/console/providers").await;
    let html = b.html().await;
    assert!(html.contains("登録しました") && html.contains("合成第二病院"), "{html}");
    b.shot("intake_operator-providers", "提供事業者").await;
    b.go("/console/runs").await;
    b.shot("intake_operator-runs", "実行記録").await;
    b.go("/console/identity").await;
    b.shot("intake_operator-identity", "名寄せ").await;
    b.go("/console/batches").await;
    b.shot("intake_operator-batches", "取込バッチ").await;
    b.logout().await;

    // Processing engineer: de-identifies a clinical note.
    b.login(acct(AccountRole::ProcessingEngineer)).await;
    b.go("/console/deid").await;
    b.labels_ok("deid").await;
    b.tab_reaches("/console/deid").await;
    b.fill("text", "患者 山田太郎さん（東京都新宿区）は2026年4月1日に来院。").await;
    b.submit("/console/deid").await;
    let out = b.c.find(Locator::Id("deid-result")).await.unwrap().text().await.unwrap();
    assert!(!out.contains("山田太郎") && !out.is_empty(), "{out}");
    b.shot("processing_engineer-deid", "匿名化").await;
    // The publication checker sits in the console's layout: the role's menu and the logout button.
    b.go("/checker").await;
    let html = b.html().await;
    assert!(html.contains("href=\"/console/deid\"") && html.contains("action=\"/console/logout\""), "{html}");
    b.labels_ok("checker").await;
    b.shot("processing_engineer-checker", "公表物の確認").await;
    b.logout().await;
    // The public catalogue: the same layout, with no login navigation.
    b.go("/public/catalogue").await;
    let html = b.html().await;
    assert!(html.contains("href=\"/public/stats\"") && !html.contains("/console/logout"), "{html}");
    assert!(html.contains("本文へ移動") && !html.contains("<script"), "the shared layout's skip link: {html}");
    b.shot("public-catalogue", "データカタログ").await;

    // Committee member: votes on the application under review.
    b.login(acct(AccountRole::CommitteeMember)).await;
    b.go("/console/applications").await;
    b.shot("committee_member-applications", "審査中").await;
    b.click_and_wait(b.c.find(Locator::LinkText(&d.app)).await.unwrap()).await;
    b.labels_ok("application").await;
    b.tab_reaches(&format!("/console/applications/{}/vote", d.app)).await;
    b.select("vote", "approve").await;
    b.fill("reason", "公益性が高く、項目は最小限").await;
    b.submit(&format!("/console/applications/{}/vote", d.app)).await;
    let html = b.html().await;
    assert!(html.contains("登録しました") && html.contains("公益性が高く"), "{html}");
    b.shot("committee_member-vote", "承認").await;
    b.logout().await;

    // Secretariat: records a complaint; sees the ledger.
    b.login(acct(AccountRole::Secretariat)).await;
    b.go("/console/complaints").await;
    b.labels_ok("complaints").await;
    b.tab_reaches("/console/complaints").await;
    b.fill("content", "同意撤回の窓口がわかりにくい").await;
    b.fill("improvement", "案内を改訂").await;
    b.submit("/console/complaints").await;
    let html = b.html().await;
    assert!(html.contains("登録しました") && html.contains("同意撤回の窓口"), "{html}");
    b.shot("secretariat-complaints", "苦情").await;
    b.go("/console/ledger").await;
    b.shot("secretariat-ledger", "提供記録台帳").await;
    b.go("/console/supervision").await;
    assert!(b.html().await.contains("期限超過"), "the demo's overdue usage report is on the calendar");
    b.shot("secretariat-supervision", "監督予定表").await;
    b.go("/console/contractors").await;
    b.labels_ok("contractors").await;
    b.shot("secretariat-contractors", "委託先").await;
    b.logout().await;

    // Security officer: records an incident; sees the alerts.
    b.login(acct(AccountRole::SecurityOfficer)).await;
    b.go("/console/incidents").await;
    b.labels_ok("incidents").await;
    b.tab_reaches("/console/incidents").await;
    b.fill("risk_item", "持ち出し").await;
    b.fill("description", "USB 媒体の紛失の疑い").await;
    b.select("severity", "high").await;
    b.submit("/console/incidents").await;
    let html = b.html().await;
    assert!(html.contains("登録しました") && html.contains("USB 媒体の紛失の疑い"), "{html}");
    b.shot("security_officer-incidents", "インシデント").await;
    b.go("/console/alerts").await;
    b.shot("security_officer-alerts", "監視アラート").await;
    b.go("/console/leaks").await;
    b.labels_ok("leaks").await;
    b.tab_reaches("/console/leaks").await;
    b.fill("summary", "委託先での USB 媒体紛失").await;
    b.fill("persons", "3").await;
    b.submit("/console/leaks").await;
    let html = b.html().await;
    assert!(html.contains("登録しました") && html.contains("委託先での USB 媒体紛失"), "{html}");
    b.shot("security_officer-leaks", "漏えい等報告").await;
    b.logout().await;

    // Auditor: verifies the audit chain.
    b.login(acct(AccountRole::Auditor)).await;
    b.go("/console/audit").await;
    b.tab_reaches("/console/audit").await;
    b.submit("/console/audit").await;
    let res = b.c.find(Locator::Id("audit-result")).await.unwrap().text().await.unwrap();
    assert!(res.contains("改ざんは検出されませんでした"), "{res}");
    b.shot("auditor-audit", "監査ログ検証").await;
    b.logout().await;

    // Handler: sees only the home page and the publication check in the menu, and the application's phase.
    b.login(acct(AccountRole::Handler)).await;
    let mut links = Vec::new();
    for a in b.c.find_all(Locator::Css("nav a")).await.unwrap() {
        links.push(a.attr("href").await.unwrap().unwrap_or_default());
    }
    assert_eq!(links, ["/console", "/checker"], "a handler's menu holds the home page and the publication check");
    b.go(&format!("/console/applications/{}", d.app)).await;
    let phase = b.c.find(Locator::Id("phase")).await.unwrap().text().await.unwrap();
    assert_eq!(phase, "審査中");
    b.shot("handler-application", "審査中").await;
    b.go("/console/ledger").await;
    assert!(b.html().await.contains("your role may not do this"), "the ledger is refused to a handler");
    b.go("/console").await;
    b.logout().await;

    // Administrator: creates an account; English switch.
    b.login(acct(AccountRole::Administrator)).await;
    b.go("/console/accounts").await;
    b.labels_ok("accounts").await;
    b.tab_reaches("/console/accounts").await;
    b.fill("login", "new-handler").await;
    b.fill("display_name", "合成 新規").await;
    b.select("role", "handler").await;
    b.submit("/console/accounts").await;
    let created = b.c.find(Locator::Id("created")).await.unwrap().text().await.unwrap();
    assert!(created.contains("new-handler"), "{created}");
    b.shot("administrator-accounts", "アカウント").await;
    b.click_and_wait(b.c.find(Locator::LinkText("English")).await.unwrap()).await;
    let html = b.html().await;
    assert!(html.contains("lang=\"en\"") && html.contains("Create an account"), "{html}");
    b.logout().await;
    b.c.clone().close().await.unwrap();
    b.saved.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k12_every_role_logs_in_with_totp_and_does_its_task_in_chromium() {
    let Some((driver_bin, chromium)) = browser() else { return };
    let started = Instant::now();
    let d = demo_server().await;
    let driver = start_driver(&driver_bin).await;
    let shots = journeys(&d, &driver, &chromium).await;
    // Every write of the journeys is in the audit log, and the chain verifies.
    d.f.st.audit.flush().unwrap();
    let report = d.f.st.audit.verify(&kiban_audit::Actor::system(), "test").unwrap();
    assert!(report.is_intact(), "{}", report.summary());
    assert_eq!(shots.len(), 21, "a screenshot of each main page");
    assert!(shots.iter().all(|p| p.is_file()));
    eprintln!("browser journeys: {:.1} s", started.elapsed().as_secs_f64());
}
