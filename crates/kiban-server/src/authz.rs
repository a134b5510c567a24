//! The one authorization layer: the route × role table of `authz.toml`, deny by default.

use std::collections::{BTreeMap, BTreeSet};

use kiban_registry::accounts::AccountRole;

/// The table shipped with kiban (crates/kiban-server/authz.toml).
pub const AUTHZ_TOML: &str = include_str!("../authz.toml");

/// Who may call a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// Anyone, without a session (login pages only).
    Public,
    /// These roles, with a session.
    Roles(BTreeSet<AccountRole>),
}

/// The parsed table: "METHOD /path" → who is allowed.
#[derive(Debug, Clone)]
pub struct Authz {
    table: BTreeMap<String, Allow>,
}

/// A table that does not parse or names an unknown role.
#[derive(Debug, thiserror::Error)]
#[error("authz table: {0}")]
pub struct AuthzError(String);

impl Authz {
    /// The built-in table.
    pub fn builtin() -> Authz {
        Authz::from_toml(AUTHZ_TOML).expect("the shipped authz.toml parses (tested)")
    }

    /// Parses a table.
    pub fn from_toml(text: &str) -> Result<Authz, AuthzError> {
        #[derive(serde::Deserialize)]
        struct File {
            routes: BTreeMap<String, Vec<String>>,
        }
        let f: File = toml::from_str(text).map_err(|e| AuthzError(e.to_string()))?;
        let mut table = BTreeMap::new();
        for (route, roles) in f.routes {
            let allow = if roles == ["public"] {
                Allow::Public
            } else {
                let mut set = BTreeSet::new();
                for r in &roles {
                    set.insert(
                        AccountRole::parse(r).ok_or_else(|| AuthzError(format!("{route}: unknown role {r:?}")))?,
                    );
                }
                Allow::Roles(set)
            };
            table.insert(route, allow);
        }
        Ok(Authz { table })
    }

    /// Who may call `method path` (the route pattern); `None` when the table does not name it (denied).
    pub fn rule(&self, method: &str, path: &str) -> Option<&Allow> {
        self.table.get(&format!("{method} {path}"))
    }

    /// Whether the route is public.
    pub fn is_public(&self, method: &str, path: &str) -> bool {
        matches!(self.rule(method, path), Some(Allow::Public))
    }

    /// Whether `role` may call the route; false for routes the table does not name.
    pub fn allows(&self, method: &str, path: &str, role: AccountRole) -> bool {
        match self.rule(method, path) {
            Some(Allow::Public) => true,
            Some(Allow::Roles(set)) => set.contains(&role),
            None => false,
        }
    }

    /// Every "METHOD /path" the table names.
    pub fn routes(&self) -> impl Iterator<Item = &str> {
        self.table.keys().map(String::as_str)
    }
}
