//! Accounts, credentials, sessions and handler vetting (X2, X5, X6).
//!
//! The registry stores what authentication needs and nothing it must not: an Argon2id PHC string
//! (hashing is the server's job), the TOTP secret sealed by the key store, SHA-256 hashes of setup
//! tokens, session tokens and recovery codes. Every change of a credential, a reset, a lock and a
//! role change is an append-only row of `account_events`; the `accounts` row only holds the
//! current state. Times are passed in by the caller (the server's clock) so lockout and expiry are
//! testable.
//!
//! Access is granted in one place: [`Registry::issue_setup_token`] and [`Registry::set_role`]
//! refuse a role that handles medical information unless the person passed the disqualification
//! checks and holds current training ([`Registry::clearance`], X2).

use std::fmt;

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use rand::RngExt;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Registry, RegistryError};

/// Failed logins allowed before the first lockout.
pub const FREE_FAILURES: i64 = 3;
/// The first lockout; each further failure doubles it.
pub const FIRST_LOCKOUT_SECS: i64 = 30;
/// The longest lockout.
pub const MAX_LOCKOUT_SECS: i64 = 24 * 3600;
/// Years since the end of a sentence before a person may handle data again (the stricter 5 of seed 004).
pub const CONVICTION_YEARS: i32 = 5;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// A new random id with a prefix.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::rng().random::<u64>())
}

/// The roles of kiban's users; every permission is granted per role by the server's table.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountRole {
    /// A provider's clerk (hospital, insurer).
    ProviderClerk,
    /// An intake operator of the creator.
    IntakeOperator,
    /// A processing engineer of the creator.
    ProcessingEngineer,
    /// A member of the review committee.
    CommitteeMember,
    /// The secretariat.
    Secretariat,
    /// The security officer.
    SecurityOfficer,
    /// An auditor.
    Auditor,
    /// A user of released data (利用者) who handles it.
    Handler,
    /// The administrator of accounts (cannot read or set a password).
    Administrator,
}

impl AccountRole {
    /// Every role, in a fixed order.
    pub const ALL: [AccountRole; 9] = [
        AccountRole::ProviderClerk,
        AccountRole::IntakeOperator,
        AccountRole::ProcessingEngineer,
        AccountRole::CommitteeMember,
        AccountRole::Secretariat,
        AccountRole::SecurityOfficer,
        AccountRole::Auditor,
        AccountRole::Handler,
        AccountRole::Administrator,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountRole::ProviderClerk => "provider_clerk",
            AccountRole::IntakeOperator => "intake_operator",
            AccountRole::ProcessingEngineer => "processing_engineer",
            AccountRole::CommitteeMember => "committee_member",
            AccountRole::Secretariat => "secretariat",
            AccountRole::SecurityOfficer => "security_officer",
            AccountRole::Auditor => "auditor",
            AccountRole::Handler => "handler",
            AccountRole::Administrator => "administrator",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<AccountRole> {
        AccountRole::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the role handles medical information (then the person must be vetted and trained, X2).
    pub fn handles_medical_information(self) -> bool {
        matches!(
            self,
            AccountRole::IntakeOperator
                | AccountRole::ProcessingEngineer
                | AccountRole::Secretariat
                | AccountRole::SecurityOfficer
                | AccountRole::Handler
        )
    }

    /// Whether logging in needs a second factor. X5 asks it for every role touching medical
    /// information; kiban asks it of every role, since every role reaches some record.
    pub fn requires_totp(self) -> bool {
        true
    }
}

impl fmt::Display for AccountRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of an account.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Created or reset; waits for its owner to set a password and enrol TOTP with the setup token.
    PendingSetup,
    /// Usable.
    Active,
    /// Locked by an administrator or the security officer.
    Locked,
}

impl AccountStatus {
    fn as_str(self) -> &'static str {
        match self {
            AccountStatus::PendingSetup => "pending_setup",
            AccountStatus::Active => "active",
            AccountStatus::Locked => "locked",
        }
    }

    fn parse(s: &str) -> AccountStatus {
        match s {
            "active" => AccountStatus::Active,
            "pending_setup" => AccountStatus::PendingSetup,
            _ => AccountStatus::Locked,
        }
    }
}

/// An account as listed: no credential in it.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    /// kiban's id.
    pub account_id: String,
    /// The login name.
    pub login: String,
    /// The person's name.
    pub display_name: String,
    /// The role.
    pub role: AccountRole,
    /// The state.
    pub status: AccountStatus,
    /// When the password was last set.
    pub password_set_at: Option<String>,
    /// Whether the password has at least 13 characters (then it does not expire).
    pub password_long: bool,
    /// Whether a TOTP secret is enrolled.
    pub totp_enrolled: bool,
    /// Consecutive failed logins.
    pub failed_count: i64,
    /// Locked out until then, after failed logins.
    pub locked_until: Option<String>,
    /// The last successful login.
    pub last_login_at: Option<String>,
    /// Creation time.
    pub created_at: String,
}

impl Account {
    /// Whether the automatic lockout (failed logins) is in force at `now`.
    pub fn locked_out_at(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.as_deref().and_then(parse_ts).is_some_and(|t| t > now)
    }

    /// Whether the password has expired at `now`: two months after it was set unless long (X5).
    pub fn password_expired_at(&self, now: DateTime<Utc>) -> bool {
        if self.password_long {
            return false;
        }
        match self.password_set_at.as_deref().and_then(parse_ts) {
            Some(set) => set.checked_add_months(chrono::Months::new(2)).is_none_or(|exp| now >= exp),
            None => true,
        }
    }
}

/// The stored credentials of an account; `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Argon2id PHC string.
    pub password_hash: Option<String>,
    /// Hex of the sealed TOTP secret.
    pub totp_sealed: Option<String>,
    /// The last accepted TOTP step.
    pub totp_last_step: Option<i64>,
    /// SHA-256 (hex) of the setup token.
    pub setup_token_hash: Option<String>,
    /// When the setup token expires.
    pub setup_expires_at: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// One row of an account's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountEvent {
    /// Event id.
    pub event_id: String,
    /// The account.
    pub account_id: String,
    /// When.
    pub at: String,
    /// What happened.
    pub kind: String,
    /// Who did it (an account id, or `kiban`).
    pub by_account: String,
    /// A note (for a reset: how identity was verified); never a secret.
    pub note: String,
}

/// A login session as stored (by token hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Session {
    /// The account.
    pub account_id: String,
    /// The role at login.
    pub role: AccountRole,
    /// Where from.
    pub source: String,
    /// Login time.
    pub created_at: String,
    /// Last request.
    pub last_seen_at: String,
    /// When it ended, if it did.
    pub ended_at: Option<String>,
}

/// A disqualification check of one person (X2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vetting {
    /// The day the check was made.
    pub checked_on: NaiveDate,
    /// Under adult guardianship or curatorship.
    pub adult_guardianship: bool,
    /// Bankrupt and not restored.
    pub bankruptcy: bool,
    /// The day a sentence under the relevant laws ended, if any.
    pub conviction_on: Option<NaiveDate>,
    /// An officer of a business whose certification was revoked.
    pub revoked_officer: bool,
    /// A member of an organized crime group.
    pub organized_crime: bool,
    /// Signed the confidentiality pledge.
    pub pledge_signed: bool,
    /// How it was checked (documents seen).
    pub note: String,
}

impl Vetting {
    /// The reasons this check disqualifies the person on `today`; empty when it passes.
    pub fn disqualifications(&self, today: NaiveDate) -> Vec<String> {
        let mut v = Vec::new();
        if self.adult_guardianship {
            v.push("under adult guardianship".to_owned());
        }
        if self.bankruptcy {
            v.push("bankrupt and not restored".to_owned());
        }
        if let Some(c) = self.conviction_on {
            let clear = c.checked_add_months(chrono::Months::new(12 * CONVICTION_YEARS as u32));
            if clear.is_none_or(|d| today < d) {
                v.push(format!("sentence ended {c}, less than {CONVICTION_YEARS} years ago"));
            }
        }
        if self.revoked_officer {
            v.push("officer of a business whose certification was revoked".to_owned());
        }
        if self.organized_crime {
            v.push("member of an organized crime group".to_owned());
        }
        if !self.pledge_signed {
            v.push("confidentiality pledge not signed".to_owned());
        }
        v
    }
}

/// A training record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Training {
    /// Record id.
    pub training_id: String,
    /// The account.
    pub account_id: String,
    /// The course.
    pub course: String,
    /// Completed on.
    pub completed_on: String,
    /// Valid until.
    pub expires_on: String,
}

const ACCOUNT_COLS: &str = "account_id, login, display_name, role, status, password_set_at, password_long, \
     totp_sealed IS NOT NULL, failed_count, locked_until, last_login_at, created_at";

fn account_row(r: AnyRow) -> Result<Account, RegistryError> {
    let role: String = r.try_get(3)?;
    let status: String = r.try_get(4)?;
    let long: i64 = r.try_get(6)?;
    let totp: bool = match r.try_get::<bool, _>(7) {
        Ok(b) => b,
        Err(_) => r.try_get::<i64, _>(7)? != 0,
    };
    Ok(Account {
        account_id: r.try_get(0)?,
        login: r.try_get(1)?,
        display_name: r.try_get(2)?,
        role: AccountRole::parse(&role).ok_or_else(|| RegistryError::NotFound { kind: "role", id: role.clone() })?,
        status: AccountStatus::parse(&status),
        password_set_at: r.try_get(5)?,
        password_long: long != 0,
        totp_enrolled: totp,
        failed_count: r.try_get(8)?,
        locked_until: r.try_get(9)?,
        last_login_at: r.try_get(10)?,
        created_at: r.try_get(11)?,
    })
}

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A registry failure.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The person may not be given a role that handles medical information (X2).
    #[error("{login} cannot be given the role {role}: {}", reasons.join("; "))]
    NotCleared {
        /// The login.
        login: String,
        /// The role asked for.
        role: AccountRole,
        /// What is missing.
        reasons: Vec<String>,
    },
    /// A reset without a note of how the person's identity was verified (X5).
    #[error("a reset must record how the person's identity was verified (--verified-by)")]
    NoIdentityNote,
    /// The login name is taken or malformed.
    #[error("login {0:?} is taken or not allowed (use 3–64 characters of a-z, 0-9, . _ -)")]
    BadLogin(String),
    /// The setup token is wrong, used or expired.
    #[error("the setup token is not valid (wrong, used or expired): ask an administrator for a new one")]
    BadSetupToken,
}

/// The outcome of a failed login for the lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Consecutive failures now.
    pub failed_count: i64,
    /// Locked out until then, if locked.
    pub locked_until: Option<DateTime<Utc>>,
}

/// The lockout after `failed` consecutive failures: none for the first [`FREE_FAILURES`], then
/// How stale a session's last-seen time may get before a request writes it again.
pub const LAST_SEEN_RESOLUTION_SECS: i64 = 10;

/// [`FIRST_LOCKOUT_SECS`] doubling with each failure up to [`MAX_LOCKOUT_SECS`].
pub fn lockout_secs(failed: i64) -> i64 {
    if failed < FREE_FAILURES {
        return 0;
    }
    let doublings = (failed - FREE_FAILURES).min(30) as u32;
    FIRST_LOCKOUT_SECS.saturating_mul(1i64 << doublings).min(MAX_LOCKOUT_SECS)
}

fn valid_login(login: &str) -> bool {
    (3..=64).contains(&login.len())
        && login.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

impl Registry {
    async fn account_event(
        &self,
        account_id: &str,
        at: DateTime<Utc>,
        kind: &str,
        by: &str,
        note: &str,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO account_events (event_id, account_id, at, kind, by_account, note) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id("ev"))
        .bind(account_id)
        .bind(ts(at))
        .bind(kind)
        .bind(by)
        .bind(note)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Creates an account waiting for setup (no password, no TOTP); `by` is the creating account.
    pub async fn create_account(
        &self,
        login: &str,
        display_name: &str,
        role: AccountRole,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Account, AccessError> {
        if !valid_login(login) || self.account_by_login(login).await?.is_some() {
            return Err(AccessError::BadLogin(login.to_owned()));
        }
        let id = new_id("acct");
        sqlx::query(
            "INSERT INTO accounts (account_id, login, display_name, role, status, password_long, failed_count, \
             created_at, created_by) VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $7)",
        )
        .bind(&id)
        .bind(login)
        .bind(display_name)
        .bind(role.as_str())
        .bind(AccountStatus::PendingSetup.as_str())
        .bind(ts(now))
        .bind(by)
        .execute(&self.pool)
        .await
        .map_err(RegistryError::from)?;
        self.account_event(&id, now, "created", by, &format!("role {role}")).await?;
        Ok(self.account(&id).await?)
    }

    /// An account by id.
    pub async fn account(&self, id: &str) -> Result<Account, RegistryError> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE account_id = $1")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(account_row).transpose()?.ok_or_else(|| RegistryError::NotFound { kind: "account", id: id.to_owned() })
    }

    /// An account by login name.
    pub async fn account_by_login(&self, login: &str) -> Result<Option<Account>, RegistryError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE login = $1")))
            .bind(login)
            .fetch_optional(&self.pool)
            .await?;
        row.map(account_row).transpose()
    }

    /// All accounts by login.
    pub async fn accounts(&self) -> Result<Vec<Account>, RegistryError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY login")))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(account_row).collect()
    }

    /// The stored credentials (hashes and sealed secret) of an account.
    pub async fn credentials(&self, id: &str) -> Result<Credentials, RegistryError> {
        let r = sqlx::query(
            "SELECT password_hash, totp_sealed, totp_last_step, setup_token_hash, setup_expires_at FROM accounts \
             WHERE account_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| RegistryError::NotFound { kind: "account", id: id.to_owned() })?;
        Ok(Credentials {
            password_hash: r.try_get(0)?,
            totp_sealed: r.try_get(1)?,
            totp_last_step: r.try_get(2)?,
            setup_token_hash: r.try_get(3)?,
            setup_expires_at: r.try_get(4)?,
        })
    }

    /// The account's history, oldest first.
    pub async fn account_events(&self, id: &str) -> Result<Vec<AccountEvent>, RegistryError> {
        let rows = sqlx::query(
            "SELECT event_id, account_id, at, kind, by_account, note FROM account_events WHERE account_id = $1 \
             ORDER BY at, event_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(AccountEvent {
                    event_id: r.try_get(0)?,
                    account_id: r.try_get(1)?,
                    at: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    by_account: r.try_get(4)?,
                    note: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Whether the person may hold `role` on `today`: for roles handling medical information, the
    /// latest disqualification check passes and a training record is current (X2).
    pub async fn clearance(&self, id: &str, role: AccountRole, today: NaiveDate) -> Result<Vec<String>, RegistryError> {
        if !role.handles_medical_information() {
            return Ok(Vec::new());
        }
        let mut reasons = Vec::new();
        match self.latest_vetting(id).await? {
            None => reasons.push("no disqualification check recorded".to_owned()),
            Some(v) => reasons.extend(v.disqualifications(today)),
        }
        let current = self.trainings(id).await?.iter().any(|t| t.expires_on.as_str() >= today.to_string().as_str());
        if !current {
            reasons.push("no current training record".to_owned());
        }
        Ok(reasons)
    }

    async fn require_clearance(&self, acct: &Account, role: AccountRole, today: NaiveDate) -> Result<(), AccessError> {
        let reasons = self.clearance(&acct.account_id, role, today).await?;
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(AccessError::NotCleared { login: acct.login.clone(), role, reasons })
        }
    }

    /// Issues a one-time setup token (stored as its SHA-256) for a new account or a reset; the
    /// account's password, TOTP and recovery codes are cleared and it waits for setup. A reset needs
    /// `identity_note` (how the person's identity was verified) and is recorded. Refused for a role
    /// handling medical information unless the person is cleared (X2).
    #[allow(clippy::too_many_arguments)]
    pub async fn issue_setup_token(
        &self,
        id: &str,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        reset: bool,
        identity_note: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AccessError> {
        let acct = self.account(id).await?;
        if reset && identity_note.trim().is_empty() {
            return Err(AccessError::NoIdentityNote);
        }
        self.require_clearance(&acct, acct.role, now.date_naive()).await?;
        let mut tx = self.pool.begin().await.map_err(RegistryError::from)?;
        sqlx::query(
            "UPDATE accounts SET status = $1, password_hash = NULL, password_set_at = NULL, totp_sealed = NULL, \
             totp_last_step = NULL, setup_token_hash = $2, setup_expires_at = $3, failed_count = 0, locked_until = NULL \
             WHERE account_id = $4",
        )
        .bind(AccountStatus::PendingSetup.as_str())
        .bind(token_hash)
        .bind(ts(expires_at))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(RegistryError::from)?;
        sqlx::query("UPDATE recovery_codes SET used_at = $1 WHERE account_id = $2 AND used_at IS NULL")
            .bind(ts(now))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(RegistryError::from)?;
        tx.commit().await.map_err(RegistryError::from)?;
        let kind = if reset { "reset_issued" } else { "setup_issued" };
        self.account_event(id, now, kind, by, identity_note.trim()).await?;
        Ok(())
    }

    /// Completes setup with the one-time token: sets the password hash, the sealed TOTP secret and
    /// the recovery codes' hashes, and activates the account. The token is spent.
    #[allow(clippy::too_many_arguments)]
    pub async fn complete_setup(
        &self,
        id: &str,
        token_hash: &str,
        password_hash: &str,
        password_long: bool,
        totp_sealed: &str,
        recovery_hashes: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), AccessError> {
        let creds = self.credentials(id).await?;
        let valid = creds.setup_token_hash.as_deref() == Some(token_hash)
            && creds.setup_expires_at.as_deref().and_then(parse_ts).is_some_and(|e| e > now);
        if !valid {
            return Err(AccessError::BadSetupToken);
        }
        let acct = self.account(id).await?;
        self.require_clearance(&acct, acct.role, now.date_naive()).await?;
        let mut tx = self.pool.begin().await.map_err(RegistryError::from)?;
        let n = sqlx::query(
            "UPDATE accounts SET status = $1, password_hash = $2, password_set_at = $3, password_long = $4, \
             totp_sealed = $5, totp_last_step = NULL, setup_token_hash = NULL, setup_expires_at = NULL \
             WHERE account_id = $6 AND setup_token_hash = $7",
        )
        .bind(AccountStatus::Active.as_str())
        .bind(password_hash)
        .bind(ts(now))
        .bind(password_long as i64)
        .bind(totp_sealed)
        .bind(id)
        .bind(token_hash)
        .execute(&mut *tx)
        .await
        .map_err(RegistryError::from)?
        .rows_affected();
        if n != 1 {
            return Err(AccessError::BadSetupToken);
        }
        for h in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (code_hash, account_id, issued_at) VALUES ($1, $2, $3)")
                .bind(h)
                .bind(id)
                .bind(ts(now))
                .execute(&mut *tx)
                .await
                .map_err(RegistryError::from)?;
        }
        tx.commit().await.map_err(RegistryError::from)?;
        self.account_event(id, now, "password_set", id, "set by the account holder with a setup token").await?;
        self.account_event(id, now, "totp_enrolled", id, &format!("{} recovery codes issued", recovery_hashes.len()))
            .await?;
        Ok(())
    }

    /// Changes the password hash (the holder, after proving the old password and TOTP).
    pub async fn change_password(
        &self,
        id: &str,
        password_hash: &str,
        password_long: bool,
        now: DateTime<Utc>,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "UPDATE accounts SET password_hash = $1, password_set_at = $2, password_long = $3 WHERE account_id = $4",
        )
        .bind(password_hash)
        .bind(ts(now))
        .bind(password_long as i64)
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.account_event(id, now, "password_changed", id, "changed by the account holder").await
    }

    /// Accepts a TOTP step once: true when `step` is later than every step accepted before (RFC 6238 §5.2).
    pub async fn accept_totp_step(&self, id: &str, step: i64) -> Result<bool, RegistryError> {
        let n = sqlx::query(
            "UPDATE accounts SET totp_last_step = $1 WHERE account_id = $2 AND (totp_last_step IS NULL OR totp_last_step < $3)",
        )
        .bind(step)
        .bind(id)
        .bind(step)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Spends a recovery code (by hash): true when it was issued to the account and unused.
    pub async fn use_recovery_code(
        &self,
        id: &str,
        code_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RegistryError> {
        let n = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE account_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(ts(now))
        .bind(id)
        .bind(code_hash)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 1 {
            self.account_event(id, now, "recovery_code_used", id, "").await?;
        }
        Ok(n == 1)
    }

    /// Unused recovery codes of an account.
    pub async fn recovery_codes_left(&self, id: &str) -> Result<i64, RegistryError> {
        let r = sqlx::query("SELECT COUNT(*) FROM recovery_codes WHERE account_id = $1 AND used_at IS NULL")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get(0)?)
    }

    /// Records a failed login and applies the exponential lockout.
    pub async fn record_login_failure(
        &self,
        id: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<Lockout, RegistryError> {
        let acct = self.account(id).await?;
        let failed = acct.failed_count + 1;
        let secs = lockout_secs(failed);
        let until = (secs > 0).then(|| now + Duration::seconds(secs));
        sqlx::query("UPDATE accounts SET failed_count = $1, locked_until = $2 WHERE account_id = $3")
            .bind(failed)
            .bind(until.map(ts))
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.account_event(id, now, "login_failed", "kiban", &format!("from {source}")).await?;
        if let Some(u) = until {
            self.account_event(id, now, "lockout", "kiban", &format!("until {}", ts(u))).await?;
        }
        Ok(Lockout { failed_count: failed, locked_until: until })
    }

    /// Records a successful login: clears the failure count.
    pub async fn record_login_success(&self, id: &str, now: DateTime<Utc>) -> Result<(), RegistryError> {
        sqlx::query(
            "UPDATE accounts SET failed_count = 0, locked_until = NULL, last_login_at = $1 WHERE account_id = $2",
        )
        .bind(ts(now))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Locks or unlocks an account by hand (administrator or security officer), with a reason.
    pub async fn set_locked(
        &self,
        id: &str,
        locked: bool,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Account, AccessError> {
        let acct = self.account(id).await?;
        let status = match (locked, acct.status) {
            (true, _) => AccountStatus::Locked,
            (false, _) if acct.totp_enrolled => AccountStatus::Active,
            (false, _) => AccountStatus::PendingSetup,
        };
        sqlx::query("UPDATE accounts SET status = $1, failed_count = 0, locked_until = NULL WHERE account_id = $2")
            .bind(status.as_str())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(RegistryError::from)?;
        self.account_event(id, now, if locked { "locked" } else { "unlocked" }, by, note).await?;
        Ok(self.account(id).await?)
    }

    /// Changes an account's role; refused for a role handling medical information unless the person
    /// is cleared (X2). Open sessions end so the new role applies at the next login.
    pub async fn set_role(
        &self,
        id: &str,
        role: AccountRole,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Account, AccessError> {
        let acct = self.account(id).await?;
        self.require_clearance(&acct, role, now.date_naive()).await?;
        sqlx::query("UPDATE accounts SET role = $1 WHERE account_id = $2")
            .bind(role.as_str())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(RegistryError::from)?;
        self.end_sessions_of(id, "role changed", now).await?;
        self.account_event(id, now, "role_changed", by, &format!("{} -> {role}", acct.role)).await?;
        Ok(self.account(id).await?)
    }

    /// Records a disqualification check (append-only).
    pub async fn record_vetting(
        &self,
        id: &str,
        v: &Vetting,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<String, RegistryError> {
        self.account(id).await?;
        let vid = new_id("vet");
        sqlx::query(
            "INSERT INTO handler_vetting (vetting_id, account_id, checked_on, checked_by, adult_guardianship, bankruptcy, \
             conviction_on, revoked_officer, organized_crime, pledge_signed, note, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&vid)
        .bind(id)
        .bind(v.checked_on.to_string())
        .bind(by)
        .bind(v.adult_guardianship as i64)
        .bind(v.bankruptcy as i64)
        .bind(v.conviction_on.map(|d| d.to_string()))
        .bind(v.revoked_officer as i64)
        .bind(v.organized_crime as i64)
        .bind(v.pledge_signed as i64)
        .bind(&v.note)
        // Microseconds: a re-check in the same second must still be the latest (latest_vetting orders by it).
        .bind(now.to_rfc3339_opts(SecondsFormat::Micros, true))
        .execute(&self.pool)
        .await?;
        Ok(vid)
    }

    /// The latest disqualification check of a person.
    pub async fn latest_vetting(&self, id: &str) -> Result<Option<Vetting>, RegistryError> {
        let r = sqlx::query(
            "SELECT checked_on, adult_guardianship, bankruptcy, conviction_on, revoked_officer, organized_crime, \
             pledge_signed, note FROM handler_vetting WHERE account_id = $1 ORDER BY checked_on DESC, recorded_at DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = r else { return Ok(None) };
        let date = |s: String| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok();
        let b = |i: usize| -> Result<bool, RegistryError> { Ok(r.try_get::<i64, _>(i)? != 0) };
        Ok(Some(Vetting {
            checked_on: date(r.try_get(0)?).unwrap_or(NaiveDate::MIN),
            adult_guardianship: b(1)?,
            bankruptcy: b(2)?,
            conviction_on: r.try_get::<Option<String>, _>(3)?.and_then(date),
            revoked_officer: b(4)?,
            organized_crime: b(5)?,
            pledge_signed: b(6)?,
            note: r.try_get(7)?,
        }))
    }

    /// Records a completed training (append-only).
    pub async fn record_training(
        &self,
        id: &str,
        course: &str,
        completed_on: NaiveDate,
        expires_on: NaiveDate,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<String, RegistryError> {
        self.account(id).await?;
        let tid = new_id("trn");
        sqlx::query(
            "INSERT INTO training_records (training_id, account_id, course, completed_on, expires_on, recorded_by, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&tid)
        .bind(id)
        .bind(course)
        .bind(completed_on.to_string())
        .bind(expires_on.to_string())
        .bind(by)
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(tid)
    }

    /// A person's training records, newest first.
    pub async fn trainings(&self, id: &str) -> Result<Vec<Training>, RegistryError> {
        let rows = sqlx::query(
            "SELECT training_id, account_id, course, completed_on, expires_on FROM training_records WHERE account_id = $1 \
             ORDER BY completed_on DESC",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Training {
                    training_id: r.try_get(0)?,
                    account_id: r.try_get(1)?,
                    course: r.try_get(2)?,
                    completed_on: r.try_get(3)?,
                    expires_on: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Opens a session under the SHA-256 of its token.
    pub async fn create_session(
        &self,
        token_hash: &str,
        account_id: &str,
        role: AccountRole,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, account_id, role, source, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(account_id)
        .bind(role.as_str())
        .bind(source)
        .bind(ts(now))
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A session by token hash, if open and seen within `idle` of `now`; an idle one is ended. The
    /// last-seen time is written at most every [`LAST_SEEN_RESOLUTION_SECS`].
    pub async fn live_session(
        &self,
        token_hash: &str,
        idle: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, RegistryError> {
        let r = sqlx::query(
            "SELECT account_id, role, source, created_at, last_seen_at, ended_at FROM sessions WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = r else { return Ok(None) };
        let role: String = r.try_get(1)?;
        let s = Session {
            account_id: r.try_get(0)?,
            role: AccountRole::parse(&role)
                .ok_or_else(|| RegistryError::NotFound { kind: "role", id: role.clone() })?,
            source: r.try_get(2)?,
            created_at: r.try_get(3)?,
            last_seen_at: r.try_get(4)?,
            ended_at: r.try_get(5)?,
        };
        if s.ended_at.is_some() {
            return Ok(None);
        }
        if parse_ts(&s.last_seen_at).is_none_or(|t| now - t > idle) {
            self.end_session(token_hash, "idle timeout", now).await?;
            return Ok(None);
        }
        // A write per request would serialize every page view on the database's one writer; the
        // idle clock only needs seconds of resolution against a timeout of minutes.
        if parse_ts(&s.last_seen_at).is_none_or(|t| now - t >= Duration::seconds(LAST_SEEN_RESOLUTION_SECS)) {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(ts(now))
                .bind(token_hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(s))
    }

    /// Ends a session; returns it when it was open.
    pub async fn end_session(
        &self,
        token_hash: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, RegistryError> {
        let n = sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE token_hash = $3 AND ended_at IS NULL",
        )
        .bind(ts(now))
        .bind(reason)
        .bind(token_hash)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(None);
        }
        let r = sqlx::query(
            "SELECT account_id, role, source, created_at, last_seen_at, ended_at FROM sessions WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_one(&self.pool)
        .await?;
        let role: String = r.try_get(1)?;
        Ok(Some(Session {
            account_id: r.try_get(0)?,
            role: AccountRole::parse(&role).unwrap_or(AccountRole::Handler),
            source: r.try_get(2)?,
            created_at: r.try_get(3)?,
            last_seen_at: r.try_get(4)?,
            ended_at: r.try_get(5)?,
        }))
    }

    /// Ends every open session of an account.
    pub async fn end_sessions_of(
        &self,
        account_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, RegistryError> {
        Ok(sqlx::query("UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE account_id = $3 AND ended_at IS NULL")
            .bind(ts(now))
            .bind(reason)
            .bind(account_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Records the acknowledgement of a monitoring alert (once).
    pub async fn ack_alert(
        &self,
        alert_id: u64,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RegistryError> {
        if self.alert_acks().await?.iter().any(|(id, _, _)| *id == alert_id) {
            return Ok(false);
        }
        sqlx::query("INSERT INTO alert_acks (alert_id, acked_by, acked_at, note) VALUES ($1, $2, $3, $4)")
            .bind(alert_id as i64)
            .bind(by)
            .bind(ts(now))
            .bind(note)
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    /// Acknowledged alerts: (alert id, by, at).
    pub async fn alert_acks(&self) -> Result<Vec<(u64, String, String)>, RegistryError> {
        let rows = sqlx::query("SELECT alert_id, acked_by, acked_at FROM alert_acks ORDER BY alert_id")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|r| Ok((r.try_get::<i64, _>(0)? as u64, r.try_get(1)?, r.try_get(2)?))).collect()
    }
}
