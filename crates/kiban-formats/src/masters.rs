//! Code masters: receipt files carry codes only (傷病名コード, レセ電 医薬品コード), so a reader needs
//! the master to name them and map them to ICD-10 / YJ codes. A master is a UTF-8 CSV
//! `code,name,canonical[,extra]` (the 支払基金 masters reduced to these columns, or the ones
//! `kiban synth --format uke` writes beside its files).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

/// One master entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterEntry {
    /// Name.
    pub name: String,
    /// Canonical code (ICD-10 for diseases, YJ for drugs).
    pub canonical: String,
    /// Extra column (drug route).
    pub extra: String,
}

/// A code master.
#[derive(Debug, Clone, Default)]
pub struct Master {
    // foldhash: looked up once per receipt line, where SipHash showed in profiles.
    by_code: HashMap<String, MasterEntry, foldhash::fast::RandomState>,
    by_canonical: HashMap<String, String, foldhash::fast::RandomState>,
}

impl Master {
    /// Adds an entry.
    pub fn insert(&mut self, code: &str, name: &str, canonical: &str, extra: &str) {
        self.by_canonical.entry(format!("{canonical}\t{name}")).or_insert_with(|| code.to_owned());
        self.by_code.insert(
            code.to_owned(),
            MasterEntry { name: name.to_owned(), canonical: canonical.to_owned(), extra: extra.to_owned() },
        );
    }
    /// Looks a code up.
    pub fn get(&self, code: &str) -> Option<&MasterEntry> {
        self.by_code.get(code)
    }
    /// The code of a canonical code and name, if listed.
    pub fn code_of(&self, canonical: &str, name: &str) -> Option<&str> {
        self.by_canonical.get(&format!("{canonical}\t{name}")).map(String::as_str)
    }
    /// Entries.
    pub fn len(&self) -> usize {
        self.by_code.len()
    }
    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }
    /// Loads a master CSV; a bad line is an error naming the line.
    pub fn load(path: &Path) -> Result<Master, String> {
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut m = Master::default();
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| format!("{}: line {}: {e}", path.display(), i + 1))?;
            let line = line.trim_start_matches('\u{feff}');
            if i == 0 && line.starts_with("code,") || line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < 3 {
                return Err(format!("{}: line {}: expected code,name,canonical", path.display(), i + 1));
            }
            m.insert(f[0], f[1], f[2], f.get(3).copied().unwrap_or(""));
        }
        Ok(m)
    }
    /// Writes the master as CSV, sorted by code.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(w, "code,name,canonical,extra")?;
        let mut v: Vec<_> = self.by_code.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        for (c, e) in v {
            writeln!(w, "{c},{},{},{}", e.name, e.canonical, e.extra)?;
        }
        w.flush()
    }
}

/// The masters a receipt reader uses.
#[derive(Debug, Clone, Default)]
pub struct Masters {
    /// 傷病名マスター: code → name, ICD-10.
    pub disease: Master,
    /// 医薬品マスター: レセ電 code → name, YJ code, route.
    pub drug: Master,
    /// 診療行為マスター: code → name (optional: a procedure not in it keeps its code, name empty).
    pub procedure: Master,
    /// 特定器材マスター: code → name (optional, as `procedure`).
    pub material: Master,
}

impl Masters {
    /// Loads `disease.csv` and `drug.csv` from a directory, and `procedure.csv` and `material.csv`
    /// when present.
    pub fn load_dir(dir: &Path) -> Result<Masters, String> {
        let optional = |name: &str| {
            let p = dir.join(name);
            if p.exists() { Master::load(&p) } else { Ok(Master::default()) }
        };
        Ok(Masters {
            disease: Master::load(&dir.join("disease.csv"))?,
            drug: Master::load(&dir.join("drug.csv"))?,
            procedure: optional("procedure.csv")?,
            material: optional("material.csv")?,
        })
    }
    /// Saves them to a directory (the optional masters only when they have entries).
    pub fn save_dir(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        self.disease.save(&dir.join("disease.csv"))?;
        self.drug.save(&dir.join("drug.csv"))?;
        for (m, name) in [(&self.procedure, "procedure.csv"), (&self.material, "material.csv")] {
            if !m.is_empty() {
                m.save(&dir.join(name))?;
            }
        }
        Ok(())
    }
}

/// 診療科コード (receipt 別表) ↔ name, for the departments kiban meets.
pub const DEPARTMENTS: [(&str, &str); 14] = [
    ("01", "内科"),
    ("02", "精神科"),
    ("05", "呼吸器科"),
    ("06", "消化器科"),
    ("08", "循環器内科"),
    ("09", "小児科"),
    ("10", "外科"),
    ("11", "整形外科"),
    ("14", "脳神経外科"),
    ("19", "皮膚科"),
    ("20", "泌尿器科"),
    ("23", "産婦人科"),
    ("26", "眼科"),
    ("27", "耳鼻咽喉科"),
];

/// Department name of a code (the code itself when unknown, so nothing is lost).
pub fn department_name(code: &str) -> &str {
    DEPARTMENTS.iter().find(|d| d.0 == code).map_or(code, |d| d.1)
}

/// Department code of a name (`""` when unknown).
pub fn department_code(name: &str) -> &'static str {
    DEPARTMENTS.iter().find(|d| d.1 == name).map_or("", |d| d.0)
}
