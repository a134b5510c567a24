//! kiban's HTTP server: the JSON API, the login page, and the two gateways (R12).
//!
//! Invariants: only this crate knows HTTP; roles are enforced in one place — the middleware in
//! [`authorize`], against the route × role table `authz.toml` (deny by default); the router is
//! built from the list of route descriptors [`routes`], so every route can be enumerated and
//! tested against the table; every request touching medical information, identities, keys,
//! ledgers, accounts or releases appends an audit event; no password, TOTP secret or session token
//! appears in a log, an error, a `Debug` output or an audit event.

/// A route descriptor from a method function (`get`, `post`), a path and a handler; the module
/// using it imports `Method`, `RouteDesc` and the method function.
macro_rules! route {
    ($m:ident, $path:literal, $h:expr) => {
        RouteDesc {
            method: Method::from_bytes(stringify!($m).to_uppercase().as_bytes()).expect("method"),
            path: $path,
            handler: $m($h),
        }
    };
}

pub mod anonymize;
pub mod api;
pub mod auth;
pub mod authz;
pub mod checker;
pub mod console;
pub mod deid;
pub mod drill;
pub mod gateway;
pub mod identity;
pub mod intake;
pub mod public;
pub mod publish;
pub mod review;
pub mod workspace;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use chrono::{DateTime, Utc};
use kiban_audit::{Action, Actor, AuditLog, AuditSink, CheckpointKey, Event, Object, ObjectKind, Outcome, Role};
use kiban_registry::Registry;
use kiban_registry::accounts::AccountRole;

pub use auth::Sealer;
pub use authz::{Allow, Authz};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kiban_session";

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Mark the cookie `Secure` (when serving TLS).
    pub secure_cookie: bool,
    /// A session idle longer than this ends (X5).
    pub idle_timeout: chrono::Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { secure_cookie: false, idle_timeout: chrono::Duration::minutes(15) }
    }
}

/// Everything a request handler reaches.
pub struct Inner {
    /// The registry.
    pub reg: Registry,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Seals TOTP secrets with the key store.
    pub sealer: Arc<dyn Sealer>,
    /// The authorization table.
    pub authz: Authz,
    /// Configuration.
    pub cfg: ServerConfig,
    /// The checkpoint key (for verification).
    pub audit_key: CheckpointKey,
    /// Where the gateways keep files (`<data-dir>/staging/inbox`, prepared releases).
    pub data_dir: std::path::PathBuf,
}

/// Shared state.
pub type AppState = Arc<Inner>;

/// The caller of an authenticated request, set by [`authorize`].
#[derive(Debug, Clone)]
pub struct Caller {
    /// Account id.
    pub account_id: String,
    /// Role of the session.
    pub role: AccountRole,
    /// Source address.
    pub source: String,
    /// For a provider clerk, the providers the account acts for; `None` for roles not scoped by
    /// provider.
    pub providers: Option<Vec<String>>,
}

impl Caller {
    /// The audit actor.
    pub fn actor(&self) -> Actor {
        Actor::new(&self.account_id, audit_role(self.role))
    }

    /// Whether this caller may act for `provider` (X1: a clerk only for their own providers).
    pub fn acts_for(&self, provider: &str) -> bool {
        self.providers.as_ref().is_none_or(|p| p.iter().any(|x| x == provider))
    }

    /// [`Caller::acts_for`] as a handler check: 403 naming the provider, and audited.
    #[allow(clippy::result_large_err)] // axum's handler shape: the error is the response
    pub fn require_provider(&self, st: &AppState, provider: &str) -> Result<(), Response> {
        if self.acts_for(provider) {
            return Ok(());
        }
        let ev = Event::new(self.actor(), &self.source, Action::Read, Object::new(ObjectKind::Ledger, provider))
            .outcome(Outcome::Denied)
            .note("provider outside the clerk's scope".to_owned());
        if st.audit.record(ev).is_err() {
            return Err(error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable"));
        }
        Err(error(
            StatusCode::FORBIDDEN,
            &format!("provider_id {provider}: this account does not act for that provider"),
        ))
    }
}

/// The audit log's role for an account role. The audit vocabulary has no administrator: the
/// administrator is recorded as a security officer so every monitoring rule still applies.
pub fn audit_role(r: AccountRole) -> Role {
    match r {
        AccountRole::ProviderClerk => Role::ProviderClerk,
        AccountRole::IntakeOperator => Role::IntakeOperator,
        AccountRole::ProcessingEngineer => Role::ProcessingEngineer,
        AccountRole::CommitteeMember => Role::CommitteeMember,
        AccountRole::Secretariat => Role::Secretariat,
        AccountRole::SecurityOfficer | AccountRole::Administrator => Role::SecurityOfficer,
        AccountRole::Auditor => Role::Auditor,
        AccountRole::Handler => Role::UserType1,
    }
}

/// The time now (one place, so it can be traced).
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// One route: method, path pattern, handler.
pub struct RouteDesc {
    /// HTTP method.
    pub method: Method,
    /// Path pattern as axum writes it.
    pub path: &'static str,
    /// The handler.
    pub handler: MethodRouter<AppState>,
}

/// Every route of the main server, the one list the router is built from.
pub fn routes() -> Vec<RouteDesc> {
    let mut v = api::descriptors();
    v.extend(intake::descriptors());
    v.extend(review::descriptors());
    v.extend(checker::descriptors());
    v.extend(identity::descriptors());
    v.extend(public::descriptors());
    v.extend(console::descriptors());
    v.extend(workspace::descriptors());
    v.extend(anonymize::descriptors());
    v
}

/// Builds a router from descriptors, with the authorization layer on every route.
pub fn build_router(state: AppState, descs: Vec<RouteDesc>) -> Router {
    let mut r: Router<AppState> = Router::new();
    for d in descs {
        r = r.route(d.path, d.handler);
    }
    r.route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn(console::openapi::json_rejections))
        .with_state(state)
}

/// The main server's router.
pub fn router(state: AppState) -> Router {
    build_router(state, routes())
}

/// The session token from a Cookie header, if well-formed (64 hex digits).
pub fn session_token(cookie_header: &str) -> Option<&str> {
    cookie_header.split(';').filter_map(|kv| kv.trim().split_once('=')).find_map(|(k, v)| {
        (k == SESSION_COOKIE && v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then_some(v)
    })
}

fn source_of(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A handler's result: both sides are responses (axum's usual shape).
pub type Res = Result<Response, Response>;

/// A JSON 200 response.
#[allow(clippy::result_large_err)] // axum's handler shape: both sides are responses
pub fn ok(v: impl serde::Serialize) -> Res {
    Ok(axum::Json(v).into_response())
}

/// The event of `c` doing `action` to the object `kind`/`id`.
pub fn event_of(c: &Caller, action: Action, kind: ObjectKind, id: impl Into<String>) -> Event {
    Event::new(c.actor(), &c.source, action, Object::new(kind, id))
}

/// Records an audit event; when the log cannot record, the request fails (the operation is not
/// reported done).
#[allow(clippy::result_large_err)] // axum's handler shape: the error is the response
pub fn record_event(st: &AppState, ev: Event) -> Result<(), Response> {
    st.audit.record(ev).map(|_| ()).map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable"))
}

/// An error response with a JSON body.
pub fn error(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": msg }))).into_response()
}

/// The authorization layer: public routes pass; otherwise a live session whose role the table
/// allows on the matched route, else 401 or 403 (and a denied request is audited).
pub async fn authorize(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let source = source_of(&req);
    let method = req.method().as_str().to_owned();
    let Some(path) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()) else {
        return error(StatusCode::NOT_FOUND, "no such route");
    };
    if st.authz.rule(&method, &path).is_none() {
        // Deny by default; for a method the path does not have this is the honest answer.
        return error(StatusCode::METHOD_NOT_ALLOWED, "no such route for this method");
    }
    if st.authz.is_public(&method, &path) {
        req.extensions_mut().insert(Source(source));
        return next.run(req).await;
    }
    let token = req.headers().get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(session_token);
    let token = token.or_else(|| {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    let Some(token) = token else {
        return unauthorized(&path, "log in first");
    };
    let session = match st.reg.live_session(&auth::sha256_hex(token), st.cfg.idle_timeout, now()).await {
        Ok(Some(s)) => s,
        Ok(None) => return unauthorized(&path, "the session ended: log in again"),
        Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "the registry is unavailable"),
    };
    let providers = if session.role == AccountRole::ProviderClerk {
        match st.reg.provider_scope(&session.account_id).await {
            Ok(p) => Some(p),
            Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "the registry is unavailable"),
        }
    } else {
        None
    };
    let caller = Caller { account_id: session.account_id, role: session.role, source, providers };
    if !st.authz.allows(&method, &path, caller.role) {
        let ev = Event::new(caller.actor(), &caller.source, Action::Read, Object::new(ObjectKind::Config, &path))
            .outcome(Outcome::Denied)
            .note(format!("{method} {path} not allowed for {}", caller.role));
        if st.audit.record(ev).is_err() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable");
        }
        return error(StatusCode::FORBIDDEN, "your role may not do this");
    }
    // A `{provider}` in the route names whose records these are: a clerk's scope must hold it.
    if let Some(i) = path.split('/').position(|seg| seg == "{provider}")
        && let Some(seg) = req.uri().path().split('/').nth(i)
    {
        let provider = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
        if let Err(r) = caller.require_provider(&st, &provider) {
            return r;
        }
    }
    req.extensions_mut().insert(Source(caller.source.clone()));
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// 401: the console's pages answer with the login form, the API with JSON.
fn unauthorized(path: &str, msg: &str) -> Response {
    if path.starts_with("/console") {
        let page = api::login_html(None);
        return (StatusCode::UNAUTHORIZED, [(header::CACHE_CONTROL, "no-store")], axum::response::Html(page))
            .into_response();
    }
    error(StatusCode::UNAUTHORIZED, msg)
}

/// The source address of a request (set by the authorization layer on every route).
#[derive(Debug, Clone)]
pub struct Source(pub String);

/// Serves `router` on `listener` until ctrl-c, plain HTTP.
pub async fn serve_plain(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

/// Serves `router` on `addr` with TLS (rustls) from PEM certificate and key files.
pub async fn serve_tls(
    addr: SocketAddr,
    cert: &std::path::Path,
    key: &std::path::Path,
    router: Router,
) -> std::io::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
    axum_server::bind_rustls(addr, config).serve(router.into_make_service_with_connect_info::<SocketAddr>()).await
}
