//! Aggregate tables as N-dimensional cubes with every margin, read from CSV or Parquet, long or wide.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DisclosureError;
use crate::decl::{Declaration, DimensionKind, Layout};

/// One dimension of a cube: its interior levels; the margin (total) is the extra last index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dim {
    /// Dimension name (the column name).
    pub name: String,
    /// What it is.
    pub kind: DimensionKind,
    /// Interior level labels in input order; index `levels.len()` is the total.
    pub levels: Vec<String>,
}

impl Dim {
    /// Number of positions including the total.
    pub fn size(&self) -> usize {
        self.levels.len() + 1
    }
    /// Index of the total level.
    pub fn total(&self) -> usize {
        self.levels.len()
    }
}

/// An N-dimensional table with all margins: every cell, margins included, has a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cube {
    /// Dimensions in order.
    pub dims: Vec<Dim>,
    /// Label used for margins when writing.
    pub total_label: String,
    /// Cell values, row-major over `dims` (last dimension fastest).
    pub values: Vec<i64>,
    /// Known matching patient counts per cell (O4 ①, O5 ①), if declared.
    pub patients: Option<Vec<Option<i64>>>,
    /// Facilities/insurers contributing to each cell (O3), if declared.
    pub contributors: Option<Vec<Option<i64>>>,
}

/// A reference to one cell: its coordinates as (dimension, level label) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellRef(pub Vec<(String, String)>);

impl std::fmt::Display for CellRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(d, l)| format!("{d}={l}")).collect();
        write!(f, "[{}]", parts.join(", "))
    }
}

impl Cube {
    /// Builds a cube of zeros over the given dimensions.
    pub fn zeros(dims: Vec<Dim>, total_label: &str) -> Self {
        let n = dims.iter().map(Dim::size).product();
        Cube { dims, total_label: total_label.into(), values: vec![0; n], patients: None, contributors: None }
    }

    /// Number of cells including margins.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the cube has no cells.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Row-major strides.
    pub fn strides(&self) -> Vec<usize> {
        let mut s = vec![1; self.dims.len()];
        for d in (0..self.dims.len().saturating_sub(1)).rev() {
            s[d] = s[d + 1] * self.dims[d + 1].size();
        }
        s
    }

    /// Flat index of coordinates.
    pub fn index(&self, coords: &[usize]) -> usize {
        let st = self.strides();
        coords.iter().zip(&st).map(|(c, s)| c * s).sum()
    }

    /// Coordinates of a flat index.
    pub fn coords(&self, mut idx: usize) -> Vec<usize> {
        let mut c = vec![0; self.dims.len()];
        for d in (0..self.dims.len()).rev() {
            let s = self.dims[d].size();
            c[d] = idx % s;
            idx /= s;
        }
        c
    }

    /// Level label of coordinate `c` in dimension `d`.
    pub fn label(&self, d: usize, c: usize) -> &str {
        if c == self.dims[d].total() { &self.total_label } else { &self.dims[d].levels[c] }
    }

    /// The cell reference of a flat index.
    pub fn cell_ref(&self, idx: usize) -> CellRef {
        let c = self.coords(idx);
        CellRef(
            c.iter().enumerate().map(|(d, &ci)| (self.dims[d].name.clone(), self.label(d, ci).to_string())).collect(),
        )
    }

    /// The key identifying a cell across linked tables: its non-total coordinates.
    pub fn key(&self, idx: usize) -> Vec<(String, String)> {
        let c = self.coords(idx);
        let mut k: Vec<(String, String)> = c
            .iter()
            .enumerate()
            .filter(|(d, ci)| **ci != self.dims[*d].total())
            .map(|(d, &ci)| (self.dims[d].name.clone(), self.dims[d].levels[ci].clone()))
            .collect();
        k.sort();
        k
    }

    /// Whether a cell lies on a margin (some coordinate is a total).
    pub fn is_margin(&self, idx: usize) -> bool {
        self.coords(idx).iter().enumerate().any(|(d, &c)| c == self.dims[d].total())
    }

    /// Recomputes every margin from the interior cells (sums for values and patients,
    /// the maximum of the parts for contributors, a lower bound on distinct contributors).
    pub fn fill_margins(&mut self) {
        let st = self.strides();
        for d in 0..self.dims.len() {
            let n = self.dims[d].levels.len();
            for idx in 0..self.values.len() {
                let cd = (idx / st[d]) % self.dims[d].size();
                // Pass d fills cells whose last total coordinate is d; their parts are then
                // interior in d and only carry totals of earlier (already filled) dimensions.
                if cd != n
                    || (d + 1..self.dims.len()).any(|e| (idx / st[e]) % self.dims[e].size() == self.dims[e].total())
                {
                    continue;
                }
                let base = idx - n * st[d];
                let mut sum = 0;
                for k in 0..n {
                    sum += self.values[base + k * st[d]];
                }
                self.values[idx] = sum;
                if let Some(p) = &mut self.patients {
                    let mut s = Some(0);
                    for k in 0..n {
                        s = match (s, p[base + k * st[d]]) {
                            (Some(a), Some(b)) => Some(a + b),
                            _ => None,
                        };
                    }
                    p[idx] = s;
                }
                if let Some(p) = &mut self.contributors {
                    let mut m: Option<i64> = Some(0);
                    for k in 0..n {
                        m = match (m, p[base + k * st[d]]) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            _ => None,
                        };
                    }
                    p[idx] = m;
                }
            }
        }
    }

    #[allow(clippy::needless_range_loop)]
    /// Every additivity constraint: (total cell, its interior parts) along each dimension.
    pub fn constraints(&self) -> Vec<(usize, Vec<usize>)> {
        let st = self.strides();
        let mut out = Vec::new();
        for d in 0..self.dims.len() {
            let n = self.dims[d].levels.len();
            for idx in 0..self.values.len() {
                if (idx / st[d]) % self.dims[d].size() != n {
                    continue;
                }
                let base = idx - n * st[d];
                out.push((idx, (0..n).map(|k| base + k * st[d]).collect()));
            }
        }
        out
    }
}

/// A table as read: header and string rows, before it is shaped by a declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTable {
    /// Where it came from (for errors).
    pub file: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows of fields.
    pub rows: Vec<Vec<String>>,
}

impl RawTable {
    /// Reads a CSV file (UTF-8, optional BOM), a Parquet file (`.parquet`) or a spreadsheet
    /// (`.xlsx`, `.xlsm`, `.xls`, `.ods`: the first worksheet) by extension.
    pub fn read(path: &Path) -> Result<Self, DisclosureError> {
        let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).unwrap_or_default();
        match ext.as_str() {
            "parquet" => Self::read_parquet(path),
            "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => Self::read_xlsx(path, None),
            _ => Self::read_csv(path),
        }
    }

    /// Reads the table as [`RawTable::read`] does, from the worksheet the declaration names.
    pub fn read_declared(path: &Path, decl: &Declaration) -> Result<Self, DisclosureError> {
        let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).unwrap_or_default();
        match (&decl.sheet, ext.as_str()) {
            (None, _) => Self::read(path),
            (Some(s), "xlsx" | "xlsm" | "xlsb" | "xls" | "ods") => Self::read_xlsx(path, Some(s)),
            (Some(s), _) => Err(DisclosureError::Table {
                file: path.display().to_string(),
                row: 0,
                message: format!("the declaration names sheet {s:?} but the table is not a spreadsheet"),
            }),
        }
    }

    /// Reads one worksheet (`sheet`, or the first) of a spreadsheet: the first non-empty row is the
    /// header, every later row a record (blank ones too, so they fail by row rather than vanish).
    /// Error cells, blank header names and values outside the header's columns are refused naming
    /// the sheet and the cell.
    pub fn read_xlsx(path: &Path, sheet: Option<&str>) -> Result<Self, DisclosureError> {
        use calamine::{Data, Reader, open_workbook_auto};
        let file = path.display().to_string();
        let err = |row: usize, message: String| DisclosureError::Table { file: file.clone(), row, message };
        let mut wb = open_workbook_auto(path).map_err(|e| err(0, format!("cannot open the workbook: {e}")))?;
        let names = wb.sheet_names();
        let name = match sheet {
            Some(s) => names
                .iter()
                .find(|n| n.as_str() == s)
                .cloned()
                .ok_or_else(|| err(0, format!("no sheet {s:?} (sheets: {names:?})")))?,
            None => names.first().cloned().ok_or_else(|| err(0, "the workbook has no worksheet".into()))?,
        };
        let range = wb.worksheet_range(&name).map_err(|e| err(0, format!("sheet {name:?}: {e}")))?;
        let (r0, c0) = range.start().unwrap_or((0, 0));
        let cell_name = |r: usize, c: usize| format!("{}{}", column_letters(c0 as usize + c), r0 as usize + r + 1);
        let mut header: Vec<String> = Vec::new();
        let mut rows = Vec::new();
        let mut header_row = 0;
        for (r, row) in range.rows().enumerate() {
            let mut fields = Vec::with_capacity(row.len());
            for (c, v) in row.iter().enumerate() {
                let text = match v {
                    Data::Empty => String::new(),
                    Data::String(s) => s.trim().to_string(),
                    Data::Int(i) => i.to_string(),
                    // Counts typed into a spreadsheet arrive as floats: whole numbers print as such.
                    Data::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", *f as i64),
                    Data::Float(f) => f.to_string(),
                    Data::Bool(b) => b.to_string(),
                    Data::Error(e) => {
                        return Err(err(
                            r0 as usize + r + 1,
                            format!("sheet {name:?} cell {}: error value {e} in the cell", cell_name(r, c)),
                        ));
                    }
                    other => other.to_string(),
                };
                fields.push(text);
            }
            if header.is_empty() {
                if fields.iter().all(|f| f.is_empty()) {
                    continue;
                }
                while fields.last().is_some_and(|f| f.is_empty()) {
                    fields.pop();
                }
                if let Some(c) = fields.iter().position(|f| f.is_empty()) {
                    return Err(err(
                        r0 as usize + r + 1,
                        format!("sheet {name:?} cell {}: blank column name in the header row", cell_name(r, c)),
                    ));
                }
                header = fields;
                header_row = r;
                continue;
            }
            // Blank rows stay (as records that fail naming their row) so row numbers match the sheet.
            fields.resize(header.len().max(fields.len()), String::new());
            if let Some(c) = (header.len()..fields.len()).find(|&c| !fields[c].is_empty()) {
                return Err(err(
                    r0 as usize + r + 1,
                    format!("sheet {name:?} cell {}: value outside the header's columns", cell_name(r, c)),
                ));
            }
            fields.truncate(header.len());
            rows.push(fields);
        }
        if header.is_empty() {
            return Err(err(0, format!("sheet {name:?} is empty")));
        }
        let at = r0 as usize + header_row + 1;
        let label = if at == 1 {
            format!("{file} [sheet {name}]")
        } else {
            format!("{file} [sheet {name}; header on sheet row {at}, row numbers count from it as row 1]")
        };
        Ok(RawTable { file: label, header, rows })
    }

    /// Reads CSV text.
    pub fn from_csv_str(file: &str, text: &str) -> Result<Self, DisclosureError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
        let header: Vec<String> = rdr
            .headers()
            .map_err(|e| DisclosureError::Table { file: file.into(), row: 1, message: e.to_string() })?
            .iter()
            .map(|s| s.trim().to_string())
            .collect();
        let mut rows = Vec::new();
        for (i, r) in rdr.records().enumerate() {
            let r = r.map_err(|e| DisclosureError::Table { file: file.into(), row: i + 2, message: e.to_string() })?;
            rows.push(r.iter().map(|s| s.trim().to_string()).collect());
        }
        Ok(RawTable { file: file.into(), header, rows })
    }

    fn read_csv(path: &Path) -> Result<Self, DisclosureError> {
        let text = std::fs::read_to_string(path).map_err(|e| DisclosureError::io(path, e))?;
        Self::from_csv_str(&path.display().to_string(), &text)
    }

    fn read_parquet(path: &Path) -> Result<Self, DisclosureError> {
        use arrow::array::Array;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let file_name = path.display().to_string();
        let perr = |m: String| DisclosureError::Table { file: file_name.clone(), row: 0, message: m };
        let f = std::fs::File::open(path).map_err(|e| DisclosureError::io(path, e))?;
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(f).and_then(|b| b.build()).map_err(|e| perr(e.to_string()))?;
        let mut header = Vec::new();
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| perr(e.to_string()))?;
            if header.is_empty() {
                header = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
            }
            let cols: Vec<_> = batch
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8))
                .collect::<Result<_, _>>()
                .map_err(|e| perr(e.to_string()))?;
            let cols: Vec<&arrow::array::StringArray> = cols
                .iter()
                .map(|c| c.as_any().downcast_ref::<arrow::array::StringArray>().expect("cast to Utf8"))
                .collect();
            for r in 0..batch.num_rows() {
                rows.push(
                    cols.iter().map(|c| if c.is_null(r) { String::new() } else { c.value(r).to_string() }).collect(),
                );
            }
        }
        Ok(RawTable { file: file_name, header, rows })
    }

    fn col(&self, name: &str) -> Result<usize, DisclosureError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| DisclosureError::Table {
            file: self.file.clone(),
            row: 1,
            message: format!("column {name:?} declared but not in the header {:?}", self.header),
        })
    }

    /// Shapes the raw rows into a cube with all margins, as the declaration says. Margins given in
    /// the input are checked against the sums of their parts; missing margins are computed (the
    /// checker assumes an attacker can add up published cells).
    pub fn to_cube(&self, decl: &Declaration) -> Result<(Cube, Vec<String>), DisclosureError> {
        let long = self.to_long(decl)?;
        let ndim = decl.dimensions.len();
        let mut levels: Vec<Vec<String>> = vec![Vec::new(); ndim];
        let mut pos: Vec<HashMap<String, usize>> = vec![HashMap::new(); ndim];
        for (_, labels, _, _, _) in &long {
            for d in 0..ndim {
                let l = &labels[d];
                if !decl.is_total(l) && !pos[d].contains_key(l) {
                    pos[d].insert(l.clone(), levels[d].len());
                    levels[d].push(l.clone());
                }
            }
        }
        let dims: Vec<Dim> = decl
            .dimensions
            .iter()
            .zip(levels)
            .map(|(dd, lv)| Dim { name: dd.column.clone(), kind: dd.kind, levels: lv })
            .collect();
        let mut cube = Cube::zeros(dims, &decl.total_label);
        if decl.patient_count_column.is_some() {
            cube.patients = Some(vec![Some(0); cube.len()]);
        }
        if decl.contributors_column.is_some() {
            cube.contributors = Some(vec![Some(0); cube.len()]);
        }
        let mut given_margins = Vec::new();
        let mut seen = HashMap::new();
        for (row, labels, v, p, c) in &long {
            let coords: Vec<usize> = (0..ndim)
                .map(|d| if decl.is_total(&labels[d]) { cube.dims[d].total() } else { pos[d][&labels[d]] })
                .collect();
            let idx = cube.index(&coords);
            if let Some(prev) = seen.insert(idx, *row) {
                return Err(DisclosureError::Table {
                    file: self.file.clone(),
                    row: *row,
                    message: format!("cell {} repeats row {prev}", cube.cell_ref(idx)),
                });
            }
            if cube.is_margin(idx) {
                given_margins.push((*row, idx, *v));
            }
            cube.values[idx] = *v;
            if let Some(pp) = &mut cube.patients {
                pp[idx] = *p;
            }
            if let Some(cc) = &mut cube.contributors {
                cc[idx] = *c;
            }
        }
        // Remember given margin aux values (they may be more exact than sums).
        let given_aux: Vec<(usize, Option<i64>, Option<i64>)> = given_margins
            .iter()
            .map(|(_, i, _)| {
                (*i, cube.patients.as_ref().and_then(|p| p[*i]), cube.contributors.as_ref().and_then(|c| c[*i]))
            })
            .collect();
        cube.fill_margins();
        let mut notes = Vec::new();
        for (row, idx, v) in &given_margins {
            if cube.values[*idx] != *v {
                return Err(DisclosureError::Table {
                    file: self.file.clone(),
                    row: *row,
                    message: format!(
                        "margin {} is {v} but its parts sum to {} / 合計が内訳の和と一致しません",
                        cube.cell_ref(*idx),
                        cube.values[*idx]
                    ),
                });
            }
        }
        for (i, p, c) in given_aux {
            if let (Some(pp), Some(p)) = (&mut cube.patients, p) {
                pp[i] = Some(p);
            }
            if let (Some(cc), Some(c)) = (&mut cube.contributors, c) {
                cc[i] = Some(c);
            }
        }
        if given_margins.is_empty() {
            notes.push("input had no margins; all margins computed and treated as published".into());
        }
        Ok((cube, notes))
    }

    /// Rows as (row number, labels per dimension, count, patients, contributors).
    #[allow(clippy::type_complexity)]
    fn to_long(
        &self,
        decl: &Declaration,
    ) -> Result<Vec<(usize, Vec<String>, i64, Option<i64>, Option<i64>)>, DisclosureError> {
        let num = |row: usize, col: &str, s: &str| -> Result<i64, DisclosureError> {
            s.replace(',', "").trim().parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| DisclosureError::Table {
                file: self.file.clone(),
                row,
                message: format!("{col}: {s:?} is not a non-negative integer count"),
            })
        };
        let mut out = Vec::new();
        match decl.layout {
            Layout::Long => {
                let dcols: Vec<usize> =
                    decl.dimensions.iter().map(|d| self.col(&d.column)).collect::<Result<_, _>>()?;
                let vc = self.col(&decl.count_column)?;
                let pc = decl.patient_count_column.as_deref().map(|c| self.col(c)).transpose()?;
                let cc = decl.contributors_column.as_deref().map(|c| self.col(c)).transpose()?;
                for (i, r) in self.rows.iter().enumerate() {
                    let row = i + 2;
                    let labels = dcols.iter().map(|&c| r[c].clone()).collect();
                    let v = num(row, &decl.count_column, &r[vc])?;
                    let opt = |c: Option<usize>, name: &str| -> Result<Option<i64>, DisclosureError> {
                        match c {
                            Some(c) if !r[c].trim().is_empty() => num(row, name, &r[c]).map(Some),
                            _ => Ok(None),
                        }
                    };
                    let p = opt(pc, "patient_count_column")?;
                    let c = opt(cc, "contributors_column")?;
                    out.push((row, labels, v, p, c));
                }
            }
            Layout::Wide => {
                let wide = decl.wide_dimension.as_deref().unwrap_or_default();
                let wpos = decl.dimensions.iter().position(|d| d.column == wide).unwrap_or(0);
                let row_dims: Vec<(usize, usize)> = decl
                    .dimensions
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.column != wide)
                    .map(|(i, d)| self.col(&d.column).map(|c| (i, c)))
                    .collect::<Result<_, _>>()?;
                let used: Vec<usize> = row_dims.iter().map(|x| x.1).collect();
                let value_cols: Vec<usize> = (0..self.header.len()).filter(|c| !used.contains(c)).collect();
                if value_cols.is_empty() {
                    return Err(DisclosureError::Table {
                        file: self.file.clone(),
                        row: 1,
                        message: "wide layout without level columns".into(),
                    });
                }
                for (i, r) in self.rows.iter().enumerate() {
                    let row = i + 2;
                    for &vc in &value_cols {
                        let mut labels = vec![String::new(); decl.dimensions.len()];
                        for (d, c) in &row_dims {
                            labels[*d] = r[*c].clone();
                        }
                        labels[wpos] = self.header[vc].clone();
                        out.push((row, labels, num(row, &self.header[vc], &r[vc])?, None, None));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Spreadsheet column letters of a 0-based column index (0 → A, 26 → AA).
fn column_letters(mut c: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (c % 26) as u8);
        if c < 26 {
            break;
        }
        c = c / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}
