//! `kiban identity`: the identity vault and the master patient index — register, look up, review
//! (list, show, decide), merge, split, undo, pseudonym-key rotation and import, and linkage-key
//! export for a linkage the review committee approved. Every vault access is audited.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kiban_audit::{Action, Actor, AuditLog, AuditSink, Event, Object, ObjectKind, Role};
use kiban_identity::identity::IdentityInput;
use kiban_identity::mpi::{MatchConfig, Outcome, RecordId};
use kiban_identity::store::{IdentityStore, RecordView, ReviewDecision};
use kiban_model::id::PersonKey;
use kiban_server::identity::{AuditBridge, VaultRouting, linkage_approval};

use crate::Ctx;
use crate::datadir::DataDir;

/// `kiban identity`
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Register identities: a CSV file with a header naming the fields (provider_id, patient_id,
    /// name_kanji, name_kana, sex, birth_date, postal_code, address, phone, insurer_number,
    /// card_symbol, card_number, card_branch), or --synth N synthetic persons.
    Register {
        /// The CSV file.
        file: Option<PathBuf>,
        /// Register the provider records of this many synthetic persons instead.
        #[arg(long, conflicts_with = "file")]
        synth: Option<u64>,
    },
    /// Look up a provider's patient (--provider and --patient) or a person (--person pk-…).
    Lookup {
        /// Provider id.
        #[arg(long, requires = "patient")]
        provider: Option<String>,
        /// Provider-local patient id.
        #[arg(long, requires = "provider")]
        patient: Option<String>,
        /// Person key.
        #[arg(long, conflicts_with = "provider")]
        person: Option<String>,
    },
    /// The review queue: list, show an item, decide it.
    Review {
        #[command(subcommand)]
        cmd: ReviewCmd,
    },
    /// Merge person FROM into person INTO (recorded, reversible with `undo`).
    Merge {
        /// The person that disappears.
        from: String,
        /// The person that remains.
        into: String,
    },
    /// Move one record out of its person into a new person (recorded, reversible).
    Split {
        /// The record id.
        record: u32,
    },
    /// Undo the latest decision not yet undone.
    Undo {
        /// The decision id.
        decision: u64,
    },
    /// Rotate a pseudonym domain to a new random key (the old version stays for re-derivation).
    RotateKey {
        /// The domain (e.g. a release id).
        domain: String,
    },
    /// The pseudonym domain of a release: its own (tokens cannot be joined with any other release's),
    /// or with --link-to the earlier release's, which the review committee must have approved.
    ReleaseDomain {
        /// The release id.
        release: String,
        /// Reuse this earlier release's domain (linkage between releases).
        #[arg(long, requires = "application")]
        link_to: Option<String>,
        /// The application whose approval allows the linkage.
        #[arg(long, requires = "link_to")]
        application: Option<String>,
    },
    /// Import a shared linkage secret (64 hex digits on standard input) as domain linkage/DATABASE.
    ImportKey {
        /// The database (NDB, DPC, 介護DB…).
        database: String,
    },
    /// Export linkage keys (ID1, ID2) for an approved linkage, as CSV.
    LinkageExport {
        /// The application the review committee approved.
        #[arg(long)]
        application: String,
        /// The database it links with; the application must name it.
        #[arg(long)]
        database: String,
        /// Only these persons (default: everyone with a record).
        #[arg(long)]
        person: Vec<String>,
        /// Write the CSV here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ReviewCmd {
    /// Open review items.
    List,
    /// One item with both sides' identities.
    Show {
        /// The item id.
        item: u64,
    },
    /// Decide an item: merge, split or keep-apart.
    Decide {
        /// The item id.
        item: u64,
        /// merge | split | keep-apart
        decision: String,
    },
}

fn actor(role: Role) -> Actor {
    Actor::new(format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into())), role)
}

/// The identity store of a data directory, opened with its audit log.
pub struct Opened {
    /// The audit log.
    pub log: AuditLog,
    /// The store.
    pub store: IdentityStore,
    /// Who.
    pub actor: Actor,
}

impl Opened {
    /// Opens `<data-dir>/identity`; the open itself is audited.
    pub fn open(dd: &DataDir, root: &std::path::Path, actor: Actor) -> Result<Opened> {
        let key = crate::auditkey::audit_checkpoint_key(dd)?;
        let log = AuditLog::open(dd.audit_dir(), key).context("cannot open the audit log")?;
        let keys = dd.key_store()?;
        let bridge = AuditBridge { sink: &log, actor: actor.clone(), source: "kiban identity".into() };
        let store = IdentityStore::open(&root.join("identity"), keys, MatchConfig::default(), &bridge, &actor.id)
            .context("cannot open the identity store")?;
        Ok(Opened { log, store, actor })
    }
}

/// The audit hook for this command (a free function so the store can be borrowed mutably beside it).
fn bridge<'a>(log: &'a AuditLog, actor: &Actor) -> AuditBridge<'a> {
    AuditBridge { sink: log, actor: actor.clone(), source: "kiban identity".into() }
}

fn print_records(ctx: &Ctx, v: &[RecordView]) -> Result<()> {
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    if v.is_empty() {
        println!("該当なし no records");
    }
    for r in v {
        let i = &r.identity;
        println!(
            "record {:>8}  {}  {}/{}  {} ({})  {} sex {}  card {}",
            r.record,
            r.person,
            i.provider,
            i.patient,
            i.kanji,
            i.kana,
            i.birth,
            i.sex,
            if i.card[0].is_empty() { "-".to_owned() } else { i.card.join(":") }
        );
    }
    Ok(())
}

/// Runs `kiban identity`.
pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let role = match a.cmd {
        Cmd::RotateKey { .. } | Cmd::ImportKey { .. } => Role::SecurityOfficer,
        _ => Role::IntakeOperator,
    };
    let mut o = Opened::open(&dd, &ctx.data_dir, actor(role))?;
    let code = dispatch(ctx, &dd, &mut o, a.cmd);
    o.log.flush().context("cannot flush the audit log")?;
    code
}

fn dispatch(ctx: &Ctx, dd: &DataDir, o: &mut Opened, cmd: Cmd) -> Result<ExitCode> {
    let id = o.actor.id.clone();
    match cmd {
        Cmd::Register { file, synth } => {
            let inputs: Vec<IdentityInput> = match (file, synth) {
                (Some(f), _) => {
                    let mut r = csv::Reader::from_path(&f).with_context(|| format!("cannot read {}", f.display()))?;
                    let mut v = Vec::new();
                    for (i, row) in r.deserialize().enumerate() {
                        v.push(row.with_context(|| format!("{} row {}: not an identity record", f.display(), i + 2))?);
                    }
                    v
                }
                (None, Some(n)) => {
                    let cfg = kiban_model::synth::SynthConfig { patients: n, ..Default::default() };
                    kiban_identity::eval::synth_inputs(&cfg, 0..n).0
                }
                (None, None) => bail!("give a CSV file or --synth N"),
            };
            let t = std::time::Instant::now();
            let res = o.store.register(&bridge(&o.log, &o.actor), &id, &inputs)?;
            let secs = t.elapsed().as_secs_f64();
            let (mut det, mut matched, mut new, mut review, mut rejected) = (0, 0, 0, 0, 0);
            for r in &res {
                match r {
                    Ok(reg) => match reg.outcome {
                        Outcome::Deterministic => det += 1,
                        Outcome::Matched { .. } => matched += 1,
                        Outcome::New => new += 1,
                        Outcome::Review { .. } => review += 1,
                    },
                    Err(e) => {
                        rejected += 1;
                        eprintln!("却下 rejected: {e}");
                    }
                }
            }
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({"records": res.len(), "deterministic": det, "matched": matched, "new": new,
                        "review": review, "rejected": rejected, "seconds": secs})
                );
            } else {
                println!(
                    "登録 registered {} records in {secs:.2} s: {det} by rule, {matched} by score, {new} new persons, \
                     {review} to review, {rejected} rejected",
                    res.len() - rejected
                );
            }
            Ok(if rejected > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
        }
        Cmd::Lookup { provider, patient, person } => {
            let v = match (provider, patient, person) {
                (Some(pr), Some(pa), _) => o.store.lookup_source(&bridge(&o.log, &o.actor), &id, &pr, &pa)?,
                (_, _, Some(p)) => o.store.lookup_person(&bridge(&o.log, &o.actor), &id, PersonKey::parse(&p)?)?,
                _ => bail!("give --provider and --patient, or --person"),
            };
            print_records(ctx, &v)?;
            if !ctx.json
                && let Some(p) = v.first().and_then(|r| PersonKey::parse(&r.person).ok())
            {
                for e in o.store.public_expense_ids(&bridge(&o.log, &o.actor), &id, p)? {
                    let recipient = e.recipient.as_ref().map_or("", |r| r.as_str());
                    println!(
                        "公費 public expense ({}/{}): 負担者番号 payer {}  受給者番号 recipient {recipient}",
                        e.provider_id,
                        e.patient_id,
                        e.payer.as_str()
                    );
                }
            }
            Ok(if v.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Cmd::Review { cmd: ReviewCmd::List } => {
            let q = o.store.review_queue();
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&q)?);
            } else {
                println!("確認待ち open review items: {}", q.len());
                for i in q {
                    println!(
                        "item {:>6}  record {:>8}  candidate {}  score {:.1}",
                        i.id, i.record.0, i.candidate, i.score
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Review { cmd: ReviewCmd::Show { item } } => {
            let v = o.store.review_detail(&bridge(&o.log, &o.actor), &id, item)?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("item {} score {:.1} (decided by {:?})", v.item.id, v.item.score, v.item.decided_by);
                println!("新規 new record:");
                print_records(ctx, &v.record)?;
                println!("候補 candidate {}:", v.item.candidate);
                print_records(ctx, &v.candidate)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Review { cmd: ReviewCmd::Decide { item, decision } } => {
            let d = ReviewDecision::parse(&decision)
                .with_context(|| format!("decision {decision:?}: must be merge, split or keep-apart"))?;
            let n = o.store.decide(&bridge(&o.log, &o.actor), &id, item, d)?;
            println!("決定 decision {n} recorded for item {item} ({decision}); undo with `kiban identity undo {n}`");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Merge { from, into } => {
            let n =
                o.store.merge(&bridge(&o.log, &o.actor), &id, PersonKey::parse(&from)?, PersonKey::parse(&into)?)?;
            println!("統合 merged {from} into {into}: decision {n}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Split { record } => {
            let (n, to) = o.store.split(&bridge(&o.log, &o.actor), &id, RecordId(record))?;
            println!("分離 split record {record} into new person {to}: decision {n}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Undo { decision } => {
            o.store.undo(&bridge(&o.log, &o.actor), &id, decision)?;
            println!("取消 decision {decision} undone");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::RotateKey { domain } => {
            let v = o.store.keys_mut().rotate(&domain)?.version();
            o.log.record(
                Event::new(o.actor.clone(), "kiban identity", Action::KeyUse, Object::new(ObjectKind::Key, &domain))
                    .note(format!("rotated to v{v}")),
            )?;
            println!("鍵更新 domain {domain} now uses key version {v}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ReleaseDomain { release, link_to, application } => {
            let linkage = match (link_to, application) {
                (Some(earlier), Some(app)) => {
                    let approved = crate::block_on(async {
                        let reg = dd.registry().await?;
                        let st = reg.application_state(&app).await;
                        reg.close().await;
                        anyhow::Ok(st?.phase == Some(kiban_registry::review::workflow::Phase::Approved))
                    })?;
                    if !approved {
                        bail!(
                            "linkage with release {earlier} refused: application {app} is not approved (承諾されていません)"
                        );
                    }
                    Some(kiban_identity::release::LinkageDecision { earlier_release: earlier, decision: app })
                }
                _ => None,
            };
            let (_, d) = kiban_identity::release::release_key(o.store.keys_mut(), &release, linkage.as_ref())?;
            o.log.record(
                Event::new(o.actor.clone(), "kiban identity", Action::KeyUse, Object::new(ObjectKind::Key, &d.domain))
                    .note(format!("release {release} domain (linked to {:?})", d.linked_to)),
            )?;
            if ctx.json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                println!(
                    "公開単位 release {release}: pseudonym domain {} (root key v{}){}",
                    d.domain,
                    d.root_version,
                    d.linked_to.as_ref().map_or(String::new(), |l| format!(", linked to {l} by {:?}", d.decision))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ImportKey { database } => {
            let mut text = zeroize::Zeroizing::new(String::new());
            std::io::stdin().read_to_string(&mut text).context("cannot read the secret from standard input")?;
            let domain = format!("linkage/{}", database.trim());
            let v = o.store.keys_mut().import_domain_key(&domain, &text)?.version();
            o.log.record(
                Event::new(o.actor.clone(), "kiban identity", Action::Configure, Object::new(ObjectKind::Key, &domain))
                    .note(format!("imported as v{v}")),
            )?;
            println!("鍵登録 linkage secret imported as {domain} v{v}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::LinkageExport { application, database, person, out } => {
            let approval = crate::block_on(async {
                let reg = dd.registry().await?;
                let r = linkage_approval(&reg, &application, &database).await;
                reg.close().await;
                anyhow::Ok(r)
            })?
            .map_err(|e| anyhow::anyhow!("linkage-key export refused: {e}"))?;
            let persons = person.iter().map(|p| PersonKey::parse(p)).collect::<Result<Vec<_>, _>>()?;
            let rows = o.store.linkage_export(
                &bridge(&o.log, &o.actor),
                &id,
                &approval,
                if persons.is_empty() { None } else { Some(&persons) },
            )?;
            let mut csv = String::from("person,id1,id2,error\n");
            let mut failed = 0;
            for r in &rows {
                let err: Vec<String> = [r.id1.as_ref().err(), r.id2.as_ref().and_then(|x| x.as_ref().err())]
                    .into_iter()
                    .flatten()
                    .map(|e| format!("{}:{}", e.field, e.rule_id))
                    .collect();
                failed += usize::from(!err.is_empty());
                csv.push_str(&format!(
                    "{},{},{},{}\n",
                    r.person,
                    r.id1.as_deref().unwrap_or(""),
                    r.id2.as_ref().and_then(|x| x.as_deref().ok()).unwrap_or(""),
                    err.join(";")
                ));
            }
            match out {
                Some(p) => {
                    std::fs::write(&p, csv).with_context(|| format!("cannot write {}", p.display()))?;
                    eprintln!(
                        "連結キー linkage keys for {} persons written to {} ({failed} without a key)",
                        rows.len(),
                        p.display()
                    );
                }
                None => std::io::stdout().write_all(csv.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The CLI's identity vault for intake and deletion (issue 4 item 1, P7): the store behind a mutex
/// beside its audit log, lent to the registry as a [`VaultRouting`].
pub struct IntakeVault {
    log: AuditLog,
    store: std::sync::Mutex<IdentityStore>,
    actor: Actor,
}

impl IntakeVault {
    /// Opens the data directory's identity store for intake (the open is audited).
    pub fn open(dd: &DataDir, root: &std::path::Path) -> Result<IntakeVault> {
        Self::open_as(dd, root, actor(Role::IntakeOperator))
    }

    /// Opens it for a given actor (the demo runs as the system).
    pub fn open_as(dd: &DataDir, root: &std::path::Path, actor: Actor) -> Result<IntakeVault> {
        let o = Opened::open(dd, root, actor)?;
        Ok(IntakeVault { log: o.log, store: std::sync::Mutex::new(o.store), actor: o.actor })
    }

    /// The audit hook of this vault's accesses.
    pub fn audit(&self) -> AuditBridge<'_> {
        bridge(&self.log, &self.actor)
    }

    /// The registry's view of the vault, auditing through `audit` (from [`IntakeVault::audit`]).
    pub fn routing<'a>(&'a self, audit: &'a AuditBridge<'a>) -> VaultRouting<'a> {
        VaultRouting { store: &self.store, audit, actor: self.actor.id.clone() }
    }

    /// Persons and records in the vault now.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.store.lock().unwrap_or_else(|p| p.into_inner());
        (s.mpi().person_count(), s.mpi().record_count())
    }

    /// Flushes the audit log.
    pub fn finish(self) -> Result<()> {
        self.log.flush().context("cannot flush the audit log")
    }
}

/// For `kiban serve`: the main server gets the identity store (opened once, audited as kiban
/// itself); the gateways never do.
pub fn serve_layer<R>(
    dd: &DataDir,
    root: &std::path::Path,
    which: &str,
    audit: &dyn kiban_audit::AuditSink,
    router: R,
) -> Result<R>
where
    R: kiban_server::identity::WithStore,
{
    if which != "server" {
        return Ok(router);
    }
    // The server's own audit log: a process holds one writer of the log, never two.
    let actor = Actor::system();
    let bridge = AuditBridge { sink: audit, actor: actor.clone(), source: "kiban serve".into() };
    let store =
        IdentityStore::open(&root.join("identity"), dd.key_store()?, MatchConfig::default(), &bridge, &actor.id)
            .context("cannot open the identity store")?;
    Ok(router.with_identity_store(store))
}

/// For `kiban demo`: the gate stage registered the providers' identities into the data directory's
/// vault (registering the synthetic population here only when it did not), then the store is
/// reopened (the index is rebuilt from the vault), one lookup must answer the same, and one review
/// item is merged and undone.
pub fn demo(dd: &DataDir, root: &std::path::Path, cfg: &kiban_model::synth::SynthConfig) -> Result<String> {
    let n = cfg.patients.min(20_000);
    let actor = Actor::system();
    let (probe, first, regs) = {
        let mut o = Opened::open(dd, root, actor.clone())?;
        let mut regs = o.store.mpi().record_count();
        let probe = if regs > 0 {
            // A source the intake registered: the first provider's first synthetic patient that has one.
            let (inputs, _) = kiban_identity::eval::synth_inputs(cfg, 0..n.min(100));
            inputs
                .into_iter()
                .find(|i| !o.store.mpi().lookup(&i.provider_id, &i.patient_id).is_empty())
                .context("none of the first synthetic patients reached the vault through intake")?
        } else {
            let (inputs, _) = kiban_identity::eval::synth_inputs(cfg, 0..n);
            let res = o.store.register(&bridge(&o.log, &o.actor), &actor.id, &inputs)?;
            regs = res.iter().filter(|r| r.is_ok()).count();
            inputs.into_iter().next().context("empty population")?
        };
        let v = o.store.lookup_source(&bridge(&o.log, &o.actor), &actor.id, &probe.provider_id, &probe.patient_id)?;
        o.log.flush()?;
        (probe, v.into_iter().map(|r| r.person).collect::<Vec<_>>(), regs)
    };
    let t = std::time::Instant::now();
    let mut o = Opened::open(dd, root, actor.clone())?;
    let reopen = t.elapsed().as_secs_f64();
    let again: Vec<String> = o
        .store
        .lookup_source(&bridge(&o.log, &o.actor), &actor.id, &probe.provider_id, &probe.patient_id)?
        .into_iter()
        .map(|r| r.person)
        .collect();
    if again != first {
        bail!("the identity store answered differently after reopening: {first:?} vs {again:?}");
    }
    let mut undone = 0;
    if let Some(item) = o.store.review_queue().first().map(|i| i.id) {
        let d = o.store.decide(&bridge(&o.log, &o.actor), &actor.id, item, ReviewDecision::Merge)?;
        o.store.undo(&bridge(&o.log, &o.actor), &actor.id, d)?;
        undone = 1;
    }
    o.log.flush()?;
    Ok(format!(
        "本人確認情報庫 identity vault: {regs} records, {} persons, reopened in {reopen:.2} s with the same answers, \
         {} review items open ({undone} merged and undone), every access audited",
        o.store.mpi().person_count(),
        o.store.review_queue().len()
    ))
}
