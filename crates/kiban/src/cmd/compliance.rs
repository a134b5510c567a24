//! `kiban compliance` (traceability matrix, certification self-assessment, evidence documents) and
//! `kiban business` (B1, B3: plans, budgets, reports and statements, and the figures kiban knows).
//!
//! The requirement catalogue and the criteria checklist are data in `crates/kiban/compliance/`;
//! the matrix finds code and tests by scanning the workspace's sources for requirement ids.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use clap::Subcommand;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Ctx;
use crate::datadir::DataDir;

/// The requirement catalogue, generated from `shared/requirements.md`.
pub const REQUIREMENTS_TSV: &str = include_str!("../../compliance/requirements.tsv");
/// The certification criteria checklist (Act art.8-3, ordinance art.5–6).
pub const CRITERIA_TSV: &str = include_str!("../../compliance/criteria.tsv");

/// Arguments of `kiban compliance`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every requirement with the code that implements it, the tests that prove it and their result.
    Matrix {
        /// Test results: JUnit XML (nextest `--profile ci` junit), or saved `cargo test`/`cargo nextest` output.
        #[arg(long, value_name = "FILE")]
        results: Option<PathBuf>,
        /// The workspace to scan (default: the one this kiban was built from, else the current directory).
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
        /// Also write a self-contained HTML page (Japanese first).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Also keep the HTML page in the data directory (`compliance/matrix.html`), where the
        /// console's compliance page shows it to auditors.
        #[arg(long)]
        publish: bool,
    },
    /// Certification self-assessment (B2): each criterion of Act art.8-3 and ordinance art.5–6 with
    /// the evidence in the data directory and the documents attached; the gaps are listed.
    Assess,
    /// Attach a document as evidence for a criterion (copied into <data-dir>/documents with its SHA-256).
    Attach {
        /// Criterion id (`kiban compliance assess` lists them, e.g. art6-1-i).
        item: String,
        /// The document.
        file: PathBuf,
    },
}

// ---------------------------------------------------------------------------------------------
// Requirements

/// One requirement of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    /// Id (P1 …).
    pub id: String,
    /// Its group heading.
    pub group: String,
    /// The text.
    pub text: String,
}

#[cfg(test)]
/// Parses `shared/requirements.md`: `## ` headings are groups, `- **ID** text` lines requirements.
pub fn parse_requirements_md(md: &str) -> Vec<Requirement> {
    let mut group = String::new();
    let mut out = Vec::new();
    for line in md.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            group = h.trim().to_owned();
        } else if let Some(rest) = line.strip_prefix("- **")
            && let Some((id, text)) = rest.split_once("** ")
            && is_req_id(id)
        {
            out.push(Requirement { id: id.to_owned(), group: group.clone(), text: text.trim().to_owned() });
        }
    }
    out
}

#[cfg(test)]
/// The TSV form kept in the repository.
pub fn requirements_tsv(reqs: &[Requirement]) -> String {
    let mut s = String::from(
        "# kiban requirement catalogue, generated from shared/requirements.md (do not edit: run KIBAN_BLESS=1 cargo test -p kiban b2_requirements_copy)\nid\tgroup\ttext\n",
    );
    for r in reqs {
        s.push_str(&format!("{}\t{}\t{}\n", r.id, r.group, r.text));
    }
    s
}

/// The catalogue embedded in this build.
pub fn requirements() -> Vec<Requirement> {
    REQUIREMENTS_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("id\t") && !l.is_empty())
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            Some(Requirement { id: f.next()?.into(), group: f.next()?.into(), text: f.next()?.into() })
        })
        .collect()
}

fn is_req_id(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_uppercase())
        && s.len() >= 2
        && s.len() <= 3
        && c.all(|d| d.is_ascii_digit())
}

// ---------------------------------------------------------------------------------------------
// Workspace scan

/// A test function that names requirement ids.
#[derive(Debug, Clone, Serialize)]
pub struct TestFn {
    /// Function name.
    pub name: String,
    /// File, relative to the workspace.
    pub file: String,
    /// Line (1-based).
    pub line: usize,
    /// Requirement ids it names (upper case).
    pub ids: Vec<String>,
    /// Result from the results file: pass, fail, skipped or not run.
    pub status: String,
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name == "target" || name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            rs_files(&p, out);
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// The requirement ids a test name starts with: `c1_c3_p4_intake` → C1, C3, P4.
fn ids_of_test_name(name: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for part in name.split('_') {
        let up = part.to_ascii_uppercase();
        if is_req_id(&up) {
            ids.push(up);
        } else {
            break;
        }
    }
    ids
}

/// Requirement ids mentioned in a comment, with ranges expanded (`A1–A4` → A1, A2, A3, A4).
fn ids_in_comment(text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    let read_id = |i: usize| -> Option<(char, u32, usize)> {
        let c = *chars.get(i)?;
        if !c.is_ascii_uppercase() || (i > 0 && chars[i - 1].is_alphanumeric()) {
            return None;
        }
        let mut j = i + 1;
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
        if j == i + 1 || j - i > 3 || (j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_')) {
            return None;
        }
        let n: u32 = chars[i + 1..j].iter().collect::<String>().parse().ok()?;
        Some((c, n, j))
    };
    while i < chars.len() {
        if let Some((c, n, j)) = read_id(i) {
            let mut end = j;
            let mut hi = n;
            if j < chars.len() && (chars[j] == '–' || chars[j] == '-') {
                let k = if chars.get(j + 1) == Some(&c) { j + 1 } else { j };
                if k > j {
                    if let Some((c2, n2, e2)) = read_id(k)
                        && c2 == c
                        && n2 > n
                    {
                        hi = n2;
                        end = e2;
                    }
                } else {
                    let mut e = j + 1;
                    while e < chars.len() && chars[e].is_ascii_digit() {
                        e += 1;
                    }
                    if let Ok(n2) = chars[j + 1..e].iter().collect::<String>().parse::<u32>()
                        && n2 > n
                        && n2 <= 20
                    {
                        hi = n2;
                        end = e;
                    }
                }
            }
            for k in n..=hi {
                let id = format!("{c}{k}");
                if known.contains(&id) {
                    out.insert(id);
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// What the scan found: tests by requirement, and implementing files by requirement.
#[derive(Debug, Default)]
pub struct Scan {
    /// Tests naming requirement ids.
    pub tests: Vec<TestFn>,
    /// Non-test source files whose comments name the requirement.
    pub code: BTreeMap<String, BTreeSet<String>>,
}

/// Scans `root/crates` for test functions and requirement mentions.
pub fn scan_workspace(root: &Path, known: &BTreeSet<String>) -> Scan {
    let mut files = Vec::new();
    rs_files(&root.join("crates"), &mut files);
    let mut scan = Scan::default();
    for path in files {
        let Ok(text) = fs::read_to_string(&path) else { continue };
        let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        let is_test_file = rel.contains("/tests/") || rel.contains("/benches/");
        let lines: Vec<&str> = text.lines().collect();
        let test_mod_at = lines.iter().position(|l| l.trim() == "#[cfg(test)]").unwrap_or(usize::MAX);
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            if !is_test_file
                && i < test_mod_at
                && let Some(c) = t.strip_prefix("//")
            {
                for id in ids_in_comment(c, known) {
                    scan.code.entry(id).or_default().insert(rel.clone());
                }
            }
            let sig = t.strip_prefix("pub ").unwrap_or(t);
            let sig = sig.strip_prefix("async ").unwrap_or(sig);
            let Some(rest) = sig.strip_prefix("fn ") else { continue };
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let ids: Vec<String> = ids_of_test_name(&name).into_iter().filter(|id| known.contains(id)).collect();
            if ids.is_empty() {
                continue;
            }
            // A test: #[test], #[tokio::test] or a proptest attribute just above (doc comments between).
            let mut is_test = false;
            for back in lines[..i].iter().rev().take(6) {
                let b = back.trim();
                if b.starts_with("#[test") || b.starts_with("#[tokio::test") || b.starts_with("#[proptest") {
                    is_test = true;
                    break;
                }
                if !(b.starts_with("#[") || b.starts_with("///") || b.starts_with("//")) {
                    break;
                }
            }
            if is_test {
                scan.tests.push(TestFn { name, file: rel.clone(), line: i + 1, ids, status: "not run".into() });
            }
        }
    }
    scan
}

/// Test outcomes by function name (the last `::` segment).
pub fn parse_results(text: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |full: &str, status: &str| {
        let name = full.rsplit("::").next().unwrap_or(full).trim().to_owned();
        let e = out.entry(name).or_insert_with(|| status.to_owned());
        if status == "fail" {
            *e = "fail".into();
        }
    };
    if text.contains("<testsuite") {
        for piece in text.split("<testcase").skip(1) {
            let Some(start) = piece.find(" name=\"") else { continue };
            let name = &piece[start + 7..];
            let Some(end) = name.find('"') else { continue };
            let name = &name[..end];
            let body = piece.split("</testcase>").next().unwrap_or(piece);
            let status = if body.contains("<failure") || body.contains("<error") {
                "fail"
            } else if body.contains("<skipped") {
                "skipped"
            } else {
                "pass"
            };
            put(name, status);
        }
        return out;
    }
    for line in text.lines() {
        let t = line.trim();
        // cargo test: `test path::name ... ok`
        if let Some(rest) = t.strip_prefix("test ")
            && let Some((name, res)) = rest.rsplit_once(" ... ")
        {
            let status = match res.trim() {
                "ok" => "pass",
                "FAILED" => "fail",
                r if r.starts_with("ignored") => "skipped",
                _ => continue,
            };
            put(name, status);
            continue;
        }
        // nextest: `PASS [   0.012s] crate::bin name`
        let word = t.split_whitespace().next().unwrap_or("");
        let status = match word {
            "PASS" => "pass",
            "FAIL" | "TIMEOUT" | "SIGSEGV" | "SIGABRT" | "SIGKILL" => "fail",
            "SKIP" => "skipped",
            _ => continue,
        };
        if t.contains(']')
            && let Some(name) = t.split_whitespace().last()
        {
            put(name, status);
        }
    }
    out
}

/// One row of the matrix.
#[derive(Debug, Serialize)]
pub struct MatrixRow {
    /// Requirement.
    pub id: String,
    /// Group.
    pub group: String,
    /// Text.
    pub text: String,
    /// Files whose comments name it.
    pub code: Vec<String>,
    /// Tests naming it.
    pub tests: Vec<TestFn>,
    /// uncovered | pass | fail | not run | partial
    pub status: String,
}

fn workspace_root(arg: Option<PathBuf>) -> PathBuf {
    if let Some(p) = arg {
        return p;
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if built.join("Cargo.toml").exists() && built.join("crates").is_dir() {
        return built.canonicalize().unwrap_or(built);
    }
    PathBuf::from(".")
}

/// Builds the matrix from the catalogue, a workspace scan and optional results.
pub fn matrix(root: &Path, results: Option<&BTreeMap<String, String>>) -> Vec<MatrixRow> {
    let reqs = requirements();
    let known: BTreeSet<String> = reqs.iter().map(|r| r.id.clone()).collect();
    let mut scan = scan_workspace(root, &known);
    for t in &mut scan.tests {
        if let Some(r) = results.and_then(|r| r.get(&t.name)) {
            t.status = r.clone();
        }
    }
    reqs.into_iter()
        .map(|r| {
            let tests: Vec<TestFn> = scan.tests.iter().filter(|t| t.ids.contains(&r.id)).cloned().collect();
            let status = if tests.is_empty() {
                "uncovered"
            } else if tests.iter().any(|t| t.status == "fail") {
                "fail"
            } else if tests.iter().all(|t| t.status == "pass") {
                "pass"
            } else if tests.iter().any(|t| t.status == "pass") {
                "partial"
            } else {
                "not run"
            };
            MatrixRow {
                code: scan.code.get(&r.id).map(|s| s.iter().cloned().collect()).unwrap_or_default(),
                id: r.id,
                group: r.group,
                text: r.text,
                tests,
                status: status.to_owned(),
            }
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn status_ja(s: &str) -> &'static str {
    match s {
        "pass" => "合格 pass",
        "fail" => "不合格 fail",
        "partial" => "一部実行 partial",
        "not run" => "未実行 not run",
        "skipped" => "スキップ skipped",
        _ => "テストなし uncovered",
    }
}

/// The matrix as a self-contained HTML page (no scripts, no external resources).
pub fn matrix_html(rows: &[MatrixRow], results: Option<&str>) -> String {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\"><title>要件トレーサビリティ表 Requirements traceability — kiban</title>\n<style>body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;width:100%}th,td{border:1px solid #bbb;padding:.3em .5em;vertical-align:top;font-size:.9em}th{background:#eee}.pass{background:#e3f6e3}.fail{background:#fbdada}.uncovered{background:#fff3cd}.partial,.not-run{background:#f0f0f0}code{font-size:.85em}small{color:#666}</style></head><body>\n",
    );
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
    h.push_str("<h1>要件トレーサビリティ表 <small>Requirements traceability matrix</small></h1>\n");
    h.push_str(&format!(
        "<p>要件 {} 件：合格 {}、不合格 {}、一部実行 {}、未実行 {}、テストなし {}。<br><small>{} requirements: {} pass, {} fail, {} partial, {} not run, {} uncovered. Test results: {}.</small></p>\n",
        rows.len(),
        count("pass"),
        count("fail"),
        count("partial"),
        count("not run"),
        count("uncovered"),
        rows.len(),
        count("pass"),
        count("fail"),
        count("partial"),
        count("not run"),
        count("uncovered"),
        esc(results.unwrap_or("none given (not run)"))
    ));
    h.push_str("<table><tr><th>ID</th><th>要件 <small>requirement</small></th><th>実装 <small>code</small></th><th>テスト <small>tests</small></th><th>状態 <small>status</small></th></tr>\n");
    let mut group = "";
    for r in rows {
        if r.group != group {
            group = &r.group;
            h.push_str(&format!("<tr><th colspan=\"5\">{}</th></tr>\n", esc(group)));
        }
        let code = r.code.iter().map(|c| format!("<code>{}</code>", esc(c))).collect::<Vec<_>>().join("<br>");
        let tests = r
            .tests
            .iter()
            .map(|t| {
                format!(
                    "<code>{}</code> <small>{}:{} — {}</small>",
                    esc(&t.name),
                    esc(&t.file),
                    t.line,
                    status_ja(&t.status)
                )
            })
            .collect::<Vec<_>>()
            .join("<br>");
        h.push_str(&format!(
            "<tr class=\"{}\"><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            r.status.replace(' ', "-"),
            esc(&r.id),
            esc(&r.text),
            code,
            tests,
            status_ja(&r.status)
        ));
    }
    h.push_str("</table>\n<p><small>Generated by <code>kiban compliance matrix</code>. Tests are found by their names (<code>fn c3_…</code>), code by requirement ids in its comments.</small></p></body></html>\n");
    h
}

// ---------------------------------------------------------------------------------------------
// Self-assessment

/// One criterion of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Criterion {
    /// Id (art6-1-i …).
    pub id: String,
    /// Article.
    pub article: String,
    /// Japanese text (seed 002).
    pub ja: String,
    /// Short English.
    pub en: String,
    /// Evidence kiban checks.
    pub evidence: Vec<String>,
    /// Requirement ids.
    pub requirements: String,
}

/// The embedded criteria checklist.
pub fn criteria() -> Vec<Criterion> {
    CRITERIA_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("id\t") && !l.is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 6).then(|| Criterion {
                id: f[0].into(),
                article: f[1].into(),
                ja: f[2].into(),
                en: f[3].into(),
                evidence: f[4].split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty() && s != "-").collect(),
                requirements: f[5].into(),
            })
        })
        .collect()
}

/// A fact checked in the data directory.
#[derive(Debug, Clone, Serialize)]
struct Fact {
    ok: bool,
    text: String,
}

#[derive(Debug, Serialize)]
struct Assessed {
    #[serde(flatten)]
    criterion: Criterion,
    facts: Vec<(String, Fact)>,
    documents: Vec<kiban_registry::business::Document>,
    met: bool,
    gap: Option<String>,
}

fn count_datasets(root: &Path) -> usize {
    let mut n = 0;
    for area in ["clinical", "datasets"] {
        if let Ok(rd) = fs::read_dir(root.join(area)) {
            n += rd.flatten().filter(|e| e.path().join("manifest.json").exists()).count();
        }
    }
    n
}

fn gather_facts(
    ctx: &Ctx,
    dd: &DataDir,
) -> Result<(BTreeMap<&'static str, Fact>, Vec<kiban_registry::business::Document>)> {
    let today = kiban_registry::records::today_jst();
    let (ev, last_backup, docs, business) = crate::block_on(async {
        let reg = dd.registry().await?;
        let ev = reg.evidence(today).await?;
        let b = reg.last_backup().await?;
        let d = reg.documents("criterion").await?;
        let biz = reg.documents("business").await?;
        reg.close().await;
        anyhow::Ok((ev, b, d, biz))
    })?;
    let mut f: BTreeMap<&'static str, Fact> = BTreeMap::new();
    let fact = |ok: bool, text: String| Fact { ok, text };
    f.insert(
        "providers",
        fact(
            ev.providers > 0 && ev.providers_published > 0,
            format!("提供事業者 providers {} (published filings {})", ev.providers, ev.providers_published),
        ),
    );
    f.insert(
        "provider_security",
        fact(
            ev.providers > 0 && ev.providers_security_checked == ev.providers,
            format!(
                "送信方法・安全管理の確認 transmission security confirmed for {}/{} providers",
                ev.providers_security_checked, ev.providers
            ),
        ),
    );
    let roles = ev.roles.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ");
    f.insert(
        "accounts",
        if ev.accounts_present {
            fact(
                ev.accounts_active > 0,
                format!(
                    "アカウント accounts: {} active; roles: {}",
                    ev.accounts_active,
                    if roles.is_empty() { "none".into() } else { roles }
                ),
            )
        } else {
            fact(false, "accounts table absent (this registry has no account records)".into())
        },
    );
    f.insert(
        "vetting",
        fact(
            ev.accounts_active > 0 && ev.accounts_vetted == ev.accounts_active,
            format!(
                "欠格事由の確認 vetting recorded for {}/{} active accounts",
                ev.accounts_vetted, ev.accounts_active
            ),
        ),
    );
    f.insert(
        "training",
        fact(
            ev.accounts_active > 0 && ev.accounts_trained == ev.accounts_active,
            format!("教育訓練 current training for {}/{} active accounts", ev.accounts_trained, ev.accounts_active),
        ),
    );
    f.insert(
        "2fa",
        fact(
            ev.accounts_active > 0 && ev.accounts_2fa == ev.accounts_active,
            format!("二要素認証 2FA enrolled for {}/{} active accounts", ev.accounts_2fa, ev.accounts_active),
        ),
    );
    f.insert(
        "committee",
        match ev.committee_members {
            Some(n) if ev.committee_problems.is_empty() => fact(
                true,
                format!("審査委員会 committee of {n} sitting members meets R1 (size, both sexes, the three fields, 2 external, none engaged)"),
            ),
            Some(n) => fact(
                false,
                format!("審査委員会 committee of {n} sitting members breaks R1: {}", ev.committee_problems.join("; ")),
            ),
            None => fact(
                false,
                "審査委員会 no committee records in the registry yet (composition cannot be checked)".into(),
            ),
        },
    );
    f.insert("incidents", fact(true, format!("インシデント incidents recorded: {}", ev.incidents)));
    f.insert("complaints", fact(true, format!("苦情 complaints recorded: {}", ev.complaints)));
    f.insert(
        "retention",
        fact(
            true,
            format!(
                "保存期間 retention rules for {} record kinds; purge runs recorded: {}",
                kiban_registry::retention::RECORD_KINDS.len(),
                ev.purge_runs
            ),
        ),
    );
    let n = count_datasets(&ctx.data_dir);
    f.insert("datasets", fact(n > 0, format!("データセット datasets with verified manifests: {n}")));
    let env = std::env::var("KIBAN_MASTER_KEY").ok();
    let ks = kiban_identity::keystore::KeyStore::check(&dd.keys(), env.as_deref());
    f.insert(
        "encryption",
        fact(
            ks.is_empty(),
            if ks.is_empty() {
                "暗号鍵 key store opens; master key check and wrapped keys verified".into()
            } else {
                format!("key store: {}", ks.join("; "))
            },
        ),
    );
    f.insert(
        "audit",
        if dd.audit_dir().exists() {
            let key = crate::auditkey::audit_checkpoint_key(dd)?;
            match kiban_audit::verify_summary(
                &dd.audit_dir(),
                &key,
                &kiban_audit::Actor::system(),
                "kiban compliance assess",
            ) {
                Ok((r, _)) => fact(
                    r.is_intact(),
                    format!(
                        "監査ログ audit chain {}: {} entries",
                        if r.is_intact() { "verified" } else { "BROKEN" },
                        r.entries
                    ),
                ),
                Err(e) => fact(false, format!("audit log: {e}")),
            }
        } else {
            fact(false, "監査ログ no audit log yet".into())
        },
    );
    f.insert(
        "backup",
        match &last_backup {
            Some(b) => {
                let age = chrono::DateTime::parse_from_rfc3339(&b.created_at)
                    .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_days())
                    .unwrap_or(i64::MAX);
                fact(
                    age <= 31,
                    format!(
                        "バックアップ last backup {} ({} days ago, {} bytes, sha256 {})",
                        b.created_at,
                        age,
                        b.size_bytes,
                        &b.sha256[..16]
                    ),
                )
            }
            None => fact(false, "バックアップ no backup recorded (`kiban backup --out FILE`)".into()),
        },
    );
    let has = |k: &str| business.iter().any(|d| d.item == k);
    f.insert(
        "business",
        fact(
            has("plan") && has("budget"),
            format!(
                "事業計画・収支予算 business plan {}, budget {}, statement {}",
                if has("plan") { "kept" } else { "missing" },
                if has("budget") { "kept" } else { "missing" },
                if has("statement") { "kept" } else { "missing" }
            ),
        ),
    );
    Ok((f, docs))
}

fn assess(ctx: &Ctx) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let (facts, docs) = gather_facts(ctx, &dd)?;
    let items: Vec<Assessed> = criteria()
        .into_iter()
        .map(|c| {
            let fs: Vec<(String, Fact)> = c
                .evidence
                .iter()
                .map(|e| {
                    let f = facts
                        .get(e.as_str())
                        .cloned()
                        .unwrap_or(Fact { ok: false, text: format!("unknown evidence kind {e}") });
                    (e.clone(), f)
                })
                .collect();
            let documents: Vec<_> = docs.iter().filter(|d| d.item == c.id).cloned().collect();
            let facts_ok = fs.iter().all(|(_, f)| f.ok);
            let met = facts_ok && (!fs.is_empty() || !documents.is_empty());
            let gap = if met {
                None
            } else if !facts_ok {
                Some(fs.iter().filter(|(_, f)| !f.ok).map(|(_, f)| f.text.clone()).collect::<Vec<_>>().join("; "))
            } else {
                Some(format!("no document attached (`kiban compliance attach {} FILE`)", c.id))
            };
            Assessed { criterion: c, facts: fs, documents, met, gap }
        })
        .collect();
    let met = items.iter().filter(|i| i.met).count();
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "items": items, "met": met, "total": items.len(),
                "facts": facts,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "認定基準 自己評価 certification self-assessment (Act art.8-3, ordinance art.5–6): {met}/{} met",
        items.len()
    );
    for i in &items {
        println!(
            "[{}] {:<10} {} {}\n      {}",
            if i.met { "済" } else { "未" },
            i.criterion.id,
            i.criterion.article,
            i.criterion.ja,
            i.criterion.en
        );
        for (_, f) in &i.facts {
            println!("      {} {}", if f.ok { "✓" } else { "✗" }, f.text);
        }
        for d in &i.documents {
            println!("      📄 {} (sha256 {}, {})", d.file_name, &d.sha256[..16], d.recorded_at);
        }
    }
    println!("\n不足 gaps:");
    for i in items.iter().filter(|i| !i.met) {
        println!("  {:<10} {}", i.criterion.id, i.gap.as_deref().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies `file` into `<data-dir>/documents/<sub>/` named by its digest and returns
/// (stored path relative to the data dir, sha256, size, original file name).
/// Copies a document into `<data-dir>/documents/<sub>/` under its digest; returns (path, sha256, size, name).
pub(crate) fn keep_document(root: &Path, sub: &str, file: &Path) -> Result<(String, String, i64, String)> {
    let bytes = fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "document".into());
    let safe: String = name.chars().map(|c| if c == '/' || c == '\\' { '_' } else { c }).collect();
    let rel = format!("documents/{sub}/{}-{safe}", &sha[..16]);
    let dst = root.join(&rel);
    fs::create_dir_all(dst.parent().expect("has parent"))?;
    let tmp = dst.with_extension("staging");
    fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &dst)?;
    Ok((rel, sha, bytes.len() as i64, name))
}

fn attach(ctx: &Ctx, item: &str, file: &Path) -> Result<ExitCode> {
    if !criteria().iter().any(|c| c.id == item) {
        bail!(
            "{item:?} is not a criterion id; one of: {}",
            criteria().iter().map(|c| c.id.clone()).collect::<Vec<_>>().join(", ")
        );
    }
    let dd = DataDir::open(&ctx.data_dir)?;
    let (rel, sha, size, name) = keep_document(&ctx.data_dir, &format!("criteria/{item}"), file)?;
    let doc = crate::block_on(async {
        let reg = dd.registry().await?;
        let d = reg
            .add_document("criterion", item, None, &name, &rel, &sha, size, None, None, "kiban compliance attach")
            .await;
        reg.close().await;
        anyhow::Ok(d?)
    })?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("添付 attached {} to {item}: {} (sha256 {})", doc.file_name, doc.stored_path, doc.sha256);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `kiban compliance`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    match args.cmd {
        Cmd::Matrix { results, workspace, html, publish } => {
            let root = workspace_root(workspace);
            if !root.join("crates").is_dir() {
                bail!("{} is not the kiban workspace (no crates/); pass --workspace DIR", root.display());
            }
            let parsed = match &results {
                Some(p) => {
                    let text = fs::read_to_string(p).with_context(|| format!("cannot read results {}", p.display()))?;
                    let r = parse_results(&text);
                    if r.is_empty() {
                        bail!(
                            "{} holds no test results (expected JUnit XML or cargo test / nextest output)",
                            p.display()
                        );
                    }
                    Some(r)
                }
                None => None,
            };
            let rows = matrix(&root, parsed.as_ref());
            let label = results.as_ref().map(|p| p.display().to_string());
            if let Some(h) = &html {
                fs::write(h, matrix_html(&rows, label.as_deref()))
                    .with_context(|| format!("cannot write {}", h.display()))?;
            }
            if publish {
                DataDir::open(&ctx.data_dir)?;
                let dir = ctx.data_dir.join("compliance");
                fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                let tmp = dir.join("matrix.html.tmp");
                fs::write(&tmp, matrix_html(&rows, label.as_deref()))?;
                fs::rename(&tmp, dir.join("matrix.html"))?;
            }
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<4} {:<11} {:>5} {:>5}  tests (first)", "id", "status", "code", "tests");
                for r in &rows {
                    println!(
                        "{:<4} {:<11} {:>5} {:>5}  {}",
                        r.id,
                        r.status,
                        r.code.len(),
                        r.tests.len(),
                        r.tests.first().map(|t| t.name.as_str()).unwrap_or("-")
                    );
                }
                let c = |s: &str| rows.iter().filter(|r| r.status == s).count();
                println!(
                    "{} requirements: {} pass, {} fail, {} partial, {} not run, {} uncovered",
                    rows.len(),
                    c("pass"),
                    c("fail"),
                    c("partial"),
                    c("not run"),
                    c("uncovered")
                );
                if let Some(h) = html {
                    println!("HTML: {}", h.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Assess => assess(ctx),
        Cmd::Attach { item, file } => attach(ctx, &item, &file),
    }
}

// ---------------------------------------------------------------------------------------------
// Business documents (B1, B3)

/// Arguments of `kiban business`.
#[derive(Debug, clap::Args)]
pub struct BusinessArgs {
    #[command(subcommand)]
    cmd: BizCmd,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Kind {
    /// 事業計画書 business plan (before the fiscal year).
    Plan,
    /// 収支予算書 budget (before the fiscal year).
    Budget,
    /// 事業報告書 business report (within 3 months after the year).
    Report,
    /// 財務諸表 financial statement (within 3 months after the year).
    Statement,
    /// 変更・承継・廃止・解散の届出 notification of a change, succession, abolition or dissolution (B3).
    Change,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Plan => "plan",
            Kind::Budget => "budget",
            Kind::Report => "report",
            Kind::Statement => "statement",
            Kind::Change => "change",
        }
    }
}

#[derive(Debug, Subcommand)]
enum BizCmd {
    /// Keep a business document (copied into <data-dir>/documents/business with its SHA-256).
    Add {
        /// What the document is.
        #[arg(long, value_enum)]
        kind: Kind,
        /// Fiscal year (April to March), e.g. 2026 for FY2026 (令和8年度).
        #[arg(long, value_name = "FY")]
        year: i64,
        /// The day it was submitted to the minister (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        submitted_on: Option<NaiveDate>,
        /// The day it was published (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        published_on: Option<NaiveDate>,
        /// The document.
        file: PathBuf,
    },
    /// List the business documents kept.
    List,
    /// Print the business report summary of a fiscal year, with the figures the registry knows.
    Report {
        /// Fiscal year (April to March).
        #[arg(long, value_name = "FY")]
        year: i64,
    },
}

/// Runs `kiban business`.
pub fn run_business(ctx: &Ctx, args: BusinessArgs) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    match args.cmd {
        BizCmd::Add { kind, year, submitted_on, published_on, file } => {
            if !(2000..=2100).contains(&year) {
                bail!("--year {year}: give the fiscal year as four digits, e.g. 2026");
            }
            let (rel, sha, size, name) = keep_document(&ctx.data_dir, &format!("business/{year}"), &file)?;
            let doc = crate::block_on(async {
                let reg = dd.registry().await?;
                let d = reg
                    .add_document(
                        "business",
                        kind.key(),
                        Some(year),
                        &name,
                        &rel,
                        &sha,
                        size,
                        submitted_on,
                        published_on,
                        "kiban business add",
                    )
                    .await;
                reg.close().await;
                anyhow::Ok(d?)
            })?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!(
                    "保存 kept {} FY{year} {}: {} (sha256 {})",
                    kind.key(),
                    doc.file_name,
                    doc.stored_path,
                    doc.sha256
                );
            }
        }
        BizCmd::List => {
            let docs = crate::block_on(async {
                let reg = dd.registry().await?;
                let d = reg.documents("business").await;
                reg.close().await;
                anyhow::Ok(d?)
            })?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&docs)?);
            } else {
                for d in docs {
                    println!(
                        "FY{} {:<9} {} submitted {} published {} sha256 {}",
                        d.fiscal_year.unwrap_or(0),
                        d.item,
                        d.file_name,
                        d.submitted_on.as_deref().unwrap_or("-"),
                        d.published_on.as_deref().unwrap_or("-"),
                        &d.sha256[..16]
                    );
                }
            }
        }
        BizCmd::Report { year } => {
            let (fig, docs) = crate::block_on(async {
                let reg = dd.registry().await?;
                let f = reg.year_figures(year).await;
                let d = reg.documents("business").await;
                reg.close().await;
                anyhow::Ok((f?, d?))
            })?;
            let docs: Vec<_> = docs.into_iter().filter(|d| d.fiscal_year == Some(year)).collect();
            let due = |k: &str| match k {
                "plan" | "budget" => format!("{year}-03-31"),
                _ => format!("{}-06-30", year + 1),
            };
            let status: Vec<serde_json::Value> = ["plan", "budget", "report", "statement"]
                .iter()
                .map(|k| {
                    let d = docs.iter().find(|d| d.item == *k);
                    serde_json::json!({
                        "kind": k, "due": due(k), "kept": d.is_some(),
                        "submitted_on": d.and_then(|d| d.submitted_on.clone()),
                        "published_on": d.and_then(|d| d.published_on.clone()),
                    })
                })
                .collect();
            if ctx.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"figures": fig, "documents": status}))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            let reiwa = year - 2018;
            println!("{year}年度（令和{reiwa}年度）事業報告 概要  FY{year} business report summary");
            println!("期間: {year}年4月1日〜{}年3月31日", year + 1);
            println!("１ 事業の実績（システムの記録による）");
            println!("  医療情報取扱事業者数（年度末・登録）      {:>8}", fig.providers);
            println!("  うち届出公表済み                          {:>8}", fig.providers_published);
            println!("  医療情報の受領件数（バッチ）              {:>8}", fig.receipts);
            println!("  受領した患者数（事業者ごとの実人数）      {:>8}", fig.patients);
            println!("  提供停止の求め                            {:>8}", fig.optouts);
            println!("  消去の記録                                {:>8}", fig.deletions);
            println!("  匿名加工・仮名加工医療情報の提供件数      {:>8}", fig.releases);
            println!("  利用者アカウント数（年度末）              {:>8}", fig.users);
            println!("  インシデント                              {:>8}", fig.incidents);
            println!("  漏えい等報告                              {:>8}", fig.leak_reports);
            println!("  苦情                                      {:>8}", fig.complaints);
            if !fig.unknown.is_empty() {
                println!("  （記録なし・集計不能: {}）", fig.unknown.join(", "));
            }
            println!("２ 書類の状況（規則13条：計画・予算は年度開始前、報告・財務諸表は年度終了後3か月以内）");
            for s in &status {
                let name = match s["kind"].as_str().unwrap_or("") {
                    "plan" => "事業計画書",
                    "budget" => "収支予算書",
                    "report" => "事業報告書",
                    _ => "財務諸表",
                };
                println!(
                    "  {name:<8} 期限 {}  {}  提出 {}  公表 {}",
                    s["due"].as_str().unwrap_or(""),
                    if s["kept"] == true { "保存済" } else { "未登録" },
                    s["submitted_on"].as_str().unwrap_or("-"),
                    s["published_on"].as_str().unwrap_or("-")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalogue copy in the repository must equal shared/requirements.md when that file is
    /// present (`KIBAN_BLESS=1` rewrites the copy).
    #[test]
    fn b2_requirements_copy_matches_the_shared_catalogue() {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/requirements.md");
        let Ok(md) = fs::read_to_string(&shared) else {
            assert!(requirements().len() > 50, "the embedded catalogue is not empty");
            return;
        };
        let want = requirements_tsv(&parse_requirements_md(&md));
        if std::env::var("KIBAN_BLESS").is_ok() {
            fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("compliance/requirements.tsv"), &want).unwrap();
            return;
        }
        assert!(
            REQUIREMENTS_TSV == want,
            "crates/kiban/compliance/requirements.tsv is out of date with shared/requirements.md: run KIBAN_BLESS=1 cargo test -p kiban b2_requirements_copy"
        );
    }

    #[test]
    fn b2_criteria_cover_ordinance_art5_and_art6_and_name_known_evidence() {
        let c = criteria();
        let ids: BTreeSet<&str> = c.iter().map(|c| c.id.as_str()).collect();
        for n in 1..=11 {
            assert!(ids.contains(format!("art5-{n}").as_str()), "art5-{n}");
        }
        assert_eq!(c.iter().filter(|c| c.id.starts_with("art6-")).count(), 6 + 4 + 4 + 5 + 4);
        let known = [
            "providers",
            "provider_security",
            "accounts",
            "vetting",
            "training",
            "2fa",
            "committee",
            "incidents",
            "complaints",
            "retention",
            "datasets",
            "encryption",
            "audit",
            "backup",
            "business",
        ];
        for i in &c {
            for e in &i.evidence {
                assert!(known.contains(&e.as_str()), "{}: unknown evidence {e}", i.id);
            }
            assert!(!i.ja.is_empty() && !i.en.is_empty());
        }
    }

    #[test]
    fn b2_ids_in_comments_expand_ranges_and_ignore_other_words() {
        let known: BTreeSet<String> = requirements().into_iter().map(|r| r.id).collect();
        let got = ids_in_comment(" checks (A1–A4), C3 and P6-P7; not X99, H2O, SHA256 or A1x", &known);
        let want: BTreeSet<String> = ["A1", "A2", "A3", "A4", "C3", "P6", "P7"].iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want);
        assert_eq!(ids_of_test_name("c1_c3_p4_filing_flow"), vec!["C1", "C3", "P4"]);
        assert!(ids_of_test_name("doctor_names").is_empty());
    }

    #[test]
    fn b2_results_parse_junit_cargo_test_and_nextest_output() {
        let junit = r#"<testsuites><testsuite name="kiban"><testcase classname="x" name="a::c3_ok"/>
            <testcase name="c5_bad" classname="x"><failure message="boom"/></testcase>
            <testcase name="p1_skip"><skipped/></testcase></testsuite></testsuites>"#;
        let r = parse_results(junit);
        assert_eq!(r["c3_ok"], "pass");
        assert_eq!(r["c5_bad"], "fail");
        assert_eq!(r["p1_skip"], "skipped");
        let cargo = "test registry::intake::c2_receipt ... ok\ntest x::p4_conf ... FAILED\ntest y::z ... ignored\n";
        let r = parse_results(cargo);
        assert_eq!((r["c2_receipt"].as_str(), r["p4_conf"].as_str(), r["z"].as_str()), ("pass", "fail", "skipped"));
        let nextest = "        PASS [   0.012s] kiban-registry::registry c2_receipt\n        FAIL [   1.000s] kiban::cli x6_log\n";
        let r = parse_results(nextest);
        assert_eq!((r["c2_receipt"].as_str(), r["x6_log"].as_str()), ("pass", "fail"));
    }
}
