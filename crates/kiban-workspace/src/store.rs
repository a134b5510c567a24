//! A workspace on disk: sealed datasets, sealed results and scripts, take-outs; and its deletion.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use kiban_formats::Sealer;
use kiban_formats::dataset::{DatasetWriter, FileFormat, Manifest, read_manifest, read_part};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sandbox::{self, Limits};
use crate::{WorkspaceError, io, new_id, valid_id, valid_name};

/// Rows a page may show at most.
pub const MAX_PAGE_ROWS: usize = 100;
/// Rows of a row-level result a page may show at most (D9: row-level views are capped).
pub const MAX_ROW_LEVEL_PAGE_ROWS: usize = 20;

/// One workspace's directory and the key store's sealer.
#[derive(Clone)]
pub struct Workspace {
    id: String,
    root: PathBuf,
    sealer: Arc<dyn Sealer>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace").field("id", &self.id).field("root", &self.root).finish_non_exhaustive()
    }
}

/// A stored result as listed (no values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultInfo {
    /// Id (`res-…`).
    pub result_id: String,
    /// Handler (account id) who ran it.
    pub handler: String,
    /// SHA-256 of the query text (the text itself is sealed with the result).
    pub sql_sha256: String,
    /// Rows.
    pub rows: u64,
    /// Column names.
    pub columns: Vec<String>,
    /// The row limit cut it.
    pub truncated: bool,
    /// No aggregation in the query: views are capped.
    pub row_level: bool,
    /// Milliseconds the query took.
    pub elapsed_ms: u64,
}

/// One page of a result, as text cells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    /// The result.
    pub info: ResultInfo,
    /// Page number from 0.
    pub page: usize,
    /// Rows per page (after the cap).
    pub page_rows: usize,
    /// Number of pages.
    pub pages: usize,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
}

/// A table's name and its columns (name, Arrow type).
pub type TableColumns = (String, Vec<(String, String)>);

/// What deleting a workspace removed (for the deletion record, R5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeletionSummary {
    /// Dataset copies.
    pub datasets: u64,
    /// Stored results.
    pub results: u64,
    /// Saved scripts.
    pub scripts: u64,
    /// Take-out requests (checked tables and approved outputs).
    pub takeouts: u64,
    /// Own data brought in (R7).
    pub imports: u64,
    /// Own tools approved (R7).
    #[serde(default)]
    pub tools: u64,
    /// Uploads still in quarantine (pending or never admitted, R7).
    #[serde(default)]
    pub quarantined: u64,
    /// Files removed.
    pub files: u64,
    /// Bytes removed.
    pub bytes: u64,
}

fn aad(ws: &str, what: &str) -> Vec<u8> {
    format!("kiban workspace v1\0{ws}\0{what}").into_bytes()
}

impl Workspace {
    /// Creates the directory of workspace `id` under `base` (`<data-dir>/workspaces`).
    pub fn create(base: &Path, id: &str, sealer: Arc<dyn Sealer>) -> Result<Workspace, WorkspaceError> {
        if !valid_id(id, "ws") {
            return Err(WorkspaceError::NotFound { kind: "workspace", id: id.to_owned() });
        }
        let root = base.join(id);
        for d in ["datasets", "results", "scripts", "takeouts", "outputs", "imports", "quarantine", "tools"] {
            fs::create_dir_all(root.join(d)).map_err(io(&root))?;
        }
        Ok(Workspace { id: id.to_owned(), root, sealer })
    }

    /// Opens an existing workspace directory.
    pub fn open(base: &Path, id: &str, sealer: Arc<dyn Sealer>) -> Result<Workspace, WorkspaceError> {
        let root = base.join(id);
        if !valid_id(id, "ws") || !root.join("datasets").is_dir() {
            return Err(WorkspaceError::NotFound { kind: "workspace", id: id.to_owned() });
        }
        Ok(Workspace { id: id.to_owned(), root, sealer })
    }

    /// The workspace id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Copies a released dataset in as `table`, re-sealed and bound to this workspace (a part moved
    /// to another workspace does not decrypt). Returns the rows copied.
    pub fn add_dataset(&self, table: &str, source: &Path) -> Result<u64, WorkspaceError> {
        self.add_table(table, source, "datasets")
    }

    /// Brings in a user's own data as `table` after the creator approved the request (R7).
    pub fn add_own_data(&self, table: &str, source: &Path) -> Result<u64, WorkspaceError> {
        self.add_table(table, source, "imports")
    }

    fn add_table(&self, table: &str, source: &Path, area: &str) -> Result<u64, WorkspaceError> {
        if !valid_name(table) {
            return Err(WorkspaceError::Refused {
                rule: "R13",
                reason: format!("{table:?} is not a table name ([a-z][a-z0-9_]*)"),
            });
        }
        if self.tables()?.iter().any(|t| t == table) || self.tools()?.iter().any(|t| t.name == table) {
            return Err(WorkspaceError::Refused { rule: "R13", reason: format!("table {table} already exists") });
        }
        let m = read_manifest(source)?;
        let mut batches = Vec::new();
        for f in &m.files {
            batches.extend(read_part(source, &m, f, Some(self.sealer.as_ref()))?);
        }
        let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| manifest_schema(&m));
        let dir = self.root.join(area).join(table);
        let w = DatasetWriter::create(&dir, &format!("workspace/{}/{table}", self.id), schema, FileFormat::Parquet)?
            .sealed(self.sealer.clone());
        w.write_part("part-00000", &batches)?;
        let out = w.commit(serde_json::json!({"copied_from": m.name, "source_rows": m.rows}))?;
        Ok(out.rows)
    }

    /// The tables handlers may query: released datasets and approved own data.
    pub fn tables(&self) -> Result<Vec<String>, WorkspaceError> {
        let mut v = Vec::new();
        for area in ["datasets", "imports"] {
            let dir = self.root.join(area);
            for e in fs::read_dir(&dir).map_err(io(&dir))? {
                let e = e.map_err(io(&dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if valid_name(&name) && e.path().join("manifest.json").is_file() {
                    v.push(name);
                }
            }
        }
        v.sort();
        Ok(v)
    }

    /// Columns of each table (name, Arrow type), for the SQL editor's help.
    pub fn schema(&self) -> Result<Vec<TableColumns>, WorkspaceError> {
        let mut v = Vec::new();
        for t in self.tables()? {
            let m = read_manifest(&self.table_dir(&t))?;
            v.push((t, m.columns));
        }
        Ok(v)
    }

    fn table_dir(&self, t: &str) -> PathBuf {
        let d = self.root.join("datasets").join(t);
        if d.is_dir() { d } else { self.root.join("imports").join(t) }
    }

    fn load(&self, dir: &Path) -> Result<(SchemaRef, Vec<RecordBatch>), WorkspaceError> {
        let m = read_manifest(dir)?;
        let mut batches = Vec::new();
        for f in &m.files {
            batches.extend(read_part(dir, &m, f, Some(self.sealer.as_ref()))?);
        }
        let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| manifest_schema(&m));
        Ok((schema, batches))
    }

    /// Runs `sql` for `handler` under `limits`; the result is stored sealed and described. Approved
    /// tools (R7) are there as views.
    pub async fn query(&self, handler: &str, sql: &str, limits: Limits) -> Result<ResultInfo, WorkspaceError> {
        let names = self.tables()?;
        let tools = self.tools()?;
        let mut all = names.clone();
        all.extend(tools.iter().map(|t| t.name.clone()));
        // Refuse before decrypting anything.
        sandbox::check_sql(sql, &all)?;
        let mut views = Vec::new();
        for t in &tools {
            views.push((t.name.clone(), self.tool(&t.name)?.1));
        }
        let mut tables = Vec::new();
        for t in names {
            let (schema, batches) = self.load(&self.table_dir(&t))?;
            tables.push((t, schema, batches));
        }
        let out = sandbox::run(sql, tables, views, limits).await?;
        let result_id = new_id("res");
        let info = ResultInfo {
            result_id: result_id.clone(),
            handler: handler.to_owned(),
            sql_sha256: hex::encode(Sha256::digest(sql.as_bytes())),
            rows: out.rows as u64,
            columns: out.schema.fields().iter().map(|f| f.name().clone()).collect(),
            truncated: out.truncated,
            row_level: out.row_level,
            elapsed_ms: out.elapsed.as_millis() as u64,
        };
        let dir = self.root.join("results").join(&result_id);
        let w = DatasetWriter::create(
            &dir,
            &format!("workspace/{}/{result_id}", self.id),
            out.schema,
            FileFormat::Parquet,
        )?
        .sealed(self.sealer.clone());
        w.write_part("part-00000", &out.batches)?;
        w.commit(serde_json::to_value(&info).expect("json"))?;
        let sealed_sql = self.sealer.seal(&aad(&self.id, &format!("sql/{result_id}")), sql.as_bytes());
        let p = dir.join("query.sql.kbs");
        fs::write(&p, sealed_sql).map_err(io(&p))?;
        Ok(info)
    }

    /// Every stored result, oldest id order.
    pub fn results(&self) -> Result<Vec<ResultInfo>, WorkspaceError> {
        let dir = self.root.join("results");
        let mut v = Vec::new();
        for e in fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let id = e.file_name().to_string_lossy().into_owned();
            if valid_id(&id, "res") {
                v.push(self.result_info(&id)?);
            }
        }
        v.sort_by(|a, b| a.result_id.cmp(&b.result_id));
        Ok(v)
    }

    /// The description of result `id`.
    pub fn result_info(&self, id: &str) -> Result<ResultInfo, WorkspaceError> {
        let dir = self.result_dir(id)?;
        let m = read_manifest(&dir)?;
        serde_json::from_value(m.provenance).map_err(|e| WorkspaceError::Sql(format!("result {id}: {e}")))
    }

    fn result_dir(&self, id: &str) -> Result<PathBuf, WorkspaceError> {
        let dir = self.root.join("results").join(id);
        if !valid_id(id, "res") || !dir.join("manifest.json").is_file() {
            return Err(WorkspaceError::NotFound { kind: "result", id: id.to_owned() });
        }
        Ok(dir)
    }

    pub(crate) fn result_path(&self, id: &str) -> Result<PathBuf, WorkspaceError> {
        self.result_dir(id)
    }

    /// Every row of result `id` as text (for charts; never handed out whole).
    pub(crate) fn all_cells(&self, id: &str) -> Result<Vec<Vec<String>>, WorkspaceError> {
        let (_, batches) = self.load(&self.result_dir(id)?)?;
        cells(&batches, 0, usize::MAX)
    }

    /// The query text of result `id` (sealed at rest).
    pub fn result_sql(&self, id: &str) -> Result<String, WorkspaceError> {
        let p = self.result_dir(id)?.join("query.sql.kbs");
        let raw = fs::read(&p).map_err(io(&p))?;
        let plain = self
            .sealer
            .open(&aad(&self.id, &format!("sql/{id}")), &raw)
            .map_err(|e| WorkspaceError::Sql(format!("result {id}: the query text does not decrypt: {e}")))?;
        String::from_utf8(plain).map_err(|_| WorkspaceError::Sql(format!("result {id}: query text is not UTF-8")))
    }

    /// One page of result `id`; a row-level result shows at most [`MAX_ROW_LEVEL_PAGE_ROWS`] rows
    /// per page, any result at most [`MAX_PAGE_ROWS`].
    pub fn page(&self, id: &str, page: usize, page_rows: usize) -> Result<Page, WorkspaceError> {
        let info = self.result_info(id)?;
        let cap = if info.row_level { MAX_ROW_LEVEL_PAGE_ROWS } else { MAX_PAGE_ROWS };
        let page_rows = page_rows.clamp(1, cap);
        let (_, batches) = self.load(&self.result_dir(id)?)?;
        let rows = cells(&batches, page * page_rows, page_rows)?;
        let pages = (info.rows as usize).div_ceil(page_rows).max(1);
        Ok(Page { info, page, page_rows, pages, rows })
    }

    /// The whole result as CSV text (for the publication check only; never handed to a handler).
    pub(crate) fn result_csv(&self, id: &str) -> Result<String, WorkspaceError> {
        let info = self.result_info(id)?;
        let (_, batches) = self.load(&self.result_dir(id)?)?;
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&info.columns).map_err(|e| WorkspaceError::Sql(e.to_string()))?;
        for row in cells(&batches, 0, usize::MAX)? {
            w.write_record(&row).map_err(|e| WorkspaceError::Sql(e.to_string()))?;
        }
        String::from_utf8(w.into_inner().map_err(|e| WorkspaceError::Sql(e.to_string()))?)
            .map_err(|e| WorkspaceError::Sql(e.to_string()))
    }

    /// Saves a script (sealed) under `name`.
    pub fn save_script(&self, name: &str, sql: &str) -> Result<(), WorkspaceError> {
        if !valid_name(name) {
            return Err(WorkspaceError::Refused {
                rule: "R13",
                reason: format!("{name:?} is not a script name ([a-z][a-z0-9_]*)"),
            });
        }
        let p = self.root.join("scripts").join(format!("{name}.sql.kbs"));
        fs::write(&p, self.sealer.seal(&aad(&self.id, &format!("script/{name}")), sql.as_bytes())).map_err(io(&p))
    }

    /// The saved scripts' names.
    pub fn scripts(&self) -> Result<Vec<String>, WorkspaceError> {
        let dir = self.root.join("scripts");
        let mut v: Vec<String> = fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".sql.kbs").map(str::to_owned))
            .filter(|n| valid_name(n))
            .collect();
        v.sort();
        Ok(v)
    }

    /// A saved script's text.
    pub fn script(&self, name: &str) -> Result<String, WorkspaceError> {
        let p = self.root.join("scripts").join(format!("{name}.sql.kbs"));
        if !valid_name(name) || !p.is_file() {
            return Err(WorkspaceError::NotFound { kind: "script", id: name.to_owned() });
        }
        let raw = fs::read(&p).map_err(io(&p))?;
        let plain = self
            .sealer
            .open(&aad(&self.id, &format!("script/{name}")), &raw)
            .map_err(|e| WorkspaceError::Sql(format!("script {name} does not decrypt: {e}")))?;
        String::from_utf8(plain).map_err(|_| WorkspaceError::Sql(format!("script {name} is not UTF-8")))
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn sealer(&self) -> &dyn Sealer {
        self.sealer.as_ref()
    }

    pub(crate) fn sealer_arc(&self) -> Arc<dyn Sealer> {
        self.sealer.clone()
    }

    /// Runs saved script `name` as a query for `handler` (its result is stored like any query's).
    pub async fn run_script(&self, handler: &str, name: &str, limits: Limits) -> Result<ResultInfo, WorkspaceError> {
        let sql = self.script(name)?;
        self.query(handler, &sql, limits).await
    }

    /// Runs approved tool `name` alone for `handler`.
    pub async fn run_tool(&self, handler: &str, name: &str, limits: Limits) -> Result<ResultInfo, WorkspaceError> {
        self.tool(name)?;
        self.query(handler, &format!("SELECT * FROM {name}"), limits).await
    }

    /// Deletes everything in the workspace — datasets, results, scripts, take-outs, own data — and
    /// says what went (R5: the creator deletes data and scripts at the end of use).
    pub fn destroy(self) -> Result<DeletionSummary, WorkspaceError> {
        let mut s = DeletionSummary::default();
        let count = |d: &str| -> u64 {
            fs::read_dir(self.root.join(d)).map(|r| r.filter_map(|e| e.ok()).count() as u64).unwrap_or(0)
        };
        s.datasets = count("datasets");
        s.results = count("results");
        s.scripts = count("scripts");
        s.takeouts = count("takeouts");
        s.imports = count("imports");
        s.tools = fs::read_dir(self.root.join("tools"))
            .map(|r| r.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count())
            .unwrap_or(0) as u64;
        s.quarantined = count("quarantine");
        fn walk(p: &Path, s: &mut DeletionSummary) {
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.filter_map(|e| e.ok()) {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path, s);
                    } else {
                        s.files += 1;
                        s.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                    }
                }
            }
        }
        walk(&self.root, &mut s);
        fs::remove_dir_all(&self.root).map_err(io(&self.root))?;
        Ok(s)
    }
}

fn manifest_schema(m: &Manifest) -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    Arc::new(Schema::new(
        m.columns.iter().map(|(n, t)| Field::new(n, t.parse().unwrap_or(DataType::Utf8), true)).collect::<Vec<_>>(),
    ))
}

/// Rows `skip..skip+take` of `batches` as display text.
fn cells(batches: &[RecordBatch], skip: usize, take: usize) -> Result<Vec<Vec<String>>, WorkspaceError> {
    let opts = FormatOptions::default().with_null("");
    let mut out = Vec::new();
    let mut pos = 0usize;
    for b in batches {
        let n = b.num_rows();
        if pos + n <= skip {
            pos += n;
            continue;
        }
        let fmts: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()
            .map_err(|e| WorkspaceError::Sql(e.to_string()))?;
        for r in skip.saturating_sub(pos)..n {
            if out.len() >= take {
                return Ok(out);
            }
            out.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
        }
        pos += n;
    }
    Ok(out)
}
