//! `kiban serve --demo`: one demo account per role with a known password and TOTP secret, and a
//! little registry data for every page (a provider with a published filing, a committee, an
//! application under review, an incident and a complaint). Demo only: the secrets are public.

use chrono::{Duration, NaiveDate, Utc};
use kiban_registry::Registry;
use kiban_registry::accounts::{AccountRole, Vetting};
use kiban_registry::records::{FilingInput, FilingKind, today_jst};
use kiban_registry::review::application::sample_application;
use kiban_registry::review::committee::sample_committee;
use kiban_registry::review::workflow::Phase;

use crate::auth::{self, Sealer};

/// The demo accounts' password (long enough not to expire).
pub const DEMO_PASSWORD: &str = "Kiban-Demo-2026!";

/// One demo account as printed at start.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    /// Role.
    pub role: AccountRole,
    /// Login.
    pub login: String,
    /// Account id.
    pub account_id: String,
    /// The TOTP secret in base32 (for an authenticator app).
    pub totp_base32: String,
    /// The raw TOTP secret (for tests and `kiban` to print the current code).
    pub totp_secret: Vec<u8>,
}

/// The demo login of a role: `demo-<role>` with dashes.
pub fn demo_login(role: AccountRole) -> String {
    format!("demo-{}", role.as_str().replace('_', "-"))
}

/// The demo TOTP secret of a role: fixed, so the printed secret stays valid across restarts.
pub fn demo_secret(role: AccountRole) -> Vec<u8> {
    let h = auth::sha256_hex(&format!("kiban-demo-totp/v1/{}", role.as_str()));
    hex::decode(&h[..40]).expect("hex")
}

fn vetting(today: NaiveDate) -> Vetting {
    Vetting {
        checked_on: today,
        adult_guardianship: false,
        bankruptcy: false,
        conviction_on: None,
        revoked_officer: false,
        organized_crime: false,
        pledge_signed: true,
        note: "demo".into(),
    }
}

/// Creates (or finds) the demo accounts: cleared (vetting and a year's training), password
/// [`DEMO_PASSWORD`], TOTP secret [`demo_secret`]. Idempotent.
pub async fn demo_accounts(reg: &Registry, sealer: &dyn Sealer) -> Result<Vec<DemoAccount>, String> {
    let now = Utc::now();
    let today = now.date_naive();
    let mut out = Vec::new();
    for role in AccountRole::ALL {
        let login = demo_login(role);
        let secret = demo_secret(role);
        let acct = match reg.account_by_login(&login).await.map_err(|e| e.to_string())? {
            Some(a) if a.totp_enrolled => a,
            found => {
                let a = match found {
                    Some(a) => a,
                    None => reg
                        .create_account(&login, &format!("デモ {}", login), role, "demo", now)
                        .await
                        .map_err(|e| e.to_string())?,
                };
                let id = a.account_id.clone();
                reg.record_vetting(&id, &vetting(today), "demo", now).await.map_err(|e| e.to_string())?;
                reg.record_training(
                    &id,
                    "個人情報保護・安全管理研修（デモ）",
                    today,
                    today + Duration::days(365),
                    "demo",
                    now,
                )
                .await
                .map_err(|e| e.to_string())?;
                let token = auth::issue_setup(reg, &id, false, "", "demo", now).await.map_err(|e| e.to_string())?;
                let sealed = hex::encode(sealer.seal(&auth::totp_aad(&id), &secret));
                let phc = auth::hash_password(DEMO_PASSWORD);
                reg.complete_setup(&id, &auth::sha256_hex(&token), &phc, true, &sealed, &[], now)
                    .await
                    .map_err(|e| e.to_string())?;
                a
            }
        };
        out.push(DemoAccount {
            role,
            login,
            account_id: acct.account_id,
            totp_base32: auth::base32(&secret),
            totp_secret: secret,
        });
    }
    Ok(out)
}

/// The demo provider id.
pub const DEMO_PROVIDER: &str = "1310000001";

/// Adds what the pages need when it is missing: a provider with a published filing, the committee,
/// an application under review, an incident and a complaint. Returns the application under review.
pub async fn demo_records(reg: &Registry, by: &str) -> Result<String, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let now = Utc::now();
    let today = today_jst();
    if reg.provider(DEMO_PROVIDER).await.map_err(|x| e(&x))?.is_none() {
        reg.register_provider(DEMO_PROVIDER, "デモ総合病院", 13).await.map_err(|x| e(&x))?;
        let f = reg
            .file_provider(&FilingInput {
                provider_id: DEMO_PROVIDER.into(),
                kind: FilingKind::Filing,
                filed_on: today - Duration::days(90),
                items: Default::default(),
                update_method: "月次".into(),
                planned_start: today - Duration::days(45),
                waiting_days: kiban_registry::records::DEFAULT_WAITING_DAYS,
                transmission_method: "専用回線（TLS）".into(),
                security_checked_on: Some(today - Duration::days(90)),
                security_note: String::new(),
                acquisition_record: "診療の過程で取得".into(),
            })
            .await
            .map_err(|x| e(&x))?;
        reg.publish_filing(&f.filing_id, today - Duration::days(80), today - Duration::days(80), "ウェブサイト")
            .await
            .map_err(|x| e(&x))?;
    }
    let roster = reg.committee().await.map_err(|x| e(&x))?;
    for m in sample_committee(6) {
        if !roster.iter().any(|r| r.member_id == m.member_id) {
            reg.add_committee_member(&m).await.map_err(|x| e(&x))?;
        }
    }
    let apps = reg.applications().await.map_err(|x| e(&x))?;
    let open = match apps.iter().find(|a| a.phase == Phase::UnderReview) {
        Some(a) => a.application_id.clone(),
        None => {
            let mut app = sample_application();
            app.contact.name = format!("デモ 申出者{}", apps.len());
            let (id, _) = reg.submit_application(&app, today).await.map_err(|x| e(&x))?;
            reg.open_review(&id, today).await.map_err(|x| e(&x))?;
            id
        }
    };
    if !apps.iter().any(|a| a.phase == Phase::Approved) {
        demo_released(reg).await?;
    }
    if reg.incidents().await.map_err(|x| e(&x))?.is_empty() {
        reg.record_incident(now, by, "不正アクセスの試み", "デモ: 夜間のログイン失敗の連続を検知", "medium", now)
            .await
            .map_err(|x| e(&x))?;
    }
    if reg.complaints().await.map_err(|x| e(&x))?.is_empty() {
        reg.record_complaint(
            today,
            "デモ: 通知文がわかりにくいとの意見",
            "用語が専門的",
            "平易な表現に改訂",
            None,
            by,
            now,
        )
        .await
        .map_err(|x| e(&x))?;
    }
    Ok(open)
}

/// An application taken through review, agreement, fee, one release and a publication, so the
/// application page shows the agreement, fees and release, and the supervision calendar has a
/// usage report due (D7) and the yearly audit (R5).
async fn demo_released(reg: &Registry) -> Result<String, String> {
    use kiban_registry::review::agreement::sample_agreement_for;
    use kiban_registry::review::workflow::{Command, Decision, Medium, ReleaseSpec, VoteKind};
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
    let mut app = sample_application();
    app.contact.name = "デモ 承認済み申出者".into();
    let (id, _) = reg.submit_application(&app, day(2026, 6, 1)).await.map_err(|x| e(&x))?;
    reg.open_review(&id, day(2026, 6, 10)).await.map_err(|x| e(&x))?;
    let committee = reg.application_state(&id).await.map_err(|x| e(&x))?.committee;
    for m in committee {
        let vote = Command::Vote { member_id: m.member_id, vote: VoteKind::Approve, reason: "デモ: 妥当".into() };
        reg.execute_review(&id, &vote).await.map_err(|x| e(&x))?;
    }
    let decision = Decision::Approve {
        expected_provision: "2026年7月".into(),
        conditions: vec![],
        guidelines: vec![],
        remarks: String::new(),
        processing_policy_sha256: None,
    };
    let app = reg.application_state(&id).await.map_err(|x| e(&x))?.application.ok_or("no application")?;
    let item = app.extraction.items.first().map(|i| i.item.clone()).unwrap_or_default();
    let place = app.places.first().map(|p| p.place_id.clone()).unwrap_or_default();
    for cmd in [
        Command::Decide { decision, on: day(2026, 6, 10) },
        Command::ConcludeAgreement { agreement: Box::new(sample_agreement_for(&app)) },
        Command::EstimateFee { hourly_rate_yen: 8_000, minutes: 90 },
        Command::FinalFee { hourly_rate_yen: 8_000, minutes: 120 },
        Command::RecordPayment { amount_yen: 16_000, on: day(2026, 6, 25) },
        Command::Release {
            spec: ReleaseSpec {
                release_id: "demo-release-1".into(),
                on: day(2026, 7, 1),
                manifest_sha256: "0".repeat(64),
                items: vec![item],
                media: vec![Medium { medium_id: "demo-hdd-1".into(), place_id: place }],
                policy_sha256: None,
            },
        },
        Command::AcknowledgeReceipt { release_id: "demo-release-1".into(), on: day(2026, 7, 3) },
        Command::RecordPublication { on: day(2026, 8, 1), citation: "デモ: 学会発表".into() },
    ] {
        reg.execute_review(&id, &cmd).await.map_err(|x| e(&x))?;
    }
    Ok(id)
}
