//! Authentication (X5): password rules, Argon2id hashing, TOTP (RFC 6238), setup tokens, recovery
//! codes and session tokens. Nothing here logs or returns a secret inside an error.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Duration, Utc};
use kiban_registry::Registry;
use kiban_registry::accounts::AccessError;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Shortest password accepted (X5).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Passwords at least this long do not expire (X5).
pub const LONG_PASSWORD_CHARS: usize = 13;
/// How long a setup token is valid.
pub const SETUP_TOKEN_HOURS: i64 = 72;
/// Recovery codes issued at setup.
pub const RECOVERY_CODES: usize = 10;

/// Seals and opens small secrets (the TOTP secret) with the key store; supplied by the binary.
pub trait Sealer: Send + Sync {
    /// Seals `plaintext` bound to `aad`.
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8>;
    /// Opens what [`Sealer::seal`] made; `None` when it was altered or sealed under another key.
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>>;
}

/// Why a password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRule {
    /// Too short.
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    /// Lacks a letter, a digit or a symbol.
    #[error("a password must mix letters, digits and symbols")]
    NotMixed,
}

/// Checks the password rules (X5) and returns whether the password is long enough not to expire.
pub fn check_password_rules(pw: &str) -> Result<bool, PasswordRule> {
    let n = pw.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(PasswordRule::TooShort);
    }
    let letter = pw.chars().any(|c| c.is_alphabetic());
    let digit = pw.chars().any(|c| c.is_numeric());
    let symbol = pw.chars().any(|c| !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control());
    if !(letter && digit && symbol) {
        return Err(PasswordRule::NotMixed);
    }
    Ok(n >= LONG_PASSWORD_CHARS)
}

fn argon2() -> Argon2<'static> {
    // OWASP's Argon2id minimum: 19 MiB, 2 iterations, 1 lane.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(19 * 1024, 2, 1, None).expect("valid params"))
}

/// Hashes a password with Argon2id and a random salt (PHC string).
pub fn hash_password(pw: &str) -> String {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16-byte salt encodes");
    argon2().hash_password(pw.as_bytes(), &salt).expect("argon2 hashes any input").to_string()
}

/// Whether `pw` matches the PHC string (false for a malformed hash).
pub fn verify_password(pw: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2().verify_password(pw.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the login is unknown, so both paths take the same time.
pub fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("kiban-dummy-password-1!"))
}

/// SHA-256 in hex: how tokens and recovery codes are stored.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A random token of 32 bytes in hex (sessions, setup).
pub fn new_token() -> Zeroizing<String> {
    let mut b = Zeroizing::new([0u8; 32]);
    rand::fill(&mut *b);
    Zeroizing::new(hex::encode(*b))
}

fn totp(secret: &[u8]) -> Option<totp_rs::Totp> {
    totp_rs::Builder::new().with_secret(totp_rs::Secret::new(secret.to_vec().into_boxed_slice())).build().ok()
}

/// The current 6-digit code of a secret at `unix` seconds (for tests and the enrolment check).
pub fn totp_code(secret: &[u8], unix: u64) -> String {
    totp(secret).map(|t| t.generate(unix).to_string()).unwrap_or_default()
}

/// The RFC 6238 step `code` matches at `unix` (±1 step), if any. Never panics on any input.
pub fn totp_check(secret: &[u8], code: &str, unix: u64) -> Option<u64> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret)?.check(code, unix)
}

/// Base32 of a TOTP secret, for authenticator apps.
pub fn base32(secret: &[u8]) -> String {
    totp_rs::Secret::new(secret.to_vec().into_boxed_slice()).to_base32()
}

/// Decodes a base32 TOTP secret.
pub fn from_base32(text: &str) -> Option<Vec<u8>> {
    totp_rs::Secret::try_from_base32(text.trim()).ok().map(|s| s.as_bytes().to_vec())
}

/// What a completed setup hands the person once: never stored in clear, never logged.
pub struct SetupResult {
    /// The TOTP secret in base32.
    pub totp_base32: Zeroizing<String>,
    /// otpauth:// URI for authenticator apps.
    pub otpauth_uri: Zeroizing<String>,
    /// One-time recovery codes.
    pub recovery_codes: Vec<Zeroizing<String>>,
}

impl fmt::Debug for SetupResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SetupResult(<redacted>)")
    }
}

/// Why setup failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The password breaks the rules.
    #[error(transparent)]
    Password(#[from] PasswordRule),
    /// The registry refused (token, clearance).
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Unknown login.
    #[error("the setup token is not valid (wrong, used or expired): ask an administrator for a new one")]
    Unknown,
}

/// The AAD binding a sealed TOTP secret to its account.
pub fn totp_aad(account_id: &str) -> Vec<u8> {
    format!("kiban-totp/v1/{account_id}").into_bytes()
}

/// Issues a setup token for a new account or a reset; returns the token (shown once to the person).
pub async fn issue_setup(
    reg: &Registry,
    account_id: &str,
    reset: bool,
    identity_note: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Zeroizing<String>, AccessError> {
    let token = new_token();
    let expires = now + Duration::hours(SETUP_TOKEN_HOURS);
    reg.issue_setup_token(account_id, &sha256_hex(&token), expires, reset, identity_note, by, now).await?;
    Ok(token)
}

/// The person completes setup with the token: sets their password (the administrator never sees
/// it) and receives a new TOTP secret and recovery codes.
pub async fn complete_setup(
    reg: &Registry,
    sealer: &dyn Sealer,
    login: &str,
    token: &str,
    password: &str,
    now: DateTime<Utc>,
) -> Result<SetupResult, SetupError> {
    let long = check_password_rules(password)?;
    let acct = reg.account_by_login(login).await.map_err(AccessError::from)?.ok_or(SetupError::Unknown)?;
    let mut secret = Zeroizing::new([0u8; 20]);
    rand::fill(&mut *secret);
    let sealed = hex::encode(sealer.seal(&totp_aad(&acct.account_id), &*secret));
    let codes: Vec<Zeroizing<String>> = (0..RECOVERY_CODES)
        .map(|_| {
            let mut b = [0u8; 8];
            rand::fill(&mut b);
            let h = hex::encode(b);
            Zeroizing::new(format!("{}-{}", &h[..8], &h[8..]))
        })
        .collect();
    let hashes: Vec<String> = codes.iter().map(|c| sha256_hex(c)).collect();
    let phc = hash_password(password);
    reg.complete_setup(&acct.account_id, &sha256_hex(token), &phc, long, &sealed, &hashes, now).await?;
    let b32 = base32(&*secret);
    let uri = format!("otpauth://totp/kiban:{login}?secret={b32}&issuer=kiban&algorithm=SHA1&digits=6&period=30");
    Ok(SetupResult { totp_base32: Zeroizing::new(b32), otpauth_uri: Zeroizing::new(uri), recovery_codes: codes })
}
