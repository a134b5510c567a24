//! The identity routes (issue 4, item 6): look up, review queue and decisions, merge, split, undo,
//! key rotation, and linkage-key export for an approved linkage, as JSON behind the login and the
//! role table like every other route. The identity store itself is `kiban-identity`'s; this file
//! only speaks HTTP and bridges its audit hook to the audit log ([`AuditBridge`]).
//!
//! The store is handed to the router as an axum `Extension<SharedIdentity>` (the `kiban serve`
//! wiring adds it); without one the routes answer 503.

// Handlers return `Result<Response, Response>`, axum's usual shape; both sides are responses.
#![allow(clippy::result_large_err)]

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use kiban_audit::{Action, Actor, AuditSink, Event, JobKind, Object, ObjectKind};
use kiban_identity::mpi::RecordId;
use kiban_identity::store::{IdentityStore, LinkageApproval, ReviewDecision, StoreError};
use kiban_identity::vault::{AuditFailed, VaultAction, VaultAudit, VaultEvent};
use kiban_model::id::PersonKey;
use kiban_registry::Registry;
use kiban_registry::review::workflow::Phase;
use serde::Deserialize;
use serde_json::json;

use crate::{AppState, Caller, Res, RouteDesc, error, ok};

/// The identity store shared by the server's requests.
pub type SharedIdentity = Arc<Mutex<IdentityStore>>;

/// Hands the identity store to a router's identity routes.
pub trait WithStore: Sized {
    /// The router with the store attached.
    fn with_identity_store(self, store: IdentityStore) -> Self;
}

impl WithStore for axum::Router {
    fn with_identity_store(self, store: IdentityStore) -> Self {
        let shared: SharedIdentity = Arc::new(Mutex::new(store));
        self.layer(Extension(shared))
    }
}

/// Bridges the vault's audit hook to the audit log: one event per vault access, object kind
/// `identity`, the person key (or `vault`) as object id, the purpose as note; never identifiers.
pub struct AuditBridge<'a> {
    /// The log.
    pub sink: &'a dyn AuditSink,
    /// Who.
    pub actor: Actor,
    /// From where.
    pub source: String,
}

impl VaultAudit for AuditBridge<'_> {
    fn record(&self, e: &VaultEvent<'_>) -> Result<(), AuditFailed> {
        let action = match e.action {
            VaultAction::Open | VaultAction::Read => Action::Read,
            VaultAction::Write | VaultAction::Decide => Action::Write,
            VaultAction::Export => Action::Export,
            VaultAction::Erase => Action::Delete,
        };
        let object = e.person.map_or_else(|| "vault".to_owned(), |p| p.to_string());
        let ev = Event::new(self.actor.clone(), &self.source, action, Object::new(ObjectKind::Identity, object))
            .volume(e.records as u64)
            .job(JobKind::Linkage, "identity")
            .note(format!("{:?}: {}", e.action, e.purpose));
        self.sink.record(ev).map(|_| ()).map_err(|err| AuditFailed(err.to_string()))
    }
}

/// The identity vault's side of intake and deletion for the registry (issue 4 item 1): the
/// identity table's rows are registered through the MPI, clinical rows get person keys, and a
/// deletion request erases the provider's identity records. Every call is audited through `audit`.
pub struct VaultRouting<'a> {
    /// The store (the server's shared one, or the CLI's own).
    pub store: &'a Mutex<IdentityStore>,
    /// The audit hook.
    pub audit: &'a dyn VaultAudit,
    /// Who.
    pub actor: String,
}

impl VaultRouting<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdentityStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl kiban_registry::intake::IdentityRouting for VaultRouting<'_> {
    fn register(
        &self,
        provider_id: &str,
        rows: &kiban_registry::intake::RecordBatch,
    ) -> Result<Vec<Result<String, String>>, String> {
        let inputs = kiban_identity::identity::inputs_from_batch(provider_id, rows).map_err(|e| e.to_string())?;
        let res = self.lock().register_intake(self.audit, &self.actor, &inputs).map_err(|e| e.to_string())?;
        Ok(res.into_iter().map(|r| r.map(|p| p.to_string()).map_err(|e| e.to_string())).collect())
    }

    fn person_keys(&self, provider_id: &str, patient_ids: &[&str]) -> Result<Vec<Option<String>>, String> {
        let keys =
            self.lock().person_keys(self.audit, &self.actor, provider_id, patient_ids).map_err(|e| e.to_string())?;
        Ok(keys.into_iter().map(|k| k.map(|k| k.to_string())).collect())
    }

    fn register_public_expense_ids(
        &self,
        provider_id: &str,
        rows: &kiban_registry::intake::RecordBatch,
    ) -> Result<Vec<Result<String, String>>, String> {
        use kiban_identity::store::public_expense::inputs_from_batch;
        let inputs = inputs_from_batch(provider_id, rows).map_err(|e| e.to_string())?;
        let res =
            self.lock().register_public_expense_ids(self.audit, &self.actor, &inputs).map_err(|e| e.to_string())?;
        Ok(res.into_iter().map(|r| r.map(|p| p.to_string()).map_err(|e| e.to_string())).collect())
    }
}

impl kiban_registry::intake::VaultDeletion for VaultRouting<'_> {
    fn person_keys(&self, provider_id: &str, patient_id: &str) -> Result<Vec<String>, String> {
        let k =
            self.lock().person_keys(self.audit, &self.actor, provider_id, &[patient_id]).map_err(|e| e.to_string())?;
        Ok(k.into_iter().flatten().map(|k| k.to_string()).collect())
    }

    fn delete_identity(&self, provider_id: &str, patient_id: &str) -> Result<String, String> {
        let n = self
            .lock()
            .erase_source(self.audit, &self.actor, "P7 deletion", provider_id, patient_id)
            .map_err(|e| e.to_string())?;
        Ok(format!("erased {n} identity records from the vault"))
    }
}

/// Checks the review committee's record for a linkage-key export: the application must be approved
/// (phase `approved`) and name `database` among its linked databases.
pub async fn linkage_approval(reg: &Registry, application: &str, database: &str) -> Result<LinkageApproval, String> {
    let state = reg.application_state(application).await.map_err(|e| e.to_string())?;
    let approved = state.phase == Some(Phase::Approved);
    let linked = state.application.as_ref().map(|a| a.plan.linkage.clone()).unwrap_or_default();
    LinkageApproval::check(application, approved, &linked, database).map_err(|e| e.to_string())
}

/// The identity routes.
pub fn descriptors() -> Vec<RouteDesc> {
    vec![
        route!(get, "/api/identity/lookup", lookup),
        route!(get, "/api/identity/persons/{id}", person),
        route!(get, "/api/identity/reviews", reviews),
        route!(get, "/api/identity/reviews/{id}", review_detail),
        route!(post, "/api/identity/reviews/{id}", decide),
        route!(post, "/api/identity/merge", merge),
        route!(post, "/api/identity/split", split),
        route!(post, "/api/identity/undo", undo),
        route!(post, "/api/identity/rotate-key", rotate_key),
        route!(post, "/api/identity/linkage-export", linkage_export),
    ]
}

type Store = Option<Extension<SharedIdentity>>;

/// The identity store the server was started with, or 503.
#[allow(clippy::result_large_err)] // axum's handler shape: the error is the response
pub(crate) fn store(s: Store) -> Result<SharedIdentity, Response> {
    s.map(|Extension(s)| s).ok_or_else(|| error(StatusCode::SERVICE_UNAVAILABLE, "the identity store is not open"))
}

/// The audit bridge the identity store records through for `c`.
pub(crate) fn bridge<'a>(st: &'a AppState, c: &Caller) -> AuditBridge<'a> {
    AuditBridge { sink: st.audit.as_ref(), actor: c.actor(), source: c.source.clone() }
}

fn store_err(e: StoreError) -> Response {
    let status = match &e {
        StoreError::Audit(_) | StoreError::Poisoned => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::UnknownPerson(_) | StoreError::Mpi(kiban_identity::mpi::MpiError::UnknownItem(_)) => {
            StatusCode::NOT_FOUND
        }
        StoreError::Mpi(_) => StatusCode::CONFLICT,
        StoreError::NotApproved(_) => StatusCode::FORBIDDEN,
        StoreError::Keys(_) => StatusCode::UNPROCESSABLE_ENTITY,
        StoreError::Vault(_) | StoreError::Stored { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

fn lock(s: &SharedIdentity) -> std::sync::MutexGuard<'_, IdentityStore> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The store, caught up with what other processes (the CLI) wrote to the vault since.
fn fresh<'a>(
    s: &'a SharedIdentity,
    st: &AppState,
    c: &Caller,
) -> Result<std::sync::MutexGuard<'a, IdentityStore>, Response> {
    let mut g = lock(s);
    g.refresh(&bridge(st, c), &c.account_id).map_err(store_err)?;
    Ok(g)
}

fn person_key(s: &str) -> Result<PersonKey, Response> {
    PersonKey::parse(s).map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))
}

/// `?provider=&patient=`.
#[derive(Debug, Deserialize)]
pub struct LookupQuery {
    provider: String,
    patient: String,
}

async fn lookup(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    s: Store,
    q: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Res {
    let s = store(s)?;
    let Ok(Query(q)) = q else { return Err(error(StatusCode::BAD_REQUEST, "give ?provider=…&patient=…")) };
    let v = fresh(&s, &st, &c)?
        .lookup_source(&bridge(&st, &c), &c.account_id, &q.provider, &q.patient)
        .map_err(store_err)?;
    ok(json!({ "records": v }))
}

async fn person(State(st): State<AppState>, Extension(c): Extension<Caller>, s: Store, Path(p): Path<String>) -> Res {
    let s = store(s)?;
    let p = person_key(&p)?;
    let v = fresh(&s, &st, &c)?.lookup_person(&bridge(&st, &c), &c.account_id, p).map_err(store_err)?;
    ok(json!({ "person": p.to_string(), "records": v }))
}

async fn reviews(State(st): State<AppState>, Extension(c): Extension<Caller>, s: Store) -> Res {
    let s = store(s)?;
    let q = fresh(&s, &st, &c)?.review_queue();
    let items: Vec<_> = q
        .iter()
        .map(|i| json!({"item": i.id, "record": i.record.0, "candidate": i.candidate.to_string(), "score": i.score}))
        .collect();
    ok(json!({ "open": items }))
}

async fn review_detail(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    s: Store,
    Path(item): Path<u64>,
) -> Res {
    let s = store(s)?;
    let v = fresh(&s, &st, &c)?.review_detail(&bridge(&st, &c), &c.account_id, item).map_err(store_err)?;
    ok(json!(v))
}

/// `{"decision": "merge" | "split" | "keep-apart"}`.
#[derive(Debug, Deserialize)]
pub struct DecideBody {
    #[serde(default)]
    decision: String,
}

async fn decide(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    s: Store,
    Path(item): Path<u64>,
    Json(b): Json<DecideBody>,
) -> Res {
    let s = store(s)?;
    let d = ReviewDecision::parse(&b.decision)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "decision must be merge, split or keep-apart"))?;
    let id = lock(&s).decide(&bridge(&st, &c), &c.account_id, item, d).map_err(store_err)?;
    ok(json!({ "decision": id }))
}

/// `{"from": "pk-…", "into": "pk-…"}`.
#[derive(Debug, Deserialize)]
pub struct MergeBody {
    #[serde(default)]
    from: String,
    #[serde(default)]
    into: String,
}

async fn merge(State(st): State<AppState>, Extension(c): Extension<Caller>, s: Store, Json(b): Json<MergeBody>) -> Res {
    let s = store(s)?;
    let (from, into) = (person_key(&b.from)?, person_key(&b.into)?);
    let id = lock(&s).merge(&bridge(&st, &c), &c.account_id, from, into).map_err(store_err)?;
    ok(json!({ "decision": id }))
}

/// `{"record": 12}`.
#[derive(Debug, Deserialize)]
pub struct SplitBody {
    record: Option<u32>,
}

async fn split(State(st): State<AppState>, Extension(c): Extension<Caller>, s: Store, Json(b): Json<SplitBody>) -> Res {
    let s = store(s)?;
    let r = b.record.ok_or_else(|| error(StatusCode::BAD_REQUEST, "give the record id"))?;
    let (id, to) = lock(&s).split(&bridge(&st, &c), &c.account_id, RecordId(r)).map_err(store_err)?;
    ok(json!({ "decision": id, "person": to.to_string() }))
}

/// `{"decision": 3}`.
#[derive(Debug, Deserialize)]
pub struct UndoBody {
    decision: Option<u64>,
}

async fn undo(State(st): State<AppState>, Extension(c): Extension<Caller>, s: Store, Json(b): Json<UndoBody>) -> Res {
    let s = store(s)?;
    let d = b.decision.ok_or_else(|| error(StatusCode::BAD_REQUEST, "give the decision id"))?;
    lock(&s).undo(&bridge(&st, &c), &c.account_id, d).map_err(store_err)?;
    ok(json!({ "undone": d }))
}

/// `{"domain": "release-2026-01"}`.
#[derive(Debug, Deserialize)]
pub struct RotateBody {
    #[serde(default)]
    domain: String,
}

async fn rotate_key(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    s: Store,
    Json(b): Json<RotateBody>,
) -> Res {
    let s = store(s)?;
    if b.domain.trim().is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "give the pseudonym domain"));
    }
    let version = lock(&s).keys_mut().rotate(&b.domain).map_err(|e| store_err(e.into()))?.version();
    let ev = Event::new(c.actor(), &c.source, Action::KeyUse, Object::new(ObjectKind::Key, &b.domain))
        .note(format!("rotated to v{version}"));
    st.audit.record(ev).map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable"))?;
    ok(json!({ "domain": b.domain, "version": version }))
}

/// `{"application": "…", "database": "NDB", "persons": ["pk-…"]}` (no persons: everyone).
#[derive(Debug, Deserialize)]
pub struct ExportBody {
    #[serde(default)]
    application: String,
    #[serde(default)]
    database: String,
    persons: Option<Vec<String>>,
}

async fn linkage_export(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    s: Store,
    Json(b): Json<ExportBody>,
) -> Res {
    let s = store(s)?;
    let approval = linkage_approval(&st.reg, &b.application, &b.database)
        .await
        .map_err(|e| error(StatusCode::FORBIDDEN, &format!("linkage-key export refused: {e}")))?;
    let persons = b.persons.map(|v| v.iter().map(|p| person_key(p)).collect::<Result<Vec<_>, _>>()).transpose()?;
    let rows =
        lock(&s).linkage_export(&bridge(&st, &c), &c.account_id, &approval, persons.as_deref()).map_err(store_err)?;
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "person": r.person.to_string(),
                "id1": r.id1.as_ref().ok(),
                "id1_error": r.id1.as_ref().err().map(|e| e.to_string()),
                "id2": r.id2.as_ref().and_then(|x| x.as_ref().ok()),
                "id2_error": r.id2.as_ref().and_then(|x| x.as_ref().err()).map(|e| e.to_string()),
            })
        })
        .collect();
    ok(json!({ "application": approval.application(), "database": approval.database(), "rows": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use chrono::Utc;
    use http_body_util::BodyExt;
    use kiban_audit::{AuditLog, CheckpointKey};
    use kiban_identity::identity::IdentityInput;
    use kiban_identity::keystore::KeyStore;
    use kiban_identity::mpi::MatchConfig;
    use kiban_identity::vault::MemoryAudit;
    use kiban_registry::accounts::AccountRole;
    use tower::ServiceExt;

    struct NoSealer;
    impl crate::Sealer for NoSealer {
        fn seal(&self, _: &[u8], pt: &[u8]) -> Vec<u8> {
            pt.to_vec()
        }
        fn open(&self, _: &[u8], s: &[u8]) -> Option<Vec<u8>> {
            Some(s.to_vec())
        }
    }

    fn input(patient: &str, kana: &str, branch: &str) -> IdentityInput {
        IdentityInput {
            provider_id: "prov-a".into(),
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
        }
    }

    async fn call(
        r: &axum::Router,
        token: &str,
        method: &str,
        uri: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("cookie", format!("kiban_session={token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let res = r.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn p7_identity_routes_need_the_role_and_every_lookup_is_audited_without_identifiers() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(&Registry::sqlite_url(&dir.path().join("registry.sqlite"))).await.unwrap();
        reg.migrate().await.unwrap();
        let key = CheckpointKey::from_bytes(&[7u8; 32]).unwrap();
        let audit = Arc::new(AuditLog::open(dir.path().join("audit"), key.clone()).unwrap());
        let st = Arc::new(crate::Inner {
            reg,
            audit: audit.clone(),
            sealer: Arc::new(NoSealer),
            authz: crate::Authz::builtin(),
            cfg: crate::ServerConfig::default(),
            audit_key: key,
            data_dir: dir.path().to_owned(),
        });
        let keys = KeyStore::create(&dir.path().join("keys")).unwrap();
        let m = MemoryAudit::default();
        let cfg = MatchConfig { upper: 100.0, lower: 0.0, ..Default::default() };
        let mut store = IdentityStore::open(&dir.path().join("identity"), keys, cfg, &m, "t").unwrap();
        store.register(&m, "t", &[input("p1", "サトウ ハナコ", "00"), input("p2", "ｻﾄｳ ﾊﾅｺ", "01")]).unwrap();
        let router = crate::build_router(st.clone(), descriptors()).with_identity_store(store);
        let mut tokens = std::collections::HashMap::new();
        for role in [AccountRole::IntakeOperator, AccountRole::Auditor, AccountRole::SecurityOfficer] {
            let a = st.reg.create_account(&format!("r.{role}"), "r", role, "admin", Utc::now()).await.unwrap();
            let token = crate::auth::new_token();
            st.reg
                .create_session(&crate::auth::sha256_hex(&token), &a.account_id, role, "t", Utc::now())
                .await
                .unwrap();
            tokens.insert(role, token.to_string());
        }
        let op = &tokens[&AccountRole::IntakeOperator];
        let (s, v) = call(&router, op, "GET", "/api/identity/lookup?provider=prov-a&patient=p1", "").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let person = v["records"][0]["person"].as_str().unwrap().to_owned();
        assert_eq!(v["records"][0]["identity"]["kana"], "サトウ ハナコ");
        let (s, _) =
            call(&router, &tokens[&AccountRole::Auditor], "GET", "/api/identity/lookup?provider=prov-a&patient=p1", "")
                .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "auditors see the queue, not identities");
        // Review: list, decide merge, undo.
        let (s, v) = call(&router, op, "GET", "/api/identity/reviews", "").await;
        assert_eq!(s, StatusCode::OK);
        let item = v["open"][0]["item"].as_u64().unwrap();
        let (s, v) =
            call(&router, op, "POST", &format!("/api/identity/reviews/{item}"), r#"{"decision":"merge"}"#).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let d = v["decision"].as_u64().unwrap();
        let (_, v) = call(&router, op, "GET", &format!("/api/identity/persons/{person}"), "").await;
        assert_eq!(v["records"].as_array().unwrap().len(), 2, "merged: {v}");
        let (s, _) = call(&router, op, "POST", "/api/identity/undo", &format!(r#"{{"decision":{d}}}"#)).await;
        assert_eq!(s, StatusCode::OK);
        let (_, v) = call(&router, op, "GET", &format!("/api/identity/persons/{person}"), "").await;
        assert_eq!(v["records"].as_array().unwrap().len(), 1, "undone: {v}");
        // Linkage export without an approved application is refused.
        let (s, v) =
            call(&router, op, "POST", "/api/identity/linkage-export", r#"{"application":"a-1","database":"NDB"}"#)
                .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        // Key rotation is the security officer's.
        let so = &tokens[&AccountRole::SecurityOfficer];
        let (s, v) = call(&router, so, "POST", "/api/identity/rotate-key", r#"{"domain":"release-1"}"#).await;
        assert_eq!((s, v["version"].as_u64()), (StatusCode::OK, Some(1)));
        assert_eq!(
            call(&router, op, "POST", "/api/identity/rotate-key", r#"{"domain":"x"}"#).await.0,
            StatusCode::FORBIDDEN
        );
        // The audit log has the lookups as identity reads, and no identifier anywhere.
        audit.flush().unwrap();
        let mut entries = vec![];
        kiban_audit::for_each_entry(&dir.path().join("audit"), |e| {
            entries.push(e);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        let reads: Vec<_> = entries
            .iter()
            .filter(|e| e.event.object.kind == ObjectKind::Identity && e.event.action == Action::Read)
            .collect();
        assert!(reads.iter().any(|e| e.event.object.id == person && e.event.volume == 1), "{reads:?}");
        assert!(
            entries
                .iter()
                .any(|e| e.event.action == Action::Write && e.event.note.as_deref().unwrap_or("").contains("undo"))
        );
        let all = serde_json::to_string(&entries.iter().map(|e| &e.event).collect::<Vec<_>>()).unwrap();
        for secret in ["佐藤", "サトウ", "ｻﾄｳ", "p1", "p2", "1985", "0312345678", "01130012"] {
            assert!(!all.contains(secret), "the audit log carries {secret}");
        }
    }
}
