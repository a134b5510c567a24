//! `kiban workspace`: the creator's side of the Visiting environment (R4–R7, R13, D9) — open a
//! workspace for an approved Type II application, list, show, close (end of use with deletion record),
//! the expiry sweep, R7 decisions and bringing in approved own data, checkers' take-out decisions.
//! Handlers work in the web pages (`/workspace`); `query` is here for operators' checks and the demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use kiban_audit::{Action, Actor, AuditLog, AuditSink, Event, Object, ObjectKind, Role};
use kiban_registry::records::today_jst;
use kiban_registry::workspace::WsCommand;
use kiban_server::workspace::{
    Bring, RequestDecision, WorkspaceEnv, add_handler, decide_request, end_workspace, open_workspace, request_review,
    submit_request, sweep,
};
use kiban_workspace::{Limits, TakeoutStatus, Workspace};

use crate::Ctx;
use crate::datadir::DataDir;

/// The Visiting environment for Type II users: workspaces, their end of use, requests and take-outs.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Open a workspace for an approved Type II application with its handlers and released datasets.
    Open {
        /// Application id.
        application: String,
        /// Handler account id (repeatable; each must be a handler named on the application).
        #[arg(long = "handler", required = true)]
        handlers: Vec<String>,
        /// The release the datasets belong to.
        #[arg(long)]
        release: String,
        /// TABLE=DATASET_DIR (repeatable): a released dataset copied in as a table.
        #[arg(long = "dataset", required = true)]
        datasets: Vec<String>,
        /// Day (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// List workspaces with their handlers and deletion records.
    List,
    /// Show one workspace: state, tables, results, take-outs, requests.
    Show {
        /// Workspace id.
        id: String,
    },
    /// End use now: close, delete data/scripts/results and write the deletion record (R5).
    Close {
        /// Workspace id.
        id: String,
        /// Why.
        #[arg(long, default_value = "terminated by the creator")]
        reason: String,
        /// Day (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// The sweep: close and delete every workspace whose usage period ended (the server runs it hourly).
    Expire {
        /// As of this day (default today).
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
    /// Show a handler's R7 request for review: the upload's schema and size, or a tool's whole text.
    Request {
        /// Workspace id.
        id: String,
        /// Request index (from `show`).
        #[arg(long)]
        index: usize,
    },
    /// Decide a handler's request to bring in own data or tools (R7); a granted upload comes in only
    /// if it still hashes to the digest recorded with the request, a refused one is deleted.
    Decide {
        /// Workspace id.
        id: String,
        /// Request index (from `show`).
        #[arg(long)]
        index: usize,
        /// Grant it (otherwise refused).
        #[arg(long)]
        grant: bool,
        /// Reason.
        #[arg(long)]
        reason: String,
        /// The deciding account.
        #[arg(long)]
        by: String,
    },
    /// Stop use for now (R6: unexpected use); data stay, nobody may work in it until `resume`.
    Suspend {
        /// Workspace id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Lift a stop.
    Resume {
        /// Workspace id.
        id: String,
    },
    /// Add a handler account to the roster (must be named on the application and agreement, R5).
    AddHandler {
        /// Workspace id.
        id: String,
        /// The handler's account id.
        #[arg(long)]
        account: String,
    },
    /// Remove a handler from the roster (R5).
    RemoveHandler {
        /// Workspace id.
        id: String,
        /// The handler's account id.
        #[arg(long)]
        account: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Bring in own data under a granted request (R7): a kiban dataset directory.
    Import {
        /// Workspace id.
        id: String,
        /// The granted request's index.
        #[arg(long)]
        index: usize,
        /// Table name.
        #[arg(long)]
        table: String,
        /// Dataset directory.
        #[arg(long)]
        dataset: PathBuf,
    },
    /// A checker approves or declines a take-out that passed the publication rules (D9).
    Takeout {
        /// Workspace id.
        id: String,
        /// Take-out id.
        takeout: String,
        /// The checker's account (not a handler of the workspace).
        #[arg(long)]
        checker: String,
        /// Approve (otherwise declined).
        #[arg(long)]
        approve: bool,
        /// Reason (required when declining).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Run a query as a handler (operators' check; handlers use the web pages).
    Query {
        /// Workspace id.
        id: String,
        /// The handler's account id.
        #[arg(long = "as")]
        account: String,
        /// The SQL.
        sql: String,
    },
}

/// The workspace environment of a data directory.
pub fn env(dd: &DataDir, root: &std::path::Path) -> Result<WorkspaceEnv> {
    Ok(WorkspaceEnv {
        base: root.join("workspaces"),
        datasets: root.join("datasets"),
        sealer: dd.sealer()?,
        limits: Limits::default(),
    })
}

fn open_log(dd: &DataDir) -> Result<AuditLog> {
    let key = crate::auditkey::audit_checkpoint_key(dd)?;
    AuditLog::open(dd.audit_dir(), key).context("cannot open the audit log")
}

/// Runs `kiban workspace`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let env = env(&dd, &ctx.data_dir)?;
    let log = open_log(&dd)?;
    let operator = Actor::new("kiban-cli", Role::Secretariat);
    let out = crate::block_on(async {
        let reg = dd.registry().await?;
        let v: serde_json::Value = match args.verb {
            Verb::Open { application, handlers, release, datasets, on } => {
                let mut tables = Vec::new();
                for d in &datasets {
                    let Some((t, dir)) = d.split_once('=') else { bail!("--dataset {d:?} must be TABLE=DIR") };
                    tables.push((t.to_owned(), PathBuf::from(dir)));
                }
                let s = open_workspace(
                    &reg,
                    &env,
                    &application,
                    &handlers,
                    &release,
                    &tables,
                    on.unwrap_or_else(today_jst),
                )
                .await
                .map_err(anyhow::Error::msg)?;
                log.record(write_event(&operator, &format!("ws/{}", s.workspace_id), "opened"))?;
                serde_json::to_value(&s)?
            }
            Verb::List => serde_json::to_value(reg.workspaces().await?)?,
            Verb::Show { id } => {
                let s = reg.workspace_state(&id).await?;
                let (results, takeouts, quarantine, tools) = match Workspace::open(&env.base, &id, env.sealer.clone()) {
                    Ok(ws) => (
                        serde_json::to_value(ws.results()?)?,
                        serde_json::to_value(ws.takeouts()?)?,
                        serde_json::to_value(ws.staged_all()?)?,
                        serde_json::to_value(ws.tools()?)?,
                    ),
                    Err(_) => {
                        (serde_json::json!([]), serde_json::json!([]), serde_json::json!([]), serde_json::json!([]))
                    }
                };
                serde_json::json!({"state": s, "results": results, "takeouts": takeouts, "quarantine": quarantine, "tools": tools})
            }
            Verb::Close { id, reason, on } => {
                end_workspace(&reg, &log, &env, &id, on.unwrap_or_else(today_jst), &reason, &operator)
                    .await
                    .map_err(anyhow::Error::msg)?
            }
            Verb::Expire { as_of } => {
                let ended =
                    sweep(&reg, &log, &env, as_of.unwrap_or_else(today_jst)).await.map_err(anyhow::Error::msg)?;
                serde_json::json!({"ended": ended})
            }
            Verb::Request { id, index } => {
                let s = reg.workspace_state(&id).await?;
                let v = request_review(&env, &s, index).map_err(anyhow::Error::msg)?;
                log.record(Event::new(
                    operator.clone(),
                    "cli",
                    Action::Read,
                    Object::new(ObjectKind::Ledger, format!("ws-request/{id}/{index}")),
                ))?;
                v
            }
            Verb::Decide { id, index, grant, reason, by } => {
                let actor = Actor::new(&by, Role::Secretariat);
                let s = decide_request(
                    &reg,
                    &log,
                    &env,
                    &id,
                    RequestDecision { index, granted: grant, reason: &reason },
                    &actor,
                )
                .await
                .map_err(anyhow::Error::msg)?;
                serde_json::json!({"requests": s.requests, "tables": s.tables, "tools": s.tools})
            }
            Verb::Suspend { id, reason } => {
                let cmd = WsCommand::Suspend { on: today_jst(), reason, by: operator.id.clone() };
                let s = reg.execute_workspace(&id, &cmd).await?;
                log.record(write_event(&operator, &format!("ws/{id}/suspend"), "use stopped (R6)"))?;
                serde_json::to_value(&s)?
            }
            Verb::Resume { id } => {
                let s =
                    reg.execute_workspace(&id, &WsCommand::Resume { on: today_jst(), by: operator.id.clone() }).await?;
                log.record(write_event(&operator, &format!("ws/{id}/resume"), "use resumed"))?;
                serde_json::to_value(&s)?
            }
            Verb::AddHandler { id, account } => {
                let s = add_handler(&reg, &id, &account, today_jst()).await.map_err(anyhow::Error::msg)?;
                log.record(write_event(&operator, &format!("ws/{id}/handler/{account}"), "handler added (R5)"))?;
                serde_json::to_value(&s.handlers)?
            }
            Verb::RemoveHandler { id, account, reason } => {
                let cmd = WsCommand::RemoveHandler { account_id: account.clone(), on: today_jst(), reason };
                let s = reg.execute_workspace(&id, &cmd).await?;
                log.record(write_event(&operator, &format!("ws/{id}/handler/{account}"), "handler removed (R5)"))?;
                serde_json::to_value(&s.handlers)?
            }
            Verb::Import { id, index, table, dataset } => {
                let s = reg.workspace_state(&id).await?;
                // The registry refuses an ungranted request before any byte is copied.
                kiban_registry::workspace::handle(&s, &WsCommand::AddOwnData { index, table: table.clone(), rows: 0 })?;
                let ws = Workspace::open(&env.base, &id, env.sealer.clone())?;
                let rows = ws.add_own_data(&table, &dataset)?;
                let s = reg.execute_workspace(&id, &WsCommand::AddOwnData { index, table, rows }).await?;
                log.record(write_event(&operator, &format!("ws/{id}"), "own data brought in (R7)"))?;
                serde_json::to_value(&s.tables)?
            }
            Verb::Takeout { id, takeout, checker, approve, reason } => {
                let ws = Workspace::open(&env.base, &id, env.sealer.clone())?;
                let t = ws.decide_takeout(&takeout, &checker, approve, &reason, chrono::Utc::now())?;
                let cmd = WsCommand::TakeoutDecided {
                    takeout_id: takeout.clone(),
                    approved: t.status == TakeoutStatus::Approved,
                    checker: checker.clone(),
                    table_sha256: t.approval.as_ref().map(|a| a.table_sha256.clone()),
                };
                reg.execute_workspace(&id, &cmd).await?;
                log.record(write_event(
                    &Actor::new(&checker, Role::ProcessingEngineer),
                    &format!("ws-takeout/{id}/{takeout}"),
                    "decided",
                ))?;
                serde_json::to_value(&t)?
            }
            Verb::Query { id, account, sql } => {
                let s = reg.workspace_state(&id).await?;
                s.may_use(&account, today_jst())?;
                let ws = Workspace::open(&env.base, &id, env.sealer.clone())?;
                let actor = Actor::new(&account, Role::UserType2);
                match ws.query(&account, &sql, env.limits).await {
                    Ok(info) => {
                        log.record(
                            Event::new(
                                actor,
                                "cli",
                                Action::Read,
                                Object::new(ObjectKind::Clinical, format!("ws-query/{id}/{}", info.result_id)),
                            )
                            .volume(info.rows),
                        )?;
                        let page = ws.page(&info.result_id, 0, 20)?;
                        serde_json::json!({"result": info, "first_page": page.rows})
                    }
                    Err(e) => {
                        log.record(
                            Event::new(
                                actor,
                                "cli",
                                Action::Read,
                                Object::new(ObjectKind::Clinical, format!("ws-query/{id}/refused")),
                            )
                            .outcome(if e.is_outside_reach() {
                                kiban_audit::Outcome::Denied
                            } else {
                                kiban_audit::Outcome::Failure
                            }),
                        )?;
                        log.flush()?;
                        return Err(e.into());
                    }
                }
            }
        };
        reg.close().await;
        anyhow::Ok(v)
    })?;
    log.flush()?;
    if ctx.json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn write_event(actor: &Actor, id: &str, note: &str) -> Event {
    Event::new(actor.clone(), "cli", Action::Write, Object::new(ObjectKind::Ledger, id)).note(note)
}

/// For `kiban demo`: a Type II application approved and released, its workspace opened over a
/// sealed pseudonymized extract; a handler runs a query, tries to read a file (refused), requests two
/// take-outs — one passes and a checker approves it, one is refused for a small cell; then the sweep,
/// fast-forwarded past the usage period, deletes the workspace and writes the deletion record.
pub fn demo_stage(dd: &DataDir, root: &std::path::Path, cfg: &kiban_model::synth::SynthConfig) -> Result<String> {
    use kiban_registry::review::application::{ProvisionMethod, sample_application};
    use kiban_registry::review::committee::sample_committee;
    use kiban_registry::review::sample::{SampleApproval, approve_and_release};
    use kiban_registry::review::workflow::{Command, ReleaseSpec, RequestKind};
    let d = |s: &str| s.parse::<NaiveDate>().expect("valid date");
    let env = env(dd, root)?;
    let log = open_log(dd)?;
    let (dataset, manifest_sha) = demo_dataset(dd, root, cfg)?;
    let summary = crate::block_on(async {
        let reg = dd.registry().await?;
        let roster = reg.committee().await?;
        for m in sample_committee(6) {
            if !roster.iter().any(|r| r.member_id == m.member_id) {
                reg.add_committee_member(&m).await?;
            }
        }
        let n = reg.applications().await?.len();
        let mut app = sample_application();
        app.contact.name = format!("合成 三郎{n}");
        app.provision_method = ProvisionMethod::Vdi;
        let mut approval = SampleApproval::type2(d("2026-06-01"), d("2026-06-10"), d("2026-06-25"));
        approval.conditions = vec!["Visiting環境内でのみ利用し、成果物は公表物確認を経ること".into()];
        let id = approve_and_release(&reg, &app, &approval, |a| {
            a.output_takeout = "Visiting環境から公表物確認で承認された成果物のみ".into();
        })
        .await?;
        let release_id = format!("rel-{}", &id[4..]);
        let spec = ReleaseSpec {
            release_id: release_id.clone(),
            on: d("2026-07-01"),
            manifest_sha256: manifest_sha.clone(),
            items: app.extraction.items.iter().map(|i| i.item.clone()).collect(),
            media: vec![],
            policy_sha256: None,
        };
        reg.execute_review(&id, &Command::Release { spec }).await?;
        // The handler's account (two-factor login is required of every role; the demo works in-process).
        let handler_name = app.handlers[0].name.clone();
        let acct = reg
            .create_account(
                &format!("demo.visiting{n}"),
                &handler_name,
                kiban_registry::accounts::AccountRole::Handler,
                "kiban-demo",
                chrono::Utc::now(),
            )
            .await?;
        let ws_state = open_workspace(
            &reg,
            &env,
            &id,
            std::slice::from_ref(&acct.account_id),
            &release_id,
            &[("claims".into(), dataset.clone())],
            d("2026-07-02"),
        )
        .await
        .map_err(anyhow::Error::msg)?;
        let wid = ws_state.workspace_id.clone();
        let on = d("2026-07-03");
        reg.workspace_state(&wid).await?.may_use(&acct.account_id, on)?;
        let ws = Workspace::open(&env.base, &wid, env.sealer.clone())?;
        let who = Actor::new(&acct.account_id, Role::UserType2);
        let ev =
            |action, kind, object: String| Event::new(who.clone(), "kiban demo", action, Object::new(kind, object));
        // A query, and an attempt to read a file outside the workspace.
        let by_sex = ws
            .query(&acct.account_id, "SELECT sex, count(*) AS n FROM claims GROUP BY sex ORDER BY sex", env.limits)
            .await?;
        log.record(
            ev(Action::Read, ObjectKind::Clinical, format!("ws-query/{wid}/{}", by_sex.result_id)).volume(by_sex.rows),
        )?;
        let stolen =
            ws.query(&acct.account_id, "SELECT * FROM read_parquet('../../datasets/claims')", env.limits).await;
        let refused = match stolen {
            Err(e) if e.is_outside_reach() => e.to_string(),
            other => bail!("a file read was not refused: {other:?}"),
        };
        log.record(
            ev(Action::Read, ObjectKind::Clinical, format!("ws-query/{wid}/refused"))
                .outcome(kiban_audit::Outcome::Denied),
        )?;
        // R7: the handler brings in their own code list with a request; it waits in quarantine until
        // the creator approves its digest, then becomes a table of this workspace only.
        let own_csv = "code3,group_name\nE11,糖尿病\nE10,糖尿病\nI10,高血圧\nI11,高血圧\nE78,脂質異常症\nJ45,喘息\n";
        let bring = Bring::Data { table: "own_groups", file_name: "own_groups.csv", bytes: own_csv.as_bytes() };
        let detail = "自施設で定義した疾患群の対応表を結合したい";
        let (rs, staged) = submit_request(&reg, &ws, &wid, &acct.account_id, RequestKind::OwnData, detail, bring)
            .await
            .map_err(anyhow::Error::msg)?;
        let staged = staged.context("upload")?;
        if ws.query(&acct.account_id, "SELECT * FROM own_groups", env.limits).await.is_ok() {
            bail!("a pending upload was queryable");
        }
        let secretariat = Actor::new("demo.secretariat", Role::Secretariat);
        let index = rs.requests.len() - 1;
        let answer = RequestDecision { index, granted: true, reason: "対応表のみで個人情報を含まない" };
        decide_request(&reg, &log, &env, &wid, answer, &secretariat).await.map_err(anyhow::Error::msg)?;
        let joined = ws
            .query(
                &acct.account_id,
                "SELECT g.group_name, count(*) AS n FROM claims c JOIN own_groups g ON substr(c.icd10, 1, 3) = g.code3 \
                 GROUP BY g.group_name ORDER BY g.group_name",
                env.limits,
            )
            .await?;
        log.record(
            ev(Action::Read, ObjectKind::Clinical, format!("ws-query/{wid}/{}", joined.result_id)).volume(joined.rows),
        )?;
        let own_note = format!(
            "own data (R7) {} ({} rows, sha256 {}…) approved and joined: {} groups",
            staged.name,
            staged.rows,
            &staged.sha256[..12],
            joined.rows
        );
        let by_icd = ws
            .query(
                &acct.account_id,
                // A handful of rows: its cells are under 10 whatever the demo's size, so the check refuses it.
                "SELECT icd10, count(*) AS n FROM (SELECT icd10 FROM claims ORDER BY icd10 LIMIT 7) GROUP BY icd10 ORDER BY icd10",
                env.limits,
            )
            .await?;
        log.record(
            ev(Action::Read, ObjectKind::Clinical, format!("ws-query/{wid}/{}", by_icd.result_id)).volume(by_icd.rows),
        )?;
        // Two take-outs through the publication check.
        let decl = |dim: &str, kind: &str| {
            kiban_disclosure::decl::Declaration::from_toml(&format!(
                "title = \"demo\"\ncount_column = \"n\"\nuser_made_label = \"利用者が独自に作成・加工した資料\"\n[[dimension]]\ncolumn = \"{dim}\"\nkind = \"{kind}\"\n"
            ))
        };
        let now = chrono::Utc::now();
        let ok = ws.request_takeout(&by_sex.result_id, &acct.account_id, &decl("sex", "sex")?, now)?;
        let small = ws.request_takeout(&by_icd.result_id, &acct.account_id, &decl("icd10", "other")?, now)?;
        for t in [&ok, &small] {
            let cmd = WsCommand::TakeoutChecked {
                takeout_id: t.takeout_id.clone(),
                result_id: t.result_id.clone(),
                account_id: acct.account_id.clone(),
                passed: t.status == TakeoutStatus::AwaitingApproval,
            };
            reg.execute_workspace(&wid, &cmd).await?;
            log.record(ev(Action::Write, ObjectKind::Release, format!("ws-takeout/{wid}/{}", t.takeout_id)))?;
        }
        if small.status != TakeoutStatus::Refused {
            bail!("the small-cell table was not refused: {:?} ({} rows)", small.status, by_icd.rows);
        }
        let approved = ws.decide_takeout(&ok.takeout_id, "demo.checker", true, "", now)?;
        let a = approved.approval.clone().context("approval")?;
        reg.execute_workspace(
            &wid,
            &WsCommand::TakeoutDecided {
                takeout_id: ok.takeout_id.clone(),
                approved: true,
                checker: "demo.checker".into(),
                table_sha256: Some(a.table_sha256.clone()),
            },
        )
        .await?;
        let (bytes, _) = ws.approved_output(&ok.takeout_id)?;
        std::fs::write(root.join("..").join("visiting-approved-output.csv"), &bytes)?;
        // The period ends: the sweep (fast-forwarded) closes and deletes the workspace.
        let ended = sweep(&reg, &log, &env, d("2028-07-01")).await.map_err(anyhow::Error::msg)?;
        let deleted = ended.iter().find(|e| e["workspace_id"] == wid.as_str()).context("workspace not swept")?;
        reg.close().await;
        anyhow::Ok(format!(
            "Visiting環境 workspace {wid}: query {} rows; file read refused ({}); {own_note}; take-outs: {} approved by checker, {} refused for a small cell ({}); swept at period end: {} files deleted, ledger {}",
            by_sex.rows,
            refused.chars().take(40).collect::<String>(),
            ok.takeout_id,
            small.takeout_id,
            small.findings.first().map(|f| f.chars().take(80).collect::<String>()).unwrap_or_default(),
            deleted["deleted"]["files"],
            deleted["ledger_entry"].as_str().unwrap_or("-"),
        ))
    })?;
    log.flush()?;
    Ok(summary)
}

/// The demo's released dataset: a pseudonymized research extract (tokens instead of ids, no names or
/// insurer numbers), sealed at rest under `<data-dir>/datasets/`. Returns its directory and the
/// manifest's SHA-256.
fn demo_dataset(
    dd: &DataDir,
    root: &std::path::Path,
    cfg: &kiban_model::synth::SynthConfig,
) -> Result<(PathBuf, String)> {
    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::{Field, Schema};
    use sha2::{Digest, Sha256};
    let chunk = kiban_model::synth::generate_chunk(cfg, 0..cfg.patients.min(3_000));
    let b = kiban_model::synth::research_extract(&chunk);
    let ids =
        b.column_by_name("patient_id").context("patient_id")?.as_any().downcast_ref::<StringArray>().context("utf8")?;
    let salt: [u8; 16] = rand::random();
    let tokens: StringArray = (0..ids.len())
        .map(|i| Some(hex::encode(&Sha256::new().chain_update(salt).chain_update(ids.value(i)).finalize()[..8])))
        .collect();
    let keep = ["age", "sex", "prefecture", "admission_date", "icd10", "encounter_type"];
    let mut fields = vec![Field::new("patient_token", arrow::datatypes::DataType::Utf8, false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(tokens)];
    for k in keep {
        let (i, f) = b.schema().column_with_name(k).map(|(i, f)| (i, f.clone())).context("column")?;
        fields.push(f);
        cols.push(b.column(i).clone());
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = arrow::record_batch::RecordBatch::try_new(schema.clone(), cols)?;
    let dir = root.join("datasets").join(format!("visiting-extract-{}", hex::encode(&salt[..4])));
    let w = kiban_formats::dataset::DatasetWriter::create(
        &dir,
        "visiting-extract",
        schema,
        kiban_formats::dataset::FileFormat::Parquet,
    )?
    .sealed(dd.sealer()?);
    w.write_part("part-00000", &[batch])?;
    w.commit(serde_json::json!({"demo": "pseudonymized research extract for the Visiting environment"}))?;
    let sha = kiban_registry::ledger::sha256_hex(&std::fs::read(dir.join("manifest.json"))?);
    Ok((dir, sha))
}

/// For `kiban serve`: attaches the workspace environment and starts the hourly expiry sweep.
pub fn serve_layer<R>(
    dd: &DataDir,
    root: &std::path::Path,
    which: &str,
    st: &kiban_server::AppState,
    router: R,
) -> Result<R>
where
    R: kiban_server::workspace::WithWorkspaces,
{
    if which != "server" {
        return Ok(router);
    }
    let env = env(dd, root)?;
    kiban_server::workspace::spawn_sweeper(st.clone(), env.clone(), std::time::Duration::from_secs(3600));
    Ok(router.with_workspaces(env))
}
