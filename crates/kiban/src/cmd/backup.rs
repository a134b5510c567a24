//! `kiban backup` and `kiban restore` (X7 business continuity): an online-consistent, encrypted
//! snapshot of the data directory, and its restoration into an empty directory.
//!
//! File format: the line `KIBAN-BACKUP v1`, one line of JSON header, then the tar archive of the
//! data directory in chunks of at most 8 MiB, each `u64` little-endian length + `KeyStore::seal`
//! output. Each chunk's associated data names the backup id, the header's SHA-256, its index and the
//! chunk count, so chunks cannot be swapped, dropped, reordered or moved to another backup. The
//! master key is never in the backup: restoring needs it (`--master-key-file` or `KIBAN_MASTER_KEY`).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kiban_identity::keystore::KeyStore;
use kiban_registry::Backend;
use kiban_registry::business::BackupRecord;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Ctx;
use crate::datadir::DataDir;

const MAGIC: &str = "KIBAN-BACKUP v1";
const CHUNK: usize = 8 << 20;

/// Arguments of `kiban backup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup file to write (refuses to overwrite).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Arguments of `kiban restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup file made by `kiban backup`.
    file: PathBuf,
    /// An empty or new directory to restore into.
    #[arg(long, value_name = "DIR")]
    into: PathBuf,
    /// A copy of the master key file (`keys/master.key`); else `KIBAN_MASTER_KEY` must be set.
    #[arg(long, value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    /// For a backup of a PostgreSQL registry: an empty database to load it into
    /// (e.g. postgres://kiban@db.internal/kiban_restored); the restored directory then uses it.
    #[arg(long, value_name = "URL")]
    registry_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    backup_id: String,
    created_at: String,
    data_dir_id: String,
    backend: String,
    tar_bytes: u64,
    tar_sha256: String,
    chunks: u64,
    /// `keys/keycheck.json`: lets restore confirm the master key before reading anything.
    keycheck: String,
    /// `keys/keyring.json` (KEKs sealed under the master key): the chunks' data keys are wrapped
    /// by a KEK, so restore needs it before it can open them.
    #[serde(default)]
    keyring: Option<String>,
}

fn aad(header_sha: &str, id: &str, i: u64, n: u64) -> Vec<u8> {
    format!("kiban/backup/v1|{id}|{header_sha}|{i}/{n}").into_bytes()
}

/// Files never copied: the live registry (a snapshot is taken instead), the master key, unfinished writes.
fn skipped(rel: &Path) -> bool {
    let s = rel.to_string_lossy();
    s.starts_with("registry.sqlite")
        || s == "keys/master.key"
        || s.ends_with(".staging")
        || s.starts_with("staging/")
        || s.ends_with(".tmp")
        || s == "audit/.lock"
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> =
        fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = p.strip_prefix(root).expect("under root").to_path_buf();
        if skipped(&rel) {
            continue;
        }
        out.push(rel);
        if e.file_type()?.is_dir() {
            walk(root, &p, out)?;
        }
    }
    Ok(())
}

/// Runs `kiban backup`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    if args.out.exists() {
        bail!("{} exists; choose a new file name (backups are never overwritten)", args.out.display());
    }
    let ks = dd.key_store()?;
    let root = ctx.data_dir.clone();
    // Work inside the data directory (private, skipped by the walk), removed when done or failed.
    let mut rnd = [0u8; 8];
    rand::fill(&mut rnd);
    let work = WorkDir(root.join("staging").join(format!("backup-{}.staging", hex::encode(rnd))));
    fs::create_dir_all(work.path()).with_context(|| format!("cannot create {}", work.path().display()))?;
    // 1. The registry, consistent while kiban runs.
    let (backend, reg_file, reg_name) = crate::block_on(async {
        let reg = dd.registry().await?;
        let backend = reg.backend();
        let r = match backend {
            Backend::Sqlite => {
                let p = work.path().join("registry.sqlite");
                reg.snapshot_sqlite(&p).await.context("registry snapshot (VACUUM INTO)")?;
                (p, "registry.sqlite")
            }
            Backend::Postgres => (pg_dump(&dd.registry_url(), work.path())?, "registry.pg.sql"),
        };
        reg.close().await;
        anyhow::Ok((backend, r.0, r.1))
    })?;
    // 2. The archive.
    let tar_path = work.path().join("data.tar");
    {
        let mut b = tar::Builder::new(BufWriter::new(File::create(&tar_path)?));
        b.follow_symlinks(false);
        let mut files = Vec::new();
        walk(&root, &root, &mut files)?;
        for rel in &files {
            b.append_path_with_name(root.join(rel), rel)
                .with_context(|| format!("cannot archive {}", rel.display()))?;
        }
        b.append_path_with_name(&reg_file, reg_name)?;
        b.into_inner()?.flush()?;
    }
    let tar_bytes = fs::metadata(&tar_path)?.len();
    let tar_sha256 = sha256_file(&tar_path)?;
    let chunks = tar_bytes.div_ceil(CHUNK as u64).max(1);
    let keycheck = fs::read_to_string(dd.keys().join("keycheck.json")).context("key store has no keycheck.json")?;
    let keyring = Some(fs::read_to_string(dd.keys().join("keyring.json")).context("key store has no keyring.json")?);
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let header = Header {
        backup_id: format!("backup-{}", hex::encode(rnd)),
        created_at,
        data_dir_id: dd.config().data_dir_id.clone(),
        backend: if backend == Backend::Sqlite { "sqlite" } else { "postgres" }.into(),
        tar_bytes,
        tar_sha256,
        chunks,
        keycheck,
        keyring,
    };
    let header_line = serde_json::to_string(&header)?;
    let header_sha = hex::encode(Sha256::digest(header_line.as_bytes()));
    // 3. Sealed chunks, written to a partial file and renamed when complete.
    let partial = args.out.with_extension("partial");
    let mut hasher = Sha256::new();
    {
        let mut out =
            BufWriter::new(File::create(&partial).with_context(|| format!("cannot write {}", partial.display()))?);
        let mut put = |bytes: &[u8]| -> Result<()> {
            hasher.update(bytes);
            out.write_all(bytes)?;
            Ok(())
        };
        put(format!("{MAGIC}\n{header_line}\n").as_bytes())?;
        let mut input = File::open(&tar_path)?;
        let mut buf = vec![0u8; CHUNK];
        for i in 0..chunks {
            let n = read_full(&mut input, &mut buf)?;
            let sealed = ks.seal(&aad(&header_sha, &header.backup_id, i, chunks), &buf[..n]);
            put(&(sealed.len() as u64).to_le_bytes())?;
            put(&sealed)?;
        }
        out.flush()?;
        out.get_ref().sync_all()?;
    }
    fs::rename(&partial, &args.out)?;
    let size = fs::metadata(&args.out)?.len();
    let rec = BackupRecord {
        backup_id: header.backup_id.clone(),
        created_at: header.created_at.clone(),
        file_name: args.out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        sha256: hex::encode(hasher.finalize()),
        size_bytes: size as i64,
        chunks: chunks as i64,
        backend: header.backend.clone(),
    };
    crate::block_on(async {
        let reg = dd.registry().await?;
        let r = reg.record_backup(&rec).await;
        reg.close().await;
        anyhow::Ok(r?)
    })?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        println!(
            "バックアップ backup {} → {} ({} bytes, {} sealed chunk(s), sha256 {})",
            rec.backup_id,
            args.out.display(),
            rec.size_bytes,
            rec.chunks,
            rec.sha256
        );
        println!("Keep the master key apart from the backup: `kiban restore` needs it.");
    }
    Ok(ExitCode::SUCCESS)
}

struct WorkDir(PathBuf);

impl WorkDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = r.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn sha256_file(p: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let mut f = File::open(p)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn pg_dump(url: &str, dir: &Path) -> Result<PathBuf> {
    let out = dir.join("registry.pg.sql");
    let status = std::process::Command::new("pg_dump")
        .args(["--no-owner", "--no-privileges", "--file"])
        .arg(&out)
        .arg(url)
        .status();
    match status {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "the registry is in PostgreSQL and pg_dump is not on PATH: install the PostgreSQL client tools (same major version as the server)"
        ),
        Err(e) => bail!("cannot run pg_dump: {e}"),
        Ok(s) if !s.success() => bail!("pg_dump failed ({s}); check the registry URL and ~/.pgpass"),
        Ok(_) => Ok(out),
    }
}

fn psql(url: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
    std::process::Command::new("psql").args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]).args(args).arg(url).output()
}

/// Checks that `url` is an empty database we can reach (nothing is ever overwritten).
fn pg_check_empty(url: &str) -> Result<()> {
    let psql = |args: &[&str]| psql(url, args);
    let out = match psql(&["-tA", "-c", "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"])
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("psql is not on PATH: install the PostgreSQL client tools (same major version as the server)")
        }
        Err(e) => bail!("cannot run psql: {e}"),
        Ok(o) => o,
    };
    if !out.status.success() {
        bail!("cannot connect to --registry-url ({}); check the URL and ~/.pgpass", out.status);
    }
    let tables = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if tables != "0" {
        bail!("--registry-url: the database already has {tables} tables; restore only into an empty database");
    }
    Ok(())
}

/// Loads a `pg_dump` file into `url` (checked empty first).
fn pg_restore(url: &str, dump: &Path) -> Result<()> {
    pg_check_empty(url)?;
    let psql = |args: &[&str]| psql(url, args);
    let dump = dump.to_str().context("the dump path is not UTF-8")?;
    let out = psql(&["-f", dump]).context("cannot run psql")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("loading the registry dump failed: {}", err.lines().last().unwrap_or("").trim());
    }
    Ok(())
}

/// Runs `kiban restore`.
pub fn restore(ctx: &Ctx, args: RestoreArgs) -> Result<ExitCode> {
    let into = &args.into;
    if into.exists() && fs::read_dir(into).with_context(|| format!("cannot read {}", into.display()))?.next().is_some()
    {
        bail!("{} is not empty; restore only into an empty or new directory", into.display());
    }
    if let Some(url) = &args.registry_url {
        pg_check_empty(url)?;
    }
    let mut input =
        BufReader::new(File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?);
    let mut line = String::new();
    input.read_line(&mut line)?;
    if line.trim_end() != MAGIC {
        bail!("{} is not a kiban backup (no {MAGIC:?} line)", args.file.display());
    }
    line.clear();
    input.read_line(&mut line)?;
    let header_line = line.trim_end_matches('\n');
    let header: Header = serde_json::from_str(header_line).context("backup header is damaged")?;
    let header_sha = hex::encode(Sha256::digest(header_line.as_bytes()));
    let env_key = std::env::var("KIBAN_MASTER_KEY").ok();
    if env_key.is_none() && args.master_key_file.is_none() {
        bail!(
            "restore needs the master key: pass --master-key-file FILE (a copy of keys/master.key) or set KIBAN_MASTER_KEY"
        );
    }
    fs::create_dir_all(into.join("keys")).with_context(|| format!("cannot create {}", into.display()))?;
    set_mode(into, 0o700)?;
    set_mode(&into.join("keys"), 0o700)?;
    fs::write(into.join("keys/keycheck.json"), &header.keycheck)?;
    if let Some(ring) = &header.keyring {
        fs::write(into.join("keys/keyring.json"), ring)?;
        set_mode(&into.join("keys/keyring.json"), 0o600)?;
    }
    if let Some(k) = &args.master_key_file {
        let text = fs::read(k).with_context(|| format!("cannot read {}", k.display()))?;
        let dst = into.join("keys/master.key");
        fs::write(&dst, text)?;
        set_mode(&dst, 0o600)?;
    }
    let ks =
        KeyStore::open(&into.join("keys"), env_key.as_deref()).context("the master key does not open this backup")?;
    let tar_path = into.join("restore.tar.staging");
    {
        let mut out = BufWriter::new(File::create(&tar_path)?);
        for i in 0..header.chunks {
            let mut len = [0u8; 8];
            input.read_exact(&mut len).context("backup is truncated")?;
            let len = u64::from_le_bytes(len) as usize;
            if len > CHUNK + 1024 {
                bail!("backup chunk {i} is damaged (length {len})");
            }
            let mut sealed = vec![0u8; len];
            input.read_exact(&mut sealed).context("backup is truncated")?;
            let plain = ks
                .open_sealed(&aad(&header_sha, &header.backup_id, i, header.chunks), &sealed)
                .with_context(|| format!("backup chunk {i} does not open (damaged, reordered, or another key)"))?;
            out.write_all(&plain)?;
        }
        out.flush()?;
    }
    if input.read(&mut [0u8; 1])? != 0 {
        bail!("backup has trailing data after its last chunk: damaged");
    }
    if sha256_file(&tar_path)? != header.tar_sha256 {
        bail!("restored archive does not match the backup's digest");
    }
    tar::Archive::new(File::open(&tar_path)?).unpack(into).context("cannot unpack the backup")?;
    fs::remove_file(&tar_path)?;
    let mut pg_loaded = None;
    if header.backend == "postgres"
        && let Some(url) = &args.registry_url
    {
        let dump = into.join("registry.pg.sql");
        pg_restore(url, &dump)?;
        // The restored directory now points at the database it was loaded into.
        let cfg_path = into.join("kiban.toml");
        let mut cfg: crate::datadir::Config = toml::from_str(&fs::read_to_string(&cfg_path)?)?;
        cfg.registry_url = Some(url.clone());
        fs::write(&cfg_path, toml::to_string(&cfg)?)?;
        fs::remove_file(&dump)?;
        pg_loaded = Some(url.clone());
    }
    fs::create_dir_all(into.join("staging"))?;
    set_mode(into, 0o700)?;
    set_mode(&into.join("keys"), 0o700)?;
    if into.join("registry.sqlite").exists() {
        set_mode(&into.join("registry.sqlite"), 0o600)?;
    }
    let dd = DataDir::open(into)?;
    let mut problems = crate::block_on(dd.check());
    let audit = if dd.audit_dir().exists() {
        let key = crate::auditkey::audit_checkpoint_key(&dd)?;
        let (report, _) =
            kiban_audit::verify_summary(&dd.audit_dir(), &key, &kiban_audit::Actor::system(), "kiban restore")?;
        if !report.is_intact() {
            problems.push(format!("audit chain: {}", report.summary().replace('\n', " ")));
        }
        format!("{} entries verified", report.entries)
    } else {
        "no audit log".to_owned()
    };
    if header.backend == "postgres" && pg_loaded.is_none() {
        problems.push(format!(
            "the registry was PostgreSQL: restore again with --registry-url URL of an empty database, or load {} with psql and point KIBAN_REGISTRY_URL at it",
            into.join("registry.pg.sql").display()
        ));
    }
    let v = serde_json::json!({
        "backup_id": header.backup_id, "created_at": header.created_at, "into": into,
        "audit": audit, "problems": problems, "ok": problems.is_empty(),
    });
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("復元 restored {} (made {}) into {}", header.backup_id, header.created_at, into.display());
        println!("  audit log: {audit}");
        if problems.is_empty() {
            println!("  doctor: all checks passed");
        }
        for p in &problems {
            println!("  problem: {p}");
        }
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set permissions of {}", p.display()))?;
    }
    let _ = (p, mode);
    Ok(())
}
