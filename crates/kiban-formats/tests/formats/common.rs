//! Shared helpers: a small synthetic population as canonical records, and the normal forms two
//! formats are compared in.

use kiban_formats::Record;
use kiban_formats::canonical::records_from_synth;
use kiban_model::synth::{SynthConfig, generate_chunk};

/// Canonical records of a small synthetic population (all providers).
pub fn synth_records(patients: u64) -> Vec<Record> {
    let cfg = SynthConfig { seed: 7, patients, ..Default::default() };
    records_from_synth(&generate_chunk(&cfg, 0..patients))
}

/// Records of one provider.
pub fn of_provider(records: &[Record], provider: &str) -> Vec<Record> {
    records.iter().filter(|r| provider_of(r) == provider).cloned().collect()
}

/// The provider of a record.
pub fn provider_of(r: &Record) -> &str {
    r.provider_id()
}

/// Sorts records into a stable order for comparison (by debug text).
pub fn sorted(mut v: Vec<Record>) -> Vec<Record> {
    v.sort_by_cached_key(|r| format!("{r:?}"));
    v
}

/// Names compared the way a format keeps them: one full-width space between family and given
/// names, full-width katakana (JIS X 0208 has no half-width forms).
pub fn name_form(s: &str) -> String {
    kiban_formats::encoding::fullwidth_katakana(s).replace(' ', "\u{3000}")
}

/// A birth date as ISO whatever form the provider wrote it in.
pub fn iso_birth(s: &str) -> String {
    kiban_model::wareki::WarekiDate::parse(s).map(|w| w.date().to_string()).unwrap_or_else(|_| s.to_owned())
}

/// A fixture directory fetched by `scripts/fetch-fixtures-formats.sh` into `<target>/fixtures/formats/`.
/// Missing: under `CI=true` the test fails; locally it is skipped with the reason printed.
pub fn fixture_dir(name: &str) -> Option<std::path::PathBuf> {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().expect("target dir").join("fixtures/formats").join(name);
    if dir.join(".complete").exists() {
        return Some(dir);
    }
    let msg = format!("fixture {} missing: run scripts/fetch-fixtures-formats.sh", dir.display());
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("skipped: {msg}");
    None
}
