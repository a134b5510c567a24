//! The OpenAPI 3.1 document of the main server, generated from the route descriptors the router is
//! built from ([`crate::routes`]) and the authorization table: every route appears, with its path
//! parameters, who may call it (`x-kiban-roles`) and the status codes it can answer.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use crate::{Allow, AppState, Authz, Res};

/// The status codes a route can answer, derived from its method, path and access rule.
pub fn documented_statuses(method: &str, path: &str, public: bool) -> Vec<u16> {
    let mut v = vec![200];
    let form = path.starts_with("/console") || matches!(path, "/login" | "/setup" | "/password");
    if method == "POST" {
        // Body rejections: malformed (400), wrong media type (415), refused by a rule (422).
        v.extend([400, 415, 422]);
        if form {
            v.push(303);
        }
    }
    if method == "GET" && (path.contains("lookup") || path == "/console/optouts") {
        v.extend([400, 422]);
    }
    if path.contains('{')
        || path.starts_with("/api/batches")
        || path.starts_with("/api/identity")
        || path.starts_with("/public/stats")
        || path == "/console/compliance/matrix"
        || path == "/console/identity"
    {
        // For /public/stats*: nothing is published yet (`kiban publish` has not run).
        // The record named does not exist (404), or its id breaks the id's rule (422).
        v.extend([404, 422]);
    }
    if path.starts_with("/api/identity") || path.starts_with("/console/identity") {
        // The store's refusals: a conflicting merge, an unapproved export.
        v.extend([409, 422]);
    }
    if path == "/api/deid/text" || path == "/api/pseudonymize" {
        v.push(413);
    }
    if public {
        v.push(401);
    } else {
        v.extend([401, 403]);
    }
    // The audit log (or the identity store) unavailable: the request is not reported done.
    v.push(503);
    v.sort_unstable();
    v.dedup();
    v
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        303 => "Done: see the page it redirects to",
        400 => "Malformed request",
        401 => "Not logged in, or the session ended",
        403 => "The role may not call this route (authz.toml), or the form token is wrong",
        404 => "The record named in the path does not exist (or nothing is published yet)",
        409 => "Conflicts with the current state",
        413 => "Too large",
        415 => "Wrong content type",
        422 => "Refused by a rule; the message names the field and the rule",
        503 => "The audit log or the identity store is unavailable",
        _ => "",
    }
}

/// The body of every JSON error: `{"error": "…"}`, the message naming the field and the rule.
pub fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "minLength": 1}},
        "additionalProperties": false,
    })
}

/// What a route answers in, by family: the JSON API answers JSON; the console, the login pages,
/// the checker, the public site and the workspace answer HTML pages (the public site also CSV).
fn answers_html(path: &str) -> bool {
    !(path.starts_with("/api/") || path.starts_with("/intake/") || path.starts_with("/release/") || path == "/logout")
}

/// Turns a plain-text client error (axum's rejection of a malformed body, query or path, whose
/// message names the field) into the documented JSON error, so every error of every route has
/// the one `Error` shape.
pub async fn json_rejections(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let res = next.run(req).await;
    let plain = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !res.status().is_client_error() || !plain {
        return res;
    }
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let msg = String::from_utf8_lossy(&bytes);
    let msg = if msg.trim().is_empty() { reason(parts.status.as_u16()) } else { msg.trim() };
    crate::error(parts.status, msg)
}

/// The media types (with schemas where the body is JSON) of one response of a route.
pub fn response_content(method: &str, path: &str, code: u16) -> Value {
    let error = json!({"schema": {"$ref": "#/components/schemas/Error"}});
    let any_json = json!({"schema": {"type": ["object", "array"]}});
    let html = json!({"schema": {"type": "string"}});
    match (code, answers_html(path)) {
        // A redirect has no body worth a schema.
        (303, _) => json!({}),
        (200, false) => json!({"application/json": any_json}),
        (200, true) => {
            let mut m = json!({"text/html": html});
            if path.ends_with(".csv") {
                m["text/csv"] = json!({"schema": {"type": "string"}});
            }
            if path.starts_with("/public/stats") {
                m["application/json"] = any_json;
            }
            if method == "GET" && path.contains("/output") {
                m["application/octet-stream"] = json!({"schema": {"type": "string"}});
            }
            m
        }
        // The authorization layer and the handlers' refusals answer JSON; a page also answers
        // its form again (422, 403 for a stale form token) or the login form (401) as HTML.
        (_, false) => json!({"application/json": error}),
        (_, true) => json!({"application/json": error, "text/html": html}),
    }
}

/// Builds the document from the route list and the table.
pub fn build(routes: &[(String, String)], authz: &Authz) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    let mut schemas: Map<String, Value> = Map::new();
    schemas.insert("Error".into(), error_schema());
    let typed = typed_routes(&mut schemas);
    for (method, path) in routes {
        let rule = authz.rule(method, path);
        let public = matches!(rule, Some(Allow::Public));
        let roles: Vec<String> = match rule {
            Some(Allow::Roles(r)) => r.iter().map(|r| r.to_string()).collect(),
            Some(Allow::Public) => vec!["public".into()],
            None => Vec::new(),
        };
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut responses = Map::new();
        for code in documented_statuses(method, path, public) {
            let mut content = response_content(method, path, code);
            if code == 200
                && let Some((_, resp)) = typed.get(&(method.as_str(), path.as_str()))
            {
                content["application/json"] = json!({"schema": resp});
            }
            responses.insert(code.to_string(), json!({"description": reason(code), "content": content}));
        }
        let op_id = format!(
            "{}{}",
            method.to_lowercase(),
            path.replace(['{', '}'], "")
                .split(['/', '-', '.'])
                .filter(|s| !s.is_empty())
                .map(|s| {
                    let mut c = s.chars();
                    c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
                })
                .collect::<String>()
        );
        let tag = path.trim_start_matches('/').split('/').take(2).collect::<Vec<_>>().join("/");
        let mut op = json!({
            "operationId": op_id,
            "tags": [tag],
            "parameters": params,
            "responses": responses,
            "x-kiban-roles": roles,
        });
        if public {
            op["security"] = json!([]);
        }
        if method == "POST" {
            let media = if path.starts_with("/console") || matches!(path.as_str(), "/login" | "/setup" | "/password") {
                "application/x-www-form-urlencoded"
            } else if path.ends_with("/import") {
                "text/csv"
            } else {
                "application/json"
            };
            let schema = match typed.get(&(method.as_str(), path.as_str())) {
                Some((Some(req), _)) => req.clone(),
                _ => json!({"type": "object"}),
            };
            op["requestBody"] = json!({"required": false, "content": {media: {"schema": schema}}});
        }
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        entry[method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "kiban",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "kiban の JSON API と管理コンソール。The JSON API and console of kiban; generated from the route table and authz.toml.",
        },
        "components": {"schemas": schemas, "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": crate::SESSION_COOKIE},
            "bearer": {"type": "http", "scheme": "bearer"},
        }},
        "security": [{"session": []}, {"bearer": []}],
        "paths": paths,
    })
}

/// The typed routes' (request, 200 body) schemas by (method, path); their shared definitions go
/// into `schemas`. Routes not in the table keep the generic `object`/`array` body.
fn typed_routes(
    schemas: &mut Map<String, Value>,
) -> std::collections::HashMap<(&'static str, &'static str), (Option<Value>, Value)> {
    super::schemas::typed(schemas).into_iter().map(|t| ((t.method, t.path), (t.request, t.response))).collect()
}

/// The document of the main server's routes.
pub fn main_document(authz: &Authz) -> Value {
    let routes: Vec<(String, String)> =
        crate::routes().iter().map(|d| (d.method.to_string(), d.path.to_owned())).collect();
    build(&routes, authz)
}

/// `GET /api/openapi.json`.
pub(crate) async fn document(State(st): State<AppState>) -> Res {
    let mut r = axum::Json(main_document(&st.authz)).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}
