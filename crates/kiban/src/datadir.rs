//! The data directory: where everything lives, how it is created, and how it is checked.
//!
//! ```text
//! kiban-data/
//!   kiban.toml          format version, id, creation time, optional PostgreSQL registry URL
//!   registry.sqlite     the registry (unless kiban.toml names PostgreSQL)
//!   keys/               key store: master key (0600) and wrapped domain keys
//!   clinical/           clinical store (MDAT), datasets by name
//!   datasets/           processed datasets
//!   quarantine/         rejected records with their reasons
//!   staging/            work in progress; committed by rename
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kiban_identity::keystore::KeyStore;
use kiban_registry::Registry;
use serde::{Deserialize, Serialize};

/// The config file's name.
pub const CONFIG: &str = "kiban.toml";
const SUBDIRS: [&str; 4] = ["clinical", "datasets", "quarantine", "staging"];

/// What `kiban.toml` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Data directory format version.
    pub format_version: u32,
    /// Random id of this data directory.
    pub data_dir_id: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// A PostgreSQL URL when the registry is not the embedded SQLite file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_url: Option<String>,
}

/// An existing, recognised data directory.
pub struct DataDir {
    root: PathBuf,
    config: Config,
}

impl DataDir {
    /// Creates a data directory (or completes a half-made one); refuses a directory with other content.
    pub fn init(root: &Path, registry_url: Option<String>) -> Result<DataDir> {
        if root.join(CONFIG).exists() {
            let dd = DataDir::open(root)?;
            block_on_registry(&dd)?;
            return Ok(dd);
        }
        if root.exists()
            && fs::read_dir(root).with_context(|| format!("cannot read {}", root.display()))?.next().is_some()
        {
            bail!(
                "{} is not empty and is not a kiban data directory; choose an empty or new directory",
                root.display()
            );
        }
        fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        restrict(root, 0o700)?;
        for d in SUBDIRS {
            fs::create_dir_all(root.join(d)).with_context(|| format!("cannot create {}", root.join(d).display()))?;
        }
        KeyStore::create(&root.join("keys")).context("cannot create the key store")?;
        let mut id = [0u8; 8];
        rand::fill(&mut id);
        let config = Config {
            format_version: 1,
            data_dir_id: hex::encode(id),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            registry_url,
        };
        let dd = DataDir { root: root.to_owned(), config };
        block_on_registry(&dd)?;
        let sqlite = root.join("registry.sqlite");
        if sqlite.exists() {
            restrict(&sqlite, 0o600)?;
        }
        // The config is written last: its presence means the directory is complete.
        fs::write(root.join(CONFIG), toml::to_string(&dd.config).expect("config serializes"))
            .with_context(|| format!("cannot write {}", root.join(CONFIG).display()))?;
        Ok(dd)
    }

    /// Opens an existing data directory.
    pub fn open(root: &Path) -> Result<DataDir> {
        let path = root.join(CONFIG);
        if !root.exists() {
            bail!("data directory {} does not exist; create it with `kiban init {}`", root.display(), root.display());
        }
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not a kiban data directory (no {CONFIG}); run `kiban init` there or pass --data-dir",
                root.display()
            )
        })?;
        let config: Config = toml::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))?;
        if config.format_version != 1 {
            bail!("{} has format version {}, this kiban reads version 1", path.display(), config.format_version);
        }
        Ok(DataDir { root: root.to_owned(), config })
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The registry URL: `KIBAN_REGISTRY_URL`, else the config's, else the SQLite file.
    pub fn registry_url(&self) -> String {
        std::env::var("KIBAN_REGISTRY_URL")
            .ok()
            .or_else(|| self.config.registry_url.clone())
            .unwrap_or_else(|| Registry::sqlite_url(&self.root.join("registry.sqlite")))
    }

    /// The key store directory.
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// Opens the key store with the master key from `KIBAN_MASTER_KEY` or the key file.
    pub fn key_store(&self) -> Result<KeyStore> {
        let env = std::env::var("KIBAN_MASTER_KEY").ok();
        KeyStore::open(&self.keys(), env.as_deref()).context("cannot open the key store")
    }

    /// Encrypts datasets at rest with the key store (R12): each part gets its own data key,
    /// wrapped by the master key.
    pub fn sealer(&self) -> Result<std::sync::Arc<dyn kiban_formats::Sealer>> {
        Ok(std::sync::Arc::new(StoreSealer(self.key_store()?)))
    }

    /// Where the registry's anchor files live (their digests are in the audit log).
    pub fn anchors_dir(&self) -> PathBuf {
        self.root.join("anchors")
    }

    /// The audit log directory.
    pub fn audit_dir(&self) -> PathBuf {
        self.root.join("audit")
    }

    /// Opens the registry, requiring a current schema.
    pub async fn registry(&self) -> Result<Registry> {
        Ok(Registry::open_current(&self.registry_url()).await?)
    }

    /// Every problem found, in plain words with what to do; empty when healthy.
    pub async fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for d in SUBDIRS {
            if !self.root.join(d).is_dir() {
                problems.push(format!("{d}/ is missing: run `kiban init {}` to recreate it", self.root.display()));
            }
        }
        #[cfg(unix)]
        for (path, what) in
            [(self.root.clone(), "data directory"), (self.root.join("registry.sqlite"), "registry file")]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = fs::metadata(&path)
                && m.permissions().mode() & 0o077 != 0
            {
                problems.push(format!(
                    "{what} {} is readable by other users (mode {:o}); run `chmod go-rwx {}`",
                    path.display(),
                    m.permissions().mode() & 0o777,
                    path.display()
                ));
            }
        }
        let env = std::env::var("KIBAN_MASTER_KEY").ok();
        problems.extend(KeyStore::check(&self.keys(), env.as_deref()).into_iter().map(|p| format!("key store: {p}")));
        match Registry::open(&self.registry_url()).await {
            Err(e) => problems.push(format!("registry: {e}")),
            Ok(reg) => {
                match reg.migration_status().await {
                    Err(e) => problems.push(format!("registry: {e}")),
                    Ok(s) if !s.is_current() => problems.push(format!(
                        "registry: migrations {:?} are pending: run `kiban init {}` to apply them",
                        s.pending,
                        self.root.display()
                    )),
                    Ok(_) => match reg.meta("data_dir_id").await {
                        Ok(Some(id)) if id != self.config.data_dir_id => problems.push(format!(
                            "registry belongs to data directory {id}, not {}: the registry URL points at another installation",
                            self.config.data_dir_id
                        )),
                        Ok(_) => {}
                        Err(e) => problems.push(format!("registry: {e}")),
                    },
                }
                reg.close().await;
            }
        }
        // With a working key store, sealed parts are also opened: the keys in use must decrypt them.
        let sealer = KeyStore::open(&self.keys(), env.as_deref()).ok().map(StoreSealer);
        for area in ["clinical", "datasets", "quarantine"] {
            check_datasets(&self.root.join(area), 0, sealer.as_ref(), &mut problems);
        }
        problems
    }
}

/// Verifies every dataset below `dir` (datasets sit at most two levels down: `<batch>/<table>`).
fn check_datasets(dir: &Path, depth: u8, sealer: Option<&StoreSealer>, problems: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        if p.extension().is_some_and(|x| x == "staging") {
            problems.push(format!(
                "{} is an unfinished write left by a crash; remove it (it was never committed)",
                p.display()
            ));
        } else if p.join("manifest.json").exists() {
            let checked = match sealer {
                Some(s) => kiban_formats::verify_dataset_opens(&p, s),
                None => kiban_formats::verify_dataset(&p),
            };
            if let Err(err) = checked {
                problems.push(format!("dataset {}: {err}", p.display()));
            }
        } else if depth < 2 {
            check_datasets(&p, depth + 1, sealer, problems);
        }
    }
}

/// Medical information: only the owner may read the data directory and the registry file.
fn restrict(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot restrict permissions of {}", path.display()))?;
    }
    let _ = (path, mode);
    Ok(())
}

fn block_on_registry(dd: &DataDir) -> Result<()> {
    let url = dd.registry_url();
    let id = dd.config.data_dir_id.clone();
    crate::block_on(async move {
        let reg = Registry::open(&url).await?;
        reg.migrate().await?;
        reg.set_meta_once("data_dir_id", &id).await?;
        reg.close().await;
        anyhow::Ok(())
    })
    .context("cannot prepare the registry")
}

/// The key store as a dataset sealer.
struct StoreSealer(KeyStore);

impl kiban_formats::Sealer for StoreSealer {
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.0.seal(aad, plain)
    }
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
        self.0.open_sealed(aad, sealed).map_err(|e| e.to_string())
    }
}
