//! Builds what the public site shows (K1, K2) from the clinical store, once, with the key store's
//! sealer: `<data-dir>/public/catalogue.json`, `public/dummy/<table>.csv` and `public/stats.json`.
//! The public pages read only these files — the server never opens the clinical store for an
//! anonymous visitor, and the statistics it answers were protected as one table before publication.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use kiban_disclosure::catalogue::{Catalogue, Database, RealValues, describe, dummy_csv, table_info};
use kiban_disclosure::stats::{StatsDim, StatsRelease, Unit, icd10_chapter, icd10_chapters};
use kiban_formats::Sealer;
use kiban_formats::dataset::{read_manifest, read_part};

/// Rows of dummy data per database.
pub const DUMMY_ROWS: usize = 50;

/// A failure to build the public files.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A dataset of the clinical store could not be read.
    #[error("clinical store: {0}")]
    Dataset(#[from] kiban_formats::dataset::DatasetError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io { path: path.to_owned(), source }
}

/// What a build produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Built {
    /// Databases in the catalogue.
    pub databases: usize,
    /// Cells of the statistics cube (with margins).
    pub stats_cells: usize,
    /// Primary suppressions.
    pub primary: usize,
    /// Secondary suppressions.
    pub secondary: usize,
    /// Why no statistics were published (the cube did not pass the publication check).
    pub stats_error: Option<String>,
}

/// Per-table accumulator over every batch.
#[derive(Default)]
struct Acc {
    columns: Vec<(String, String)>,
    records: u64,
    batches: u64,
    patients: HashSet<(String, String)>,
    providers: BTreeSet<String>,
    from: Option<String>,
    to: Option<String>,
    updated: Option<String>,
    real: RealValues,
}

/// Reads the clinical store under `data_dir` and writes the public files. `note` marks a store
/// of synthetic data (the demo).
pub fn build(
    data_dir: &Path,
    sealer: Option<&dyn Sealer>,
    note: Option<String>,
    at: &str,
) -> Result<Built, PublishError> {
    let clinical = data_dir.join("clinical");
    let mut accs: BTreeMap<String, Acc> = BTreeMap::new();
    // (provider, encounter id) → 入院/外来, for the statistics' encounter dimension.
    let mut enc_type: HashMap<(String, String), String> = HashMap::new();
    // (provider, patient, year, chapter, encounter id) of each diagnosis.
    let mut diags: Vec<(String, String, String, String, String)> = Vec::new();
    let mut batches: Vec<PathBuf> = match std::fs::read_dir(&clinical) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&clinical)(e)),
    };
    batches.sort();
    for b in &batches {
        let mut tables: Vec<PathBuf> = std::fs::read_dir(b)
            .map_err(io(b))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("manifest.json").is_file())
            .collect();
        // Encounters before diagnoses, so each diagnosis finds its encounter's type.
        tables.sort_by_key(|p| p.file_name().is_none_or(|n| n != "encounters"));
        for t in tables {
            let m = read_manifest(&t)?;
            let name = t.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let updated = std::fs::metadata(t.join("manifest.json"))
                .and_then(|m| m.modified())
                .ok()
                .map(|t| chrono::DateTime::<chrono::Utc>::from(t).date_naive().to_string());
            let acc = accs.entry(name.clone()).or_default();
            if acc.columns.is_empty() {
                acc.columns = m.columns.clone();
            }
            acc.batches += 1;
            acc.records += m.rows;
            acc.updated = acc.updated.clone().max(updated);
            let date_col = table_info(&name).2;
            for f in &m.files {
                for batch in read_part(&t, &m, f, sealer)? {
                    let schema = batch.schema();
                    let mut by_name: HashMap<String, Vec<Option<String>>> = HashMap::new();
                    for (i, field) in schema.fields().iter().enumerate() {
                        let vals = texts(batch.column(i));
                        let set = acc.real.entry(field.name().clone()).or_default();
                        for v in vals.iter().flatten() {
                            set.insert(v.clone());
                        }
                        by_name.insert(field.name().clone(), vals);
                    }
                    let get = |n: &str, r: usize| by_name.get(n).and_then(|v| v[r].clone()).unwrap_or_default();
                    for r in 0..batch.num_rows() {
                        let (p, pt) = (get("provider_id", r), get("patient_id", r));
                        acc.providers.insert(p.clone());
                        acc.patients.insert((p.clone(), pt.clone()));
                        if let Some(dc) = date_col {
                            let d = get(dc, r);
                            if !d.is_empty() {
                                acc.from = Some(acc.from.take().map_or(d.clone(), |x| x.min(d.clone())));
                                acc.to = Some(acc.to.take().map_or(d.clone(), |x| x.max(d.clone())));
                            }
                        }
                        match name.as_str() {
                            "encounters" => {
                                enc_type.insert((p, get("encounter_id", r)), get("encounter_type", r));
                            }
                            "diagnoses" => {
                                let d = get("diagnosis_date", r);
                                if let (Some(y), Some(ch)) = (d.get(..4), icd10_chapter(&get("icd10", r))) {
                                    diags.push((p, pt, y.to_owned(), ch.to_owned(), get("encounter_id", r)));
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    let out = data_dir.join("public");
    let dummy_dir = out.join("dummy");
    std::fs::create_dir_all(&dummy_dir).map_err(io(&dummy_dir))?;
    let mut dbs = Vec::new();
    for (name, acc) in accs {
        let (ja, en, _) = table_info(&name);
        let db = Database {
            name: name.clone(),
            title_ja: ja.into(),
            title_en: en.into(),
            patients: acc.patients.len() as u64,
            records: acc.records,
            providers: acc.providers.len() as u64,
            period_from: acc.from,
            period_to: acc.to,
            updated_on: acc.updated,
            batches: acc.batches,
            items: acc.columns.iter().map(|(c, t)| describe(c, t)).collect(),
        };
        let csv = dummy_csv(&db, DUMMY_ROWS, 1, &acc.real);
        write_atomic(&dummy_dir.join(format!("{name}.csv")), csv.as_bytes())?;
        dbs.push(db);
    }
    let cat = Catalogue { built_at: at.into(), databases: dbs, note: note.clone() };
    write_atomic(&out.join("catalogue.json"), serde_json::to_string_pretty(&cat).expect("JSON").as_bytes())?;

    // Statistics: distinct patients by year × ICD-10 chapter × 入院/外来.
    let mut years: Vec<String> = diags.iter().map(|d| d.2.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    if years.is_empty() {
        years.push(at.get(..4).unwrap_or("2026").to_owned());
    }
    let chapters = icd10_chapters();
    let types = vec!["外来".to_owned(), "入院".to_owned(), "不明".to_owned()];
    let dims = vec![
        StatsDim {
            name: "year".into(),
            label_ja: "診断年".into(),
            label_en: "Year of diagnosis".into(),
            levels: years,
        },
        StatsDim {
            name: "chapter".into(),
            label_ja: "傷病分類（ICD-10 章）".into(),
            label_en: "ICD-10 chapter".into(),
            levels: chapters,
        },
        StatsDim {
            name: "setting".into(), label_ja: "外来・入院".into(), label_en: "Setting".into(), levels: types
        },
    ];
    let units = diags.into_iter().map(|(p, pt, y, ch, e)| {
        let t = enc_type.get(&(p.clone(), e)).cloned().filter(|t| t == "外来" || t == "入院");
        Unit { levels: vec![y, ch, t.unwrap_or_else(|| "不明".into())], key: format!("{p}\u{1f}{pt}") }
    });
    let stats_path = out.join("stats.json");
    match StatsRelease::build(
        "傷病分類別 患者数（診断年×ICD-10章×外来・入院）",
        ("患者数（各セルの実人数。合計欄は各セルの延べ）", "patients (distinct per cell; totals add the cells)"),
        dims,
        units,
        note,
        at,
    ) {
        Ok(rel) => {
            write_atomic(&stats_path, serde_json::to_string(&rel).expect("JSON").as_bytes())?;
            Ok(Built {
                databases: cat.databases.len(),
                stats_cells: rel.cells.len(),
                primary: rel.primary,
                secondary: rel.secondary,
                stats_error: None,
            })
        }
        Err(e) => {
            // A cube that does not pass is not published, and an older one is withdrawn: the search
            // must never answer from statistics that no longer match the store.
            match std::fs::remove_file(&stats_path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(io(&stats_path)(err)),
            }
            Ok(Built {
                databases: cat.databases.len(),
                stats_cells: 0,
                primary: 0,
                secondary: 0,
                stats_error: Some(e.to_string()),
            })
        }
    }
}

/// Every value of a column as text (None for nulls); floats to 3 decimals so a dummy value drawn
/// the same way compares equal.
fn texts(a: &ArrayRef) -> Vec<Option<String>> {
    if let Some(f) = a.as_any().downcast_ref::<arrow::array::Float64Array>() {
        return (0..f.len()).map(|i| f.is_valid(i).then(|| format!("{:.3}", f.value(i)))).collect();
    }
    let opts = FormatOptions::default();
    let Ok(fmt) = ArrayFormatter::try_new(a.as_ref(), &opts) else {
        return vec![None; a.len()];
    };
    (0..a.len()).map(|i| a.is_valid(i).then(|| fmt.value(i).to_string())).collect()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    let tmp = path.with_extension("staging");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
