//! The security drill of `kiban demo` (issue 11, item 9): real requests through the real router show
//! the accounts, their two-factor coverage, a brute-force attempt being locked out and alerted, the
//! security officer's response, and the audit chain verified afterwards.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use kiban_audit::{Actor, Alert};
use kiban_registry::accounts::{AccountRole, AccountStatus};
use tower::ServiceExt;

use crate::AppState;
use crate::auth;
use crate::console::demo::{self, DEMO_PASSWORD};

/// The attacker's address: TEST-NET-3 (RFC 5737), never a real host.
pub const ATTACKER: &str = "203.0.113.7";
/// The security officer's terminal: TEST-NET-1.
const OFFICER: &str = "192.0.2.10";
/// Wrong passwords the attacker tries.
const ATTEMPTS: usize = 6;

/// What the drill saw; every figure is read back from the registry or the audit log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrillReport {
    /// Active accounts.
    pub accounts: usize,
    /// Distinct roles among them.
    pub roles: usize,
    /// Active accounts whose role needs a second factor.
    pub totp_required: usize,
    /// … of which have TOTP enrolled.
    pub totp_enrolled: usize,
    /// The login the attacker tried.
    pub target: String,
    /// HTTP statuses of the attacker's attempts.
    pub attempt_statuses: Vec<u16>,
    /// Whether the target was locked out after the attempts.
    pub locked_out: bool,
    /// Alerts the attempts raised (rule ids).
    pub alerts: Vec<String>,
    /// The deadline of the first alert (I2).
    pub escalate_by: Option<String>,
    /// Whether the security officer logged in with password and TOTP.
    pub officer_login: bool,
    /// Whether the officer's unlock went through the API.
    pub unlocked: bool,
    /// Audit entries verified afterwards.
    pub audit_entries: u64,
    /// Whether the chain and its checkpoints were intact.
    pub audit_intact: bool,
}

impl DrillReport {
    /// The one-line summary of `kiban demo` (Japanese first).
    pub fn summary(&self) -> String {
        format!(
            "セキュリティ security: {} accounts in {} roles, 2FA {}/{}; brute force on {} from {ATTACKER}: {} attempts {}, alert {} (escalate by {}); security officer logged in with TOTP and {}; audit chain {} ({} entries)",
            self.accounts,
            self.roles,
            self.totp_enrolled,
            self.totp_required,
            self.target,
            self.attempt_statuses.len(),
            if self.locked_out { "→ locked out" } else { "NOT locked out" },
            if self.alerts.is_empty() { "none".to_owned() } else { self.alerts.join(", ") },
            self.escalate_by.as_deref().unwrap_or("-"),
            if self.unlocked { "unlocked it" } else { "could NOT unlock it" },
            if self.audit_intact { "verified" } else { "BROKEN" },
            self.audit_entries,
        )
    }

    /// Whether everything the drill expects held.
    pub fn passed(&self) -> bool {
        self.totp_enrolled == self.totp_required
            && self.locked_out
            && self.alerts.iter().any(|r| r == "repeated-login-failures")
            && self.officer_login
            && self.unlocked
            && self.audit_intact
    }
}

async fn send(
    router: &axum::Router,
    from: &str,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Result<axum::response::Response, String> {
    let mut b = Request::builder().method(method).uri(uri).header(header::HOST, "127.0.0.1");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::from(body)).map_err(|e| e.to_string())?;
    let addr: SocketAddr = format!("{from}:50000").parse().map_err(|e| format!("{e}"))?;
    req.extensions_mut().insert(ConnectInfo(addr));
    router.clone().oneshot(req).await.map_err(|e| e.to_string())
}

fn login_form(login: &str, password: &str, totp: &str) -> String {
    form_urlencoded(&[("login", login), ("password", password), ("totp", totp)])
}

fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A time whose TOTP step the server will still accept for `id`: a code is accepted once (RFC 6238
/// §5.2), so a second drill within 30 seconds uses the next step, waiting when even that was used.
async fn fresh_totp_time(st: &AppState, id: &str) -> Result<u64, String> {
    let last = st.reg.credentials(id).await.map_err(|e| e.to_string())?.totp_last_step.unwrap_or(-1);
    let now = Utc::now().timestamp().max(0) as u64;
    let step = (now / 30) as i64;
    if last < step {
        return Ok(now);
    }
    // The server accepts one step ahead of its clock; beyond that, wait until the clock catches up.
    let want = (last + 1) as u64 * 30;
    if want > now + 30 {
        tokio::time::sleep(std::time::Duration::from_secs(want - now - 30 + 1)).await;
    }
    Ok(want)
}

/// Runs the drill on `st`: makes the demo accounts when missing, attacks the auditor's login from
/// [`ATTACKER`], has the security officer log in and unlock it, then verifies the audit log.
pub async fn run(st: &AppState) -> Result<DrillReport, String> {
    let accounts = demo::demo_accounts(&st.reg, st.sealer.as_ref()).await?;
    let router = crate::router(st.clone());
    let find = |role| accounts.iter().find(|a| a.role == role).ok_or_else(|| format!("no demo {role} account"));
    let target = find(AccountRole::Auditor)?;
    let officer = find(AccountRole::SecurityOfficer)?;
    let alerts_before = st.audit.alerts().len();

    let form = [(header::CONTENT_TYPE.as_str(), "application/x-www-form-urlencoded")];
    let mut attempt_statuses = Vec::new();
    for i in 0..ATTEMPTS {
        let r = send(
            &router,
            ATTACKER,
            "POST",
            "/login",
            &form,
            login_form(&target.login, &format!("Guess-{i}!"), "000000"),
        )
        .await?;
        attempt_statuses.push(r.status().as_u16());
    }
    let now = Utc::now();
    let locked_out = st.reg.account(&target.account_id).await.map_err(|e| e.to_string())?.locked_out_at(now);

    let code = auth::totp_code(&officer.totp_secret, fresh_totp_time(st, &officer.account_id).await?);
    let r = send(&router, OFFICER, "POST", "/login", &form, login_form(&officer.login, DEMO_PASSWORD, &code)).await?;
    let officer_login = r.status() == StatusCode::SEE_OTHER;
    let cookie = r
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .unwrap_or_default();
    let unlocked = if officer_login {
        let body =
            serde_json::json!({"note": format!("訓練: {ATTACKER} からの総当たりを確認、アカウント所有者に連絡済み")});
        let uri = format!("/api/accounts/{}/unlock", target.account_id);
        let headers = [("cookie", cookie.as_str()), ("content-type", "application/json")];
        let r = send(&router, OFFICER, "POST", &uri, &headers, body.to_string()).await?;
        r.status() == StatusCode::OK
            && !st.reg.account(&target.account_id).await.map_err(|e| e.to_string())?.locked_out_at(Utc::now())
    } else {
        false
    };

    let raised: Vec<Alert> = st.audit.alerts().into_iter().skip(alerts_before).collect();
    let listed = st.reg.accounts().await.map_err(|e| e.to_string())?;
    let active: Vec<_> = listed.iter().filter(|a| a.status == AccountStatus::Active).collect();
    let mut roles: Vec<AccountRole> = active.iter().map(|a| a.role).collect();
    roles.sort_by_key(|r| r.as_str());
    roles.dedup();
    let required: Vec<_> = active.iter().filter(|a| a.role.requires_totp()).collect();
    let report = st.audit.verify(&Actor::system(), "kiban demo").map_err(|e| e.to_string())?;
    Ok(DrillReport {
        accounts: active.len(),
        roles: roles.len(),
        totp_required: required.len(),
        totp_enrolled: required.iter().filter(|a| a.totp_enrolled).count(),
        target: target.login.clone(),
        attempt_statuses,
        locked_out,
        alerts: raised.iter().map(|a| a.rule.clone()).collect(),
        escalate_by: raised.first().map(|a| {
            let jst = chrono::FixedOffset::east_opt(9 * 3600).expect("JST is a valid offset");
            a.escalate_by.with_timezone(&jst).format("%Y-%m-%d %H:%M JST").to_string()
        }),
        officer_login,
        unlocked,
        audit_entries: report.entries,
        audit_intact: report.is_intact(),
    })
}
