//! The persistent identity store: the vault file, the master patient index rebuilt from it, and the
//! key store, behind one type that audits every access.
//!
//! Where things live (`<data-dir>/identity/`, read by this crate only):
//! - `vault.kbv` — identities and the MPI log (review items, decisions, undos, erasures) in one
//!   append-only sealed file ([`crate::vault`]), with `vault.snap`, its sealed snapshot, so an open
//!   replays only the tail. The snapshot also holds the index's state ([`Mpi::write_state`]), so
//!   an open reads it and applies only the records and log entries appended after it; without a
//!   usable one the index is rebuilt from the identities (each record with the person it was
//!   registered to) and the log replayed in order ([`Mpi::restore`]). Either way, after a restart
//!   every lookup answers as before and every decision can still be undone. Writes run under the vault's lock after catching up with other processes'
//!   writes, so the server and the CLI can both hold the store.
//!
//! Every operation takes the caller's [`VaultAudit`] hook and actor, so the CLI and the HTTP server
//! record who did it; events name person keys and counts only. A write that fails half-way leaves
//! the in-memory index ahead of the file: the store then refuses further work until reopened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiban_model::id::PersonKey;
use serde::Serialize;

use crate::identity::{Identity, IdentityInput, RecordError};
use crate::keystore::{KeyStore, KeyStoreError};
use crate::linkage::LinkageKeyer;
use crate::mpi::{
    Decision, LogEntry, MatchConfig, MatchView, Mpi, MpiError, Outcome, RecordId, Registration, ReviewItem, parse_bulk,
};
use crate::normalize::FieldError;
use crate::vault::{
    AuditFailed, Refresh, StoredIdentity, StoredRef, Vault, VaultAction, VaultAudit, VaultEntry, VaultError,
    VaultEvent, content_digest,
};

pub mod public_expense;

/// What the index keeps of a stored identity: its registered person and matching view (`None` if
/// its birth date or sex does not read).
type Viewed = (PersonKey, MatchView);

/// A person's ID1 and ID2 linkage keys (or why each could not be made).
type LinkageKeys = (Result<String, FieldError>, Option<Result<String, FieldError>>);

fn view_of(s: &StoredRef<'_>) -> Option<Viewed> {
    MatchView::of_stored_ref(s).map(|v| (PersonKey::from_u64(s.person), v))
}

/// The vault file's name inside the identity directory.
pub const VAULT_FILE: &str = "vault.kbv";

/// Entries appended after the last snapshot that make the store write a new one (at least; see
/// `maybe_snapshot`).
pub const SNAPSHOT_AFTER: usize = 50_000;

/// Errors of the identity store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The vault file.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// A review operation was refused.
    #[error(transparent)]
    Mpi(#[from] MpiError),
    /// The key store.
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    /// The audit hook failed.
    #[error(transparent)]
    Audit(#[from] AuditFailed),
    /// A stored identity no longer parses (a normalization change without migration).
    #[error("stored identity record {record} does not parse: {reason}")]
    Stored {
        /// Record id.
        record: u32,
        /// The errors.
        reason: String,
    },
    /// An earlier write failed; the store must be reopened.
    #[error("an earlier write to the identity vault failed; reopen the store before continuing")]
    Poisoned,
    /// Linkage-key export without an approved linkage.
    #[error("linkage-key export refused: {0}")]
    NotApproved(String),
    /// No person with this key.
    #[error("unknown person {0}")]
    UnknownPerson(PersonKey),
}

/// A reviewer's decision on a review item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewDecision {
    /// Same person: the record's person merges into the candidate.
    Merge,
    /// The record was merged and is not that person: split it out again.
    Split,
    /// Different persons, never proposed together again.
    KeepApart,
}

impl ReviewDecision {
    /// Parses `merge`, `split` or `keep-apart`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "merge" => Some(ReviewDecision::Merge),
            "split" => Some(ReviewDecision::Split),
            "keep-apart" | "keep_apart" => Some(ReviewDecision::KeepApart),
            _ => None,
        }
    }
}

/// One identity record as shown to an operator, with the person it belongs to now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordView {
    /// Record id.
    pub record: u32,
    /// Current person (after decisions).
    pub person: String,
    /// The stored identity (canonical forms).
    pub identity: StoredIdentity,
}

/// A review item with both sides' identities, for a reviewer to decide.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewView {
    /// The item.
    pub item: ReviewItem,
    /// The new record.
    pub record: Vec<RecordView>,
    /// The candidate person's records.
    pub candidate: Vec<RecordView>,
}

/// Proof that a linkage with a public database was approved by the review committee; the only way
/// to ask for a linkage-key export. The binary or server builds it from the registry's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkageApproval {
    application: String,
    database: String,
}

impl LinkageApproval {
    /// Checks the committee's record: the application is approved (and not ended) and its ⑤
    /// "databases linked" names `database` (case-insensitive).
    pub fn check(application: &str, approved: bool, linked: &[String], database: &str) -> Result<Self, StoreError> {
        if !approved {
            return Err(StoreError::NotApproved(format!(
                "application {application} is not approved by the review committee (承諾されていません)"
            )));
        }
        if !linked.iter().any(|d| d.trim().eq_ignore_ascii_case(database.trim())) {
            return Err(StoreError::NotApproved(format!(
                "application {application} does not name {database} among its linked databases ({linked:?})"
            )));
        }
        Ok(LinkageApproval { application: application.to_owned(), database: database.trim().to_owned() })
    }

    /// The key-store domain of the shared linkage secret: `linkage/<database>`.
    pub fn domain(&self) -> String {
        format!("linkage/{}", self.database)
    }
    /// The application id.
    pub fn application(&self) -> &str {
        &self.application
    }
    /// The database.
    pub fn database(&self) -> &str {
        &self.database
    }
}

/// One row of a linkage-key export: a person and its ID1/ID2 keys (hex) or the reason none was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkageRow {
    /// The person.
    pub person: PersonKey,
    /// ID1 (kana name, birth date, sex).
    pub id1: Result<String, FieldError>,
    /// ID2 (individual insured-person number, birth date, sex); `None` without a card.
    pub id2: Option<Result<String, FieldError>>,
}

/// The opened identity store.
pub struct IdentityStore {
    dir: PathBuf,
    keys: KeyStore,
    vault: Vault,
    mpi: Mpi,
    poisoned: bool,
}

impl std::fmt::Debug for IdentityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityStore").field("dir", &self.dir).field("mpi", &self.mpi).finish()
    }
}

fn ev<'a>(
    action: VaultAction,
    actor: &'a str,
    purpose: &'a str,
    person: Option<PersonKey>,
    n: usize,
) -> VaultEvent<'a> {
    VaultEvent { action, actor, purpose, person, records: n }
}

impl IdentityStore {
    /// Opens (or creates) the store in `dir` (`<data-dir>/identity`) and rebuilds the index.
    pub fn open(
        dir: &Path,
        keys: KeyStore,
        cfg: MatchConfig,
        audit: &dyn VaultAudit,
        actor: &str,
    ) -> Result<IdentityStore, StoreError> {
        let t = std::time::Instant::now();
        let (mut vault, mpi, vault_s) = Self::open_parts(dir, &keys, cfg, audit, actor)?;
        vault.note_open_times(vault_s, t.elapsed().as_secs_f64() - vault_s);
        Ok(IdentityStore { dir: dir.to_path_buf(), keys, vault, mpi, poisoned: false })
    }

    /// Opens the vault and its index: from the snapshot's index state when it has one (then only the
    /// records and log entries appended after it are applied), else rebuilt from every identity.
    /// Also returns the seconds the vault took.
    fn open_parts(
        dir: &Path,
        keys: &KeyStore,
        cfg: MatchConfig,
        audit: &dyn VaultAudit,
        actor: &str,
    ) -> Result<(Vault, Mpi, f64), StoreError> {
        let t = std::time::Instant::now();
        let (mut vault, seen, index) = Vault::open_indexed(&dir.join(VAULT_FILE), keys, audit, actor, &view_of, true)?;
        if let Some(mut index) = index {
            // An index state that does not read (it is sealed, so only a bug could make one) is
            // not trusted: the vault is opened again and the index rebuilt from the identities.
            if let Ok(mut mpi) = Mpi::read_state(cfg, &mut index) {
                let vault_s = t.elapsed().as_secs_f64();
                for (id, person, view) in Self::current(&vault, seen)? {
                    mpi.add_restored(id, person, view)?;
                }
                for e in &vault.log()[vault.snapshot_log_len()..] {
                    mpi.replay(e.clone())?;
                }
                vault.note_index_from_snapshot();
                return Ok((vault, mpi, vault_s));
            }
            let (vault, seen) = Vault::open_visiting(&dir.join(VAULT_FILE), keys, audit, actor, &view_of)?;
            let vault_s = t.elapsed().as_secs_f64();
            let mpi = Self::index(cfg, &vault, seen)?;
            return Ok((vault, mpi, vault_s));
        }
        let vault_s = t.elapsed().as_secs_f64();
        let mpi = Self::index(cfg, &vault, seen)?;
        Ok((vault, mpi, vault_s))
    }

    /// The current version of each live record among those read, in record order.
    fn current(
        vault: &Vault,
        mut seen: Vec<(u32, Option<Viewed>)>,
    ) -> Result<Vec<(RecordId, PersonKey, MatchView)>, StoreError> {
        // Stable: of a record read twice (a later put replaced it), the later stays last.
        seen.sort_by_key(|e| e.0);
        let mut out: Vec<(RecordId, PersonKey, MatchView)> = Vec::with_capacity(seen.len());
        let mut it = seen.into_iter().peekable();
        while let Some((r, v)) = it.next() {
            if it.peek().is_some_and(|n| n.0 == r) || !vault.records().contains(r) {
                continue;
            }
            let (person, view) =
                v.ok_or_else(|| StoreError::Stored { record: r, reason: "unreadable birth date or sex".into() })?;
            out.push((RecordId(r), person, view));
        }
        Ok(out)
    }

    /// Rebuilds the index from the matching views made while the vault was read (the vault keeps
    /// no identities in memory): the current version of each live record, in record order.
    fn index(cfg: MatchConfig, vault: &Vault, seen: Vec<(u32, Option<Viewed>)>) -> Result<Mpi, StoreError> {
        let out = Self::current(vault, seen)?;
        Ok(Mpi::restore_parts(cfg, vault.next_record(), vec![out], vault.log().iter().cloned())?)
    }

    /// Catches up with what other processes wrote to the vault since this one last read it (the
    /// write lock is taken per write, so `kiban serve` and the CLI share one vault): appended
    /// entries are applied to the index; a vault rewritten by an erasure is reopened (audited).
    pub fn refresh(&mut self, audit: &dyn VaultAudit, actor: &str) -> Result<(), StoreError> {
        self.live()?;
        self.catch_up(audit, actor).inspect_err(|_| self.poisoned = true)
    }

    fn catch_up(&mut self, audit: &dyn VaultAudit, actor: &str) -> Result<(), StoreError> {
        match self.vault.refresh(&self.keys)? {
            Refresh::Same => {}
            Refresh::Appended(entries) => {
                for e in entries {
                    match e {
                        VaultEntry::Put(s) => {
                            let view = MatchView::of_stored(&s).ok_or_else(|| StoreError::Stored {
                                record: s.record,
                                reason: "unreadable birth date or sex".into(),
                            })?;
                            self.mpi.add_restored(RecordId(s.record), PersonKey::from_u64(s.person), view)?;
                        }
                        VaultEntry::Mpi(l) => self.mpi.replay(l)?,
                    }
                }
            }
            Refresh::Replaced => {
                let (mut vault, mpi, _) = Self::open_parts(&self.dir, &self.keys, self.mpi.config(), audit, actor)?;
                self.vault.pass_lock(&mut vault);
                self.mpi = mpi;
                self.vault = vault;
            }
        }
        Ok(())
    }

    /// Runs one write under the vault's lock, after catching up with other processes' writes.
    fn txn<T>(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.live()?;
        self.vault.begin()?;
        let r = match self.catch_up(audit, actor) {
            Ok(()) => f(self),
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        };
        self.vault.end();
        r
    }

    /// Registers records (see `register_locked`): parse, match, store durably, audit.
    pub fn register(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        inputs: &[IdentityInput],
    ) -> Result<Vec<Result<Registration, RecordError>>, StoreError> {
        self.txn(audit, actor, |s| s.register_locked(audit, actor, inputs))
    }

    /// Registers the identities of an intake batch: a record identical in canonical form to one the
    /// same provider registered under the same patient id is not stored again (monthly batches
    /// repeat their patients), its current person is returned; anything else is registered.
    pub fn register_intake(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        inputs: &[IdentityInput],
    ) -> Result<Vec<Result<PersonKey, RecordError>>, StoreError> {
        self.txn(audit, actor, |s| {
            let parsed = parse_bulk(inputs);
            let mut out: Vec<Result<PersonKey, RecordError>> = Vec::with_capacity(inputs.len());
            let (mut fresh_at, mut fresh) = (vec![], vec![]);
            for (i, p) in parsed.iter().enumerate() {
                match p {
                    Err(e) => out.push(Err(e.clone())),
                    Ok(id) => {
                        // Compared by the digest of the canonical fields kept per record: no vault read.
                        let digest =
                            content_digest(&StoredIdentity::new(RecordId(0), PersonKey::from_u64(0), id).as_ref());
                        let same = s
                            .mpi
                            .lookup(id.provider.as_str(), id.patient.as_str())
                            .into_iter()
                            .rev()
                            .find(|(r, p)| s.vault.records().digest(r.0) == Some(digest) && p.as_u64() != 0);
                        match same {
                            Some((_, person)) => out.push(Ok(person)),
                            None => {
                                out.push(Ok(PersonKey::from_u64(0)));
                                fresh_at.push(i);
                                fresh.push(inputs[i].clone());
                            }
                        }
                    }
                }
            }
            let regs = s.register_locked(audit, actor, &fresh)?;
            for (i, r) in fresh_at.into_iter().zip(regs) {
                out[i] = r.map(|g| g.person);
            }
            Ok(out)
        })
    }

    /// Decides a review item; returns the decision id (undo it with [`IdentityStore::undo`]).
    pub fn decide(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        item: u64,
        decision: ReviewDecision,
    ) -> Result<u64, StoreError> {
        self.txn(audit, actor, |s| s.decide_locked(audit, actor, item, decision))
    }

    /// Merges person `from` into `into`; returns the decision id.
    pub fn merge(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        from: PersonKey,
        into: PersonKey,
    ) -> Result<u64, StoreError> {
        self.txn(audit, actor, |s| s.merge_locked(audit, actor, from, into))
    }

    /// Splits one record out into a new person; returns the decision id and the new person.
    pub fn split(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        record: RecordId,
    ) -> Result<(u64, PersonKey), StoreError> {
        self.txn(audit, actor, |s| s.split_locked(audit, actor, record))
    }

    /// Undoes the latest decision not yet undone (recorded, so it survives a restart).
    pub fn undo(&mut self, audit: &dyn VaultAudit, actor: &str, decision: u64) -> Result<(), StoreError> {
        self.txn(audit, actor, |s| s.undo_locked(audit, actor, decision))
    }

    /// The (provider, patient id) pairs the given identity records were submitted under, read from
    /// the sealed files (identities are not kept in memory); callers record their own audit entry.
    pub(crate) fn sources_of(&self, records: &[RecordId]) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::with_capacity(records.len());
        self.vault.visit_records(&self.keys, records.iter().map(|r| r.0), &mut |s| {
            out.push((s.provider().to_owned(), s.patient().to_owned()));
            Ok(())
        })?;
        Ok(out)
    }

    /// Erases every identity of a person (P7) from the vault file and the index.
    pub fn erase_person(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        purpose: &str,
        person: PersonKey,
    ) -> Result<usize, StoreError> {
        self.txn(audit, actor, |s| s.erase_person_locked(audit, actor, purpose, person))
    }

    /// Erases what one provider submitted under one patient id (P7), those identity records only.
    pub fn erase_source(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        purpose: &str,
        provider: &str,
        patient: &str,
    ) -> Result<usize, StoreError> {
        self.txn(audit, actor, |s| s.erase_source_locked(audit, actor, purpose, provider, patient))
    }

    /// Writes a snapshot when the entries since the last one are many, absolutely and against the
    /// vault's size (so bulk loads write O(log n) snapshots, not one per batch).
    fn maybe_snapshot(&mut self) -> Result<(), StoreError> {
        let since = self.vault.since_snapshot();
        if since >= SNAPSHOT_AFTER.max(self.vault.len() / 4) {
            self.snapshot()?;
        }
        Ok(())
    }

    /// Writes the vault's sealed snapshot now (see [`crate::vault::Vault::write_snapshot`]).
    pub fn snapshot(&mut self) -> Result<(), StoreError> {
        // With the index's state, in step with the vault here, so the next open reads it back.
        let mpi = &self.mpi;
        self.vault.write_snapshot_with_index(&self.keys, Some(&|w| mpi.write_state(w)))?;
        Ok(())
    }

    /// How the vault was opened: snapshot used, absent or ignored, entries replayed.
    pub fn open_stats(&self) -> &crate::vault::OpenStats {
        self.vault.open_stats()
    }

    fn live(&self) -> Result<(), StoreError> {
        if self.poisoned { Err(StoreError::Poisoned) } else { Ok(()) }
    }

    fn persist(&mut self, entries: Vec<VaultEntry>) -> Result<(), StoreError> {
        self.vault.append(&self.keys, entries).inspect_err(|_| self.poisoned = true)?;
        // A snapshot that cannot be written costs the next open time, never data: not an error here.
        let _ = self.maybe_snapshot();
        Ok(())
    }

    /// The index (read-only: counts, review queue, decisions).
    pub fn mpi(&self) -> &Mpi {
        &self.mpi
    }

    /// The key store (to rotate or import pseudonym keys).
    pub fn keys_mut(&mut self) -> &mut KeyStore {
        &mut self.keys
    }

    /// Registers records: parses each (rejects come back per record, never stored), matches,
    /// stores the identities and any review items in one durable frame, and audits the write.
    fn register_locked(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        inputs: &[IdentityInput],
    ) -> Result<Vec<Result<Registration, RecordError>>, StoreError> {
        self.live()?;
        let parsed = parse_bulk(inputs);
        let ok: Vec<&Identity> = parsed.iter().filter_map(|r| r.as_ref().ok()).collect();
        let regs = self.mpi.register_parsed(&ok);
        let mut entries: Vec<VaultEntry> = Vec::with_capacity(regs.len());
        for (r, id) in regs.iter().zip(&ok) {
            entries.push(VaultEntry::Put(Box::new(StoredIdentity::new(r.record, r.person, id))));
            if let Outcome::Review { item } = r.outcome {
                let it = self.mpi.review(item).expect("just opened").clone();
                entries.push(VaultEntry::Mpi(LogEntry::Review(it)));
            }
        }
        self.persist(entries)?;
        audit.record(&ev(VaultAction::Write, actor, "register", None, regs.len()))?;
        let mut regs = regs.into_iter();
        Ok(parsed.into_iter().map(|p| p.map(|_| regs.next().expect("one registration per parsed record"))).collect())
    }

    fn views(&self, records: Vec<StoredIdentity>) -> Vec<RecordView> {
        records
            .into_iter()
            .map(|s| RecordView {
                record: s.record,
                person: self.mpi.person_of(RecordId(s.record)).map(|p| p.to_string()).unwrap_or_default(),
                identity: s,
            })
            .collect()
    }

    /// The records a provider registered under its patient id, with their persons; audited.
    pub fn lookup_source(
        &self,
        audit: &dyn VaultAudit,
        actor: &str,
        provider: &str,
        patient: &str,
    ) -> Result<Vec<RecordView>, StoreError> {
        let hits = self.mpi.lookup(provider, patient);
        let ids: Vec<RecordId> = hits.iter().map(|h| h.0).collect();
        let person = hits.first().map(|h| h.1);
        Ok(self.views(self.vault.read_records(&self.keys, audit, actor, "lookup", person, &ids)?))
    }

    /// The current person key of each of a provider's patient ids (the most recent live record's
    /// person; `None` when none is registered). For intake: the clinical store gets these in place
    /// of the patient ids. Reads the index only (no identity leaves the vault); audited as one read.
    pub fn person_keys(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        provider: &str,
        patients: &[&str],
    ) -> Result<Vec<Option<PersonKey>>, StoreError> {
        self.refresh(audit, actor)?;
        let out: Vec<Option<PersonKey>> =
            patients.iter().map(|p| self.mpi.lookup(provider, p).last().map(|h| h.1)).collect();
        audit.record(&ev(VaultAction::Read, actor, "intake person keys", None, out.iter().flatten().count()))?;
        Ok(out)
    }

    /// Every record of a person; audited.
    pub fn lookup_person(
        &self,
        audit: &dyn VaultAudit,
        actor: &str,
        person: PersonKey,
    ) -> Result<Vec<RecordView>, StoreError> {
        if !self.mpi.knows_person(person) {
            return Err(StoreError::UnknownPerson(person));
        }
        let ids = self.mpi.records_of(person).to_vec();
        Ok(self.views(self.vault.read_records(&self.keys, audit, actor, "lookup", Some(person), &ids)?))
    }

    /// Open review items (record ids, person keys and scores only: no identities, no vault read).
    pub fn review_queue(&self) -> Vec<ReviewItem> {
        self.mpi.review_queue().cloned().collect()
    }

    /// A review item with both sides' identities, for deciding it; audited.
    pub fn review_detail(&self, audit: &dyn VaultAudit, actor: &str, item: u64) -> Result<ReviewView, StoreError> {
        let it = self.mpi.review(item).ok_or(MpiError::UnknownItem(item))?.clone();
        let mut ids = vec![it.record];
        ids.extend_from_slice(self.mpi.records_of(it.candidate));
        let recs = self.views(self.vault.read_records(&self.keys, audit, actor, "review", Some(it.candidate), &ids)?);
        let (record, candidate) = recs.into_iter().partition(|r| r.record == it.record.0);
        Ok(ReviewView { item: it, record, candidate })
    }

    fn log_last_decision(&mut self, audit: &dyn VaultAudit, actor: &str, purpose: &str) -> Result<u64, StoreError> {
        let d: Decision = self.mpi.decisions().last().expect("a decision was just made").clone();
        let n = match &d.kind {
            crate::mpi::DecisionKind::Merge { records, .. } => records.len(),
            crate::mpi::DecisionKind::Split { .. } => 1,
            crate::mpi::DecisionKind::KeepApart { .. } => 0,
        };
        let id = d.id;
        self.persist(vec![VaultEntry::Mpi(LogEntry::Decision(d))])?;
        audit.record(&ev(VaultAction::Decide, actor, purpose, None, n))?;
        Ok(id)
    }

    /// Decides a review item; returns the decision id (undo it with [`IdentityStore::undo`]).
    fn decide_locked(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        item: u64,
        decision: ReviewDecision,
    ) -> Result<u64, StoreError> {
        self.live()?;
        match decision {
            ReviewDecision::Merge => self.mpi.accept(item, actor)?,
            ReviewDecision::KeepApart => self.mpi.keep_apart(item, actor)?,
            ReviewDecision::Split => self.mpi.split_item(item, actor)?.0,
        };
        self.log_last_decision(audit, actor, "review decision")
    }

    /// Merges person `from` into `into`; returns the decision id.
    fn merge_locked(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        from: PersonKey,
        into: PersonKey,
    ) -> Result<u64, StoreError> {
        self.live()?;
        self.mpi.merge(from, into, None, actor)?;
        self.log_last_decision(audit, actor, "merge")
    }

    /// Splits one record out into a new person; returns the decision id and the new person.
    fn split_locked(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        record: RecordId,
    ) -> Result<(u64, PersonKey), StoreError> {
        self.live()?;
        let (_, to) = self.mpi.split(record, actor)?;
        Ok((self.log_last_decision(audit, actor, "split")?, to))
    }

    /// Undoes the latest decision not yet undone (recorded, so it survives a restart).
    fn undo_locked(&mut self, audit: &dyn VaultAudit, actor: &str, decision: u64) -> Result<(), StoreError> {
        self.live()?;
        self.mpi.undo(decision, actor)?;
        self.persist(vec![VaultEntry::Mpi(LogEntry::Undo { decision, by: actor.to_owned() })])?;
        audit.record(&ev(VaultAction::Decide, actor, "undo", None, 0))?;
        Ok(())
    }

    /// Erases every identity of a person (P7) from the vault file and the index.
    fn erase_person_locked(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        purpose: &str,
        person: PersonKey,
    ) -> Result<usize, StoreError> {
        self.live()?;
        let records = self.mpi.records_of(person).to_vec();
        // The person's 公費 numbers go with its identities (P7).
        let sources = self.sources_of(&records)?;
        public_expense::erase_sources(&self.dir, &self.keys, &sources)?;
        let n = self
            .vault
            .erase(&self.keys, audit, actor, purpose, Some(person), &records)
            .inspect_err(|_| self.poisoned = true)?;
        self.mpi.forget(&records);
        Ok(n)
    }

    /// Erases what one provider submitted under one patient id (P7 deletion at a provider's
    /// request): those identity records only; the person's records from other providers stay.
    fn erase_source_locked(
        &mut self,
        audit: &dyn VaultAudit,
        actor: &str,
        purpose: &str,
        provider: &str,
        patient: &str,
    ) -> Result<usize, StoreError> {
        self.live()?;
        let hits = self.mpi.lookup(provider, patient);
        let records: Vec<RecordId> = hits.iter().map(|h| h.0).collect();
        let person = hits.first().map(|h| h.1);
        public_expense::erase_sources(&self.dir, &self.keys, &[(provider.to_owned(), patient.to_owned())])?;
        if records.is_empty() {
            return Ok(0);
        }
        let n = self
            .vault
            .erase(&self.keys, audit, actor, purpose, person, &records)
            .inspect_err(|_| self.poisoned = true)?;
        self.mpi.forget(&records);
        Ok(n)
    }

    /// Linkage keys (L1) for `persons` (all persons with records when `None`) from each person's
    /// first live record, under the shared secret of the approved database; one audited export.
    pub fn linkage_export(
        &self,
        audit: &dyn VaultAudit,
        actor: &str,
        approval: &LinkageApproval,
        persons: Option<&[PersonKey]>,
    ) -> Result<Vec<LinkageRow>, StoreError> {
        let domain = approval.domain();
        let key = self.keys.active_domain_key(&domain)?;
        let keyer = LinkageKeyer::new(key);
        let all: Vec<PersonKey>;
        let persons = match persons {
            Some(p) => p,
            None => {
                all = self.mpi.persons_with_records();
                &all
            }
        };
        // Each person's first live record, all read in one pass over the sealed files.
        let firsts: Vec<(PersonKey, RecordId)> =
            persons.iter().filter_map(|&p| self.mpi.records_of(p).iter().min().map(|r| (p, *r))).collect();
        let mut made: HashMap<u32, Result<LinkageKeys, StoreError>> = HashMap::with_capacity(firsts.len());
        self.vault.visit_records(&self.keys, firsts.iter().map(|f| f.1.0), &mut |stored| {
            let keys = Identity::parse(&stored.to_owned().to_input())
                .map_err(|e| StoreError::Stored { record: stored.record, reason: e.to_string() })
                .map(|id| {
                    let id1 = keyer.id1(&id.kana, id.birth, id.sex).map(|k| k.to_string());
                    let id2 = id.card.as_ref().map(|c| keyer.id2(c, id.birth, id.sex).map(|k| k.to_string()));
                    (id1, id2)
                });
            made.insert(stored.record, keys);
            Ok(())
        })?;
        let mut rows = Vec::with_capacity(firsts.len());
        for (person, first) in firsts {
            let Some(keys) = made.remove(&first.0) else { continue };
            let (id1, id2) = keys?;
            rows.push(LinkageRow { person, id1, id2 });
        }
        let purpose =
            format!("linkage-key export for application {} ({})", approval.application(), approval.database());
        audit.record(&ev(VaultAction::Export, actor, &purpose, None, rows.len()))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::MemoryAudit;

    fn input(patient: &str, kanji: &str, kana: &str, birth: &str, branch: &str) -> IdentityInput {
        IdentityInput {
            provider_id: "prov-a".into(),
            patient_id: patient.into(),
            name_kanji: kanji.into(),
            name_kana: kana.into(),
            sex: "2".into(),
            birth_date: birth.into(),
            postal_code: "1000001".into(),
            address: "東京都千代田区1-2-3".into(),
            phone: "0312345678".into(),
            insurer_number: "01130012".into(),
            card_symbol: "1234".into(),
            card_number: "567".into(),
            card_branch: branch.into(),
        }
    }

    fn open(dir: &Path, cfg: MatchConfig, audit: &MemoryAudit) -> IdentityStore {
        let keys = KeyStore::open(&dir.join("keys"), None).unwrap();
        IdentityStore::open(&dir.join("identity"), keys, cfg, audit, "op").unwrap()
    }

    fn answers(s: &IdentityStore) -> Vec<(String, String)> {
        let a = MemoryAudit::default();
        ["p1", "p2", "p3", "p4"]
            .iter()
            .flat_map(|p| s.lookup_source(&a, "op", "prov-a", p).unwrap())
            .map(|v| (v.identity.patient.clone(), v.person))
            .collect()
    }

    #[test]
    fn p7_mpi_survives_a_restart_with_the_same_answers_and_review_queue() {
        let t = tempfile::tempdir().unwrap();
        KeyStore::create(&t.path().join("keys")).unwrap();
        let a = MemoryAudit::default();
        let cfg = MatchConfig { upper: 100.0, lower: 0.0, ..Default::default() };
        let before;
        {
            let mut s = open(t.path(), cfg, &a);
            let r = s
                .register(
                    &a,
                    "op",
                    &[
                        input("p1", "佐藤 花子", "サトウ ハナコ", "1985-01-02", "00"),
                        input("p2", "佐藤 花子", "ｻﾄｳ ﾊﾅｺ", "昭和60年1月2日", "00"),
                        input("p3", "佐藤 桃子", "サトウ モモコ", "1985-01-02", "01"),
                        input("bad", "佐藤 花子", "", "2月30日", "00"),
                    ],
                )
                .unwrap();
            assert_eq!(r[1].as_ref().unwrap().outcome, Outcome::Deterministic);
            assert!(matches!(r[2].as_ref().unwrap().outcome, Outcome::Review { .. }));
            let e = r[3].as_ref().unwrap_err().to_string();
            assert!(e.contains("name_kana") && e.contains("birth"), "{e}");
            before = answers(&s);
            assert_eq!(before.len(), 3);
            assert_eq!(before[0].1, before[1].1, "p1 and p2 are one person");
            assert_eq!(s.review_queue().len(), 1);
        }
        let mut s = open(t.path(), cfg, &a);
        assert_eq!(answers(&s), before);
        assert_eq!(s.mpi().record_count(), 3);
        assert_eq!(s.review_queue().len(), 1);
        // Matching continues against the restored index.
        let r = s.register(&a, "op", &[input("p4", "佐藤花子", "さとう はなこ", "1985-01-02", "0")]).unwrap();
        assert_eq!(r[0].as_ref().unwrap().person.to_string(), before[0].1);
        assert_eq!(r[0].as_ref().unwrap().record, RecordId(3));
    }

    #[test]
    fn p7_an_open_from_the_snapshots_index_state_answers_as_a_full_replay() {
        use kiban_model::synth::SynthConfig;
        let t = tempfile::tempdir().unwrap();
        KeyStore::create(&t.path().join("keys")).unwrap();
        let a = MemoryAudit::default();
        let cfg = MatchConfig::default();
        let synth = SynthConfig { patients: 900, ..Default::default() };
        {
            let mut s = open(t.path(), cfg, &a);
            s.register(&a, "op", &crate::eval::synth_inputs(&synth, 0..400).0).unwrap();
            let (p, q) = (s.mpi().person_of(RecordId(0)).unwrap(), s.mpi().person_of(RecordId(3)).unwrap());
            let d = s.merge(&a, "op", q, p).unwrap();
            s.erase_source(&a, "op", "P7 test", "prov-a", "dummy").unwrap();
            s.register(&a, "op", &crate::eval::synth_inputs(&synth, 400..600).0).unwrap();
            s.snapshot().unwrap();
            // A tail after the snapshot: records and a decision.
            s.register(&a, "op", &crate::eval::synth_inputs(&synth, 600..700).0).unwrap();
            s.undo(&a, "op", d).unwrap();
        }
        let snap = crate::vault::snapshot_path(&t.path().join("identity").join(VAULT_FILE));
        assert!(fs_len(&snap) > 0);
        let state = |s: &IdentityStore| {
            let n = s.mpi().record_count() as u32;
            let persons: Vec<Option<PersonKey>> = (0..n).map(|r| s.mpi().person_of(RecordId(r))).collect();
            (persons, s.review_queue(), s.mpi().decisions().to_vec())
        };
        let mut from_index = open(t.path(), cfg, &a);
        assert_eq!(from_index.open_stats().snapshot, crate::vault::SnapshotUse::Used);
        assert!(from_index.open_stats().index_from_snapshot, "the index was read, not rebuilt");
        let want = state(&from_index);
        let first = from_index.lookup_person(&a, "op", want.0[1].unwrap()).unwrap();
        // The same vault without its snapshot, in another directory (the two stores then diverge).
        let t2 = tempfile::tempdir().unwrap();
        for sub in ["keys", "identity"] {
            std::fs::create_dir_all(t2.path().join(sub)).unwrap();
            for e in std::fs::read_dir(t.path().join(sub)).unwrap() {
                let e = e.unwrap();
                if e.path() != snap {
                    std::fs::copy(e.path(), t2.path().join(sub).join(e.file_name())).unwrap();
                }
            }
        }
        let mut replayed = open(t2.path(), cfg, &a);
        assert_eq!(replayed.open_stats().snapshot, crate::vault::SnapshotUse::Absent);
        assert!(!replayed.open_stats().index_from_snapshot);
        assert_eq!(state(&replayed), want);
        assert_eq!(
            replayed.lookup_person(&a, "op", want.0[1].unwrap()).unwrap(),
            first,
            "identities read from the snapshot"
        );
        // Both go on matching the same way.
        let more = crate::eval::synth_inputs(&synth, 650..900).0;
        let x = from_index.register(&a, "op", &more).unwrap();
        let y = replayed.register(&a, "op", &more).unwrap();
        let kinds = |v: Vec<Result<Registration, RecordError>>| -> Vec<std::mem::Discriminant<Outcome>> {
            v.into_iter().map(|r| std::mem::discriminant(&r.unwrap().outcome)).collect()
        };
        assert_eq!(kinds(x), kinds(y));
    }

    fn fs_len(p: &Path) -> u64 {
        std::fs::metadata(p).map_or(0, |m| m.len())
    }

    #[test]
    fn p7_merge_then_undo_restores_the_previous_state_also_after_restart() {
        let t = tempfile::tempdir().unwrap();
        KeyStore::create(&t.path().join("keys")).unwrap();
        let a = MemoryAudit::default();
        let cfg = MatchConfig { upper: 100.0, lower: 0.0, ..Default::default() };
        let (item, initial) = {
            let mut s = open(t.path(), cfg, &a);
            s.register(
                &a,
                "op",
                &[
                    input("p1", "佐藤 花子", "サトウ ハナコ", "1985-01-02", "00"),
                    input("p3", "佐藤 桃子", "サトウ モモコ", "1985-01-02", "01"),
                ],
            )
            .unwrap();
            (s.review_queue()[0].id, answers(&s))
        };
        let merged = {
            let mut s = open(t.path(), cfg, &a);
            let d = s.decide(&a, "reviewer-1", item, ReviewDecision::Merge).unwrap();
            let merged = answers(&s);
            assert_eq!(merged[0].1, merged[1].1);
            assert!(s.review_queue().is_empty());
            (d, merged)
        };
        let mut s = open(t.path(), cfg, &a);
        assert_eq!(answers(&s), merged.1, "the merge survives a restart");
        s.undo(&a, "reviewer-1", merged.0).unwrap();
        assert_eq!(answers(&s), initial);
        drop(s);
        let mut s = open(t.path(), cfg, &a);
        assert_eq!(answers(&s), initial, "the undo survives a restart");
        assert_eq!(s.review_queue().len(), 1, "the item is open again");
        // Keep apart, then a direct merge is refused, also after a restart.
        s.decide(&a, "reviewer-2", item, ReviewDecision::KeepApart).unwrap();
        drop(s);
        let mut s = open(t.path(), cfg, &a);
        let (p1, p3) = (PersonKey::parse(&initial[0].1).unwrap(), PersonKey::parse(&initial[1].1).unwrap());
        assert!(matches!(s.merge(&a, "op", p3, p1), Err(StoreError::Mpi(MpiError::KeptApart(..)))));
        assert_eq!(s.mpi().decisions().len(), 2);
        assert!(s.mpi().decisions()[0].undone);
    }

    #[test]
    fn the_matching_view_rebuilt_from_the_vault_equals_the_one_from_parsing() {
        let cfg = kiban_model::synth::SynthConfig { patients: 3000, ..Default::default() };
        let (inputs, _) = crate::eval::synth_inputs(&cfg, 0..3000);
        let mut extra = input("p9", "佐藤 花子", "サトウ ハナ●", "昭和60年1月2日", "3");
        extra.card_symbol = "ａｂ 東1".into();
        let mut checked = 0;
        for i in inputs.iter().chain([&extra]) {
            let id = Identity::parse(i).unwrap();
            let stored = StoredIdentity::new(RecordId(0), PersonKey::from_u64(0), &id);
            assert_eq!(MatchView::of_stored(&stored), Some(MatchView::of(&id)), "{i:?}");
            checked += 1;
        }
        assert!(checked > 4000);
    }

    #[test]
    fn p7_erasing_a_providers_record_removes_it_from_file_and_index_for_good() {
        let t = tempfile::tempdir().unwrap();
        KeyStore::create(&t.path().join("keys")).unwrap();
        let a = MemoryAudit::default();
        let cfg = MatchConfig::default();
        {
            let mut s = open(t.path(), cfg, &a);
            s.register(
                &a,
                "op",
                &[
                    input("p1", "佐藤 花子", "サトウ ハナコ", "1985-01-02", "00"),
                    input("p2", "佐藤 花子", "ｻﾄｳ ﾊﾅｺ", "1985-01-02", "00"),
                ],
            )
            .unwrap();
            assert_eq!(s.erase_source(&a, "op", "P7 request 1", "prov-a", "p1").unwrap(), 1);
            assert!(s.lookup_source(&a, "op", "prov-a", "p1").unwrap().is_empty());
        }
        let raw = std::fs::read(t.path().join("identity").join(VAULT_FILE)).unwrap();
        assert!(raw.len() > 100);
        let mut s = open(t.path(), cfg, &a);
        assert!(s.lookup_source(&a, "op", "prov-a", "p1").unwrap().is_empty(), "erased after restart");
        assert_eq!(s.lookup_source(&a, "op", "prov-a", "p2").unwrap().len(), 1, "other records stay");
        // The erased record id is not reused, and a re-registration is a new record.
        let r = s.register(&a, "op", &[input("p1", "佐藤 花子", "サトウ ハナコ", "1985-01-02", "00")]).unwrap();
        assert_eq!(r[0].as_ref().unwrap().record, RecordId(2));
        assert_eq!(a.0.lock().unwrap().iter().filter(|e| e.0 == VaultAction::Erase).count(), 1);
    }

    #[test]
    fn a3_a_repeated_intake_identity_is_not_stored_twice() {
        let t = tempfile::tempdir().unwrap();
        KeyStore::create(&t.path().join("keys")).unwrap();
        let a = MemoryAudit::default();
        let mut s = open(t.path(), MatchConfig::default(), &a);
        let one = input("p1", "佐藤 花子", "サトウ ハナコ", "1985-01-02", "00");
        let first = s.register_intake(&a, "op", std::slice::from_ref(&one)).unwrap();
        // Next month's batch: the same identity, written differently (half-width kana): same canonical form.
        let again = IdentityInput { name_kana: "ｻﾄｳ ﾊﾅｺ".into(), ..one.clone() };
        let second = s.register_intake(&a, "op", &[again]).unwrap();
        assert_eq!(second[0].as_ref().unwrap(), first[0].as_ref().unwrap());
        assert_eq!(s.mpi().record_count(), 1, "not stored twice");
        // A moved patient: a new record, matched to the same person.
        let moved = IdentityInput { address: "大阪府大阪市北区1-1".into(), ..one };
        let third = s.register_intake(&a, "op", &[moved]).unwrap();
        assert_eq!(s.mpi().record_count(), 2);
        assert_eq!(third[0].as_ref().unwrap(), first[0].as_ref().unwrap());
        let bad = IdentityInput { name_kana: String::new(), ..input("p2", "佐藤 一郎", "", "1985-01-02", "00") };
        assert!(s.register_intake(&a, "op", &[bad]).unwrap()[0].is_err(), "rejected per record");
    }

    #[test]
    fn p7_every_access_is_audited_without_identifiers() {
        let t = tempfile::tempdir().unwrap();
        let mut ks = KeyStore::create(&t.path().join("keys")).unwrap();
        ks.import_domain_key("linkage/NDB", &hex::encode([3u8; 32])).unwrap();
        let a = MemoryAudit::default();
        let mut s = open(t.path(), MatchConfig::default(), &a);
        s.register(&a, "op", &[input("p1", "佐藤 花子", "サトウ ハナコ", "1985-01-02", "00")]).unwrap();
        let found = s.lookup_source(&a, "op", "prov-a", "p1").unwrap();
        let person = PersonKey::parse(&found[0].person).unwrap();
        assert_eq!(s.lookup_person(&a, "op", person).unwrap().len(), 1);
        let refused = LinkageApproval::check("app-1", false, &["NDB".into()], "NDB").unwrap_err();
        assert!(refused.to_string().contains("not approved"), "{refused}");
        assert!(LinkageApproval::check("app-1", true, &["DPC".into()], "NDB").is_err());
        let ok = LinkageApproval::check("app-1", true, &["ndb".into()], "NDB").unwrap();
        let rows = s.linkage_export(&a, "op", &ok, None).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id1.as_ref().unwrap().len(), 64);
        let no_secret = LinkageApproval::check("app-1", true, &["DPC".into()], "DPC").unwrap();
        assert!(matches!(s.linkage_export(&a, "op", &no_secret, None), Err(StoreError::Keys(_))));
        let events = a.0.lock().unwrap().clone();
        let actions: Vec<VaultAction> = events.iter().map(|e| e.0).collect();
        use VaultAction::*;
        assert_eq!(actions, vec![Open, Write, Read, Read, Export]);
        // Free text is only in the purpose; the rest are an action, a person key and a count.
        let shown: String = events.iter().map(|e| e.1.clone()).collect::<Vec<_>>().join("|");
        for secret in ["佐藤", "サトウ", "p1", "1985", "0312345678", "01130012"] {
            assert!(!shown.contains(secret), "audit events carry {secret}: {shown}");
        }
    }
}
