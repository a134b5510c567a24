//! SS-MIX2 standardized storage: a directory tree of one HL7 message per file.
//!
//! Layout: `<root>/<id[0..3]>/<id[3..6]>/<patient id>/<YYYYMMDD or ->/<data kind>/<file>` with file
//! names `<patient id>_<YYYYMMDD or ->_<data kind>_<order no>_<timestamp 17>_<department>_<flag>`.
//! Condition flag `0` is a live message and `1` one the provider deleted logically. The walker
//! visits files in sorted order one at a time (memory bounded by the largest message), checks the
//! path against the message (patient id, day), and quarantines anything it cannot place: stray
//! files, malformed names, deleted messages (never taken in silently).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::canonical::{Collected, Quarantined, Record, Sink, by_patient};
use crate::hl7::{self, Origin};

/// The data kinds SS-MIX2 defines that kiban reads, and kiban's own `DFT-01` (receipt-side data:
/// procedures, materials, 公費, receipts as DFT^P03; SS-MIX2 defines no kind for them). Other
/// kinds are quarantined as unsupported.
pub const KINDS: [&str; 14] = [
    "ADT-00", "ADT-01", "ADT-12", "ADT-21", "ADT-22", "ADT-31", "ADT-32", "PPR-01", "OMP-01", "OMP-11", "OML-11",
    "OUL-01", "ORU-01", "DFT-01",
];

/// Counts of one walk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WalkStats {
    /// Files visited.
    pub files: u64,
    /// Messages read.
    pub messages: u64,
}

fn parse_name(name: &str) -> Result<[&str; 7], String> {
    let parts: Vec<&str> = name.split('_').collect();
    if parts.len() != 7 {
        return Err(format!("file name has {} parts separated by _, SS-MIX2 names have 7", parts.len()));
    }
    let p: [&str; 7] = parts.try_into().expect("7 parts");
    if p[1] != "-" && chrono::NaiveDate::parse_from_str(p[1], "%Y%m%d").is_err() {
        return Err(format!("day {:?} in the file name is not YYYYMMDD or -", p[1]));
    }
    if p[4].len() != 17 || !p[4].bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("timestamp {:?} in the file name is not 17 digits", p[4]));
    }
    if !matches!(p[6], "0" | "1") {
        return Err(format!("condition flag {:?} is not 0 or 1", p[6]));
    }
    Ok(p)
}

/// Visits the files under `dir` in sorted order, one directory listing in memory at a time (a
/// storage of millions of files never has its whole file list in memory).
fn visit(dir: &Path, root: &Path, sink: &mut dyn Sink, f: &mut dyn FnMut(&Path, &mut dyn Sink)) {
    let mut entries: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(it) => it.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            let rel = dir.strip_prefix(root).unwrap_or(dir).display().to_string();
            sink.quarantine(Quarantined::new(rel, "directory", "directory", format!("cannot read: {e}"), ""));
            return;
        }
    };
    entries.sort();
    for p in entries {
        if p.is_dir() {
            visit(&p, root, sink, f);
        } else {
            f(&p, sink);
        }
    }
}

/// Walks a storage root for one provider, streaming every message's records into `sink`.
pub fn walk(root: &Path, provider_id: &str, sink: &mut dyn Sink) -> WalkStats {
    let mut stats = WalkStats::default();
    visit(root, root, sink, &mut |path, sink| read_file(root, path, provider_id, sink, &mut stats));
    stats
}

fn read_file(root: &Path, path: &Path, provider_id: &str, sink: &mut dyn Sink, stats: &mut WalkStats) {
    stats.files += 1;
    let rel = path.strip_prefix(root).unwrap_or(path).display().to_string();
    let q = |sink: &mut dyn Sink, field: &str, problem: String| {
        sink.quarantine(Quarantined::new(rel.clone(), "file", field, problem, ""));
    };
    let comps: Vec<String> = path
        .strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if comps.len() != 6 {
        return q(sink, "path", format!("not at <id3>/<id3>/<patient>/<day>/<kind>/<file> ({} levels)", comps.len()));
    }
    let name = &comps[5];
    let p = match parse_name(name) {
        Ok(p) => p,
        Err(e) => return q(sink, "file name", e),
    };
    let pid = &comps[2];
    if p[0] != pid || p[1] != comps[3] || p[2] != comps[4] {
        let problem = format!("name {name:?} does not match its directory {}/{}/{}", pid, comps[3], comps[4]);
        return q(sink, "file name", problem);
    }
    // By characters: an id of 4 or 5 characters has a short second prefix (`P0001` → `P00/01_`).
    let (a, b): (String, String) = (pid.chars().take(3).collect(), pid.chars().skip(3).take(3).collect());
    let (a, b) = (a.as_str(), b.as_str());
    let pad = |s: &str| if s.is_empty() { "-".to_string() } else { format!("{s:_<3}") };
    if comps[0] != a && comps[0] != pad(a) || comps[1] != b && comps[1] != pad(b) {
        let problem = format!("patient {pid} is filed under {}/{} instead of its id prefix", comps[0], comps[1]);
        return q(sink, "path", problem);
    }
    if !KINDS.contains(&p[2]) {
        return q(sink, "data kind", format!("data kind {} is not one kiban reads", p[2]));
    }
    if p[6] == "1" {
        return q(sink, "condition flag", "logically deleted by the provider (flag 1): not taken in".into());
    }
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => return q(sink, "file", format!("cannot read: {e}")),
    };
    // Read into a small buffer first: the records must belong to the patient the path names.
    let mut one = Collected::default();
    stats.messages += hl7::read_bytes(&bytes, &Origin { file: &rel, provider_id }, &mut one);
    for qq in one.quarantined {
        sink.quarantine(qq);
    }
    for r in one.records {
        if r.patient_id() != pid {
            let problem = format!("PID-3 {} differs from the patient directory {pid}", r.patient_id());
            sink.quarantine(Quarantined::new(rel.clone(), "message 1", "PID-3", problem, ""));
        } else {
            sink.record(r);
        }
    }
}

/// What [`write`] wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WriteStats {
    /// Files written.
    pub files: u64,
    /// Records that could not be written (a character outside JIS X 0208), with the reason.
    pub refused: Vec<String>,
}

/// Writes records as an SS-MIX2 storage under `root` (one provider's records).
pub fn write(root: &Path, records: &[Record]) -> std::io::Result<WriteStats> {
    let mut stats = WriteStats::default();
    for (_, pid, recs) in by_patient(records) {
        let base = root.join(id_dir(&pid, 0)).join(id_dir(&pid, 3)).join(&pid);
        let mut seq = BTreeMap::<String, u64>::new();
        for m in hl7::messages_for_patient(&recs) {
            let day = m.day.map_or("-".to_owned(), |d| d.format("%Y%m%d").to_string());
            let dir = base.join(&day).join(m.kind);
            fs::create_dir_all(&dir)?;
            let n = seq.entry(day.clone()).or_default();
            *n += 1;
            let ts = format!("{}{:09}", m.day.map_or("20250401".into(), |d| d.format("%Y%m%d").to_string()), *n);
            let order = if m.order.is_empty() { "-".to_owned() } else { m.order.replace('_', "-") };
            let name = format!("{pid}_{day}_{}_{order}_{ts}_{}_0", m.kind, m.department);
            match hl7::encode_message(&m.text) {
                Ok(bytes) => {
                    fs::write(dir.join(name), bytes)?;
                    stats.files += 1;
                }
                Err(e) => stats.refused.push(format!("{pid} {}: {e}", m.kind)),
            }
        }
    }
    Ok(stats)
}

fn id_dir(pid: &str, at: usize) -> String {
    let s: String = pid.chars().skip(at).take(3).collect();
    if s.is_empty() { "-".into() } else { format!("{s:_<3}") }
}
