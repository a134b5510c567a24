//! Which providers a provider clerk acts for (X1: least privilege). A clerk of one hospital must not
//! read or write another's notices, opt-outs, patients or batches; grants and revocations are
//! append-only rows, the latest per (account, provider) in force.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::accounts::AccountRole;
use crate::{Registry, RegistryError};

/// Why a scope change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// The account is not a provider clerk (other roles are not scoped by provider).
    #[error("account {account_id} has role {role}; only provider_clerk accounts act for a provider")]
    NotAClerk {
        /// The account.
        account_id: String,
        /// Its role.
        role: AccountRole,
    },
    /// No such provider.
    #[error("provider {0} is not registered")]
    UnknownProvider(String),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl Registry {
    /// Lets the clerk `account_id` act for `provider_id` (`granted`), or stops it (`!granted`).
    pub async fn set_provider_scope(
        &self,
        account_id: &str,
        provider_id: &str,
        granted: bool,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ScopeError> {
        let acct = self.account(account_id).await?;
        if acct.role != AccountRole::ProviderClerk {
            return Err(ScopeError::NotAClerk { account_id: account_id.to_owned(), role: acct.role });
        }
        let known = sqlx::query("SELECT 1 FROM providers WHERE provider_id = $1")
            .bind(provider_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(RegistryError::from)?;
        if known.is_none() {
            return Err(ScopeError::UnknownProvider(provider_id.to_owned()));
        }
        sqlx::query(
            "INSERT INTO account_provider_scopes (scope_id, account_id, provider_id, granted, recorded_by, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(crate::accounts::new_id("scope"))
        .bind(account_id)
        .bind(provider_id)
        .bind(i64::from(granted))
        .bind(by)
        .bind(now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .execute(&self.pool)
        .await
        .map_err(RegistryError::from)?;
        Ok(())
    }

    /// The providers `account_id` acts for now, sorted.
    pub async fn provider_scope(&self, account_id: &str) -> Result<Vec<String>, RegistryError> {
        let rows = sqlx::query(
            "SELECT provider_id, granted, recorded_at, scope_id FROM account_provider_scopes WHERE account_id = $1 \
             ORDER BY recorded_at, scope_id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        let mut latest = std::collections::BTreeMap::new();
        for r in rows {
            let p: String = r.try_get("provider_id")?;
            let g: i64 = r.try_get("granted")?;
            latest.insert(p, g == 1);
        }
        Ok(latest.into_iter().filter(|(_, g)| *g).map(|(p, _)| p).collect())
    }
}
