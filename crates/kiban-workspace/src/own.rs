//! R7: a handler's own data and own tools, brought in only after the creator approves.
//!
//! An upload is part of the request: it is parsed and checked at once (size, format, schema), then held
//! in `quarantine/<upl-…>/`, sealed and bound to this workspace, and never listed as a table. The
//! registry records its SHA-256 with the request; the creator's approval is of that digest, and
//! [`Workspace::admit`] brings in only bytes whose digest matches it. A refused upload is discarded.
//!
//! A "tool" in a DataFusion-only workspace that runs no arbitrary code is a named SQL view: one
//! `SELECT` over the workspace's tables, checked by the same sandbox rules as a query. Once approved
//! it can be queried like a table (`SELECT … FROM my_tool`) or run alone. Its text is sealed with its
//! digest in the binding, so the approved text is the only text that runs; a changed text is a new
//! request that needs a new approval, and until then the approved version stays in force.

use std::fs;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use kiban_formats::dataset::{DatasetWriter, FileFormat};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::Workspace;
use crate::{WorkspaceError, io, new_id, sandbox, valid_id, valid_name};

/// The largest own-data file a request may carry.
pub const MAX_UPLOAD_BYTES: usize = 16 << 20;
/// The largest tool text.
pub const MAX_TOOL_BYTES: usize = 64 << 10;
/// Columns an uploaded table may have at most.
pub const MAX_UPLOAD_COLUMNS: usize = 200;

/// What an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StagedKind {
    /// A table of the handler's own data (CSV or Parquet).
    Data,
    /// A named SQL view (own tool).
    Tool,
}

/// An upload held in quarantine, as described to the creator (no values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// Id (`upl-…`).
    pub staged_id: String,
    /// Data or tool.
    pub kind: StagedKind,
    /// The table or tool name it will have.
    pub name: String,
    /// SHA-256 of the uploaded bytes (data) or the tool text: what an approval binds to.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// `csv`, `parquet` or `sql`.
    pub format: String,
    /// Rows (data only).
    pub rows: u64,
    /// Columns and their Arrow types (data), or the tables the tool reads (tool).
    pub columns: Vec<(String, String)>,
}

/// An approved tool as installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// Name (queried like a table).
    pub name: String,
    /// SHA-256 of the approved text.
    pub sha256: String,
    /// The upload it came from.
    pub staged_id: String,
}

fn refused(reason: impl Into<String>) -> WorkspaceError {
    WorkspaceError::Refused { rule: "R7", reason: reason.into() }
}

fn aad(ws: &str, what: &str) -> Vec<u8> {
    format!("kiban workspace own v1\0{ws}\0{what}").into_bytes()
}

impl Workspace {
    fn quarantine_dir(&self, id: &str) -> Result<PathBuf, WorkspaceError> {
        let dir = self.root().join("quarantine").join(id);
        if !valid_id(id, "upl") || !dir.join("staged.json").is_file() {
            return Err(WorkspaceError::NotFound { kind: "upload", id: id.to_owned() });
        }
        Ok(dir)
    }

    fn check_new_name(&self, name: &str, what: &str) -> Result<(), WorkspaceError> {
        if !valid_name(name) {
            return Err(refused(format!("{name:?} is not a {what} name ([a-z][a-z0-9_]*)")));
        }
        if self.tables()?.iter().any(|t| t == name) {
            return Err(refused(format!("{name}: a table of that name exists")));
        }
        Ok(())
    }

    fn write_staged(&self, dir: &std::path::Path, s: &Staged) -> Result<(), WorkspaceError> {
        let p = dir.join("staged.json");
        fs::write(&p, serde_json::to_vec_pretty(s).expect("json")).map_err(io(&p))
    }

    /// Holds a handler's own data file (CSV with a header line, or Parquet) in quarantine as `table`:
    /// checked for size, format and schema now, sealed, and not queryable until admitted (R7).
    pub fn stage_own_data(&self, table: &str, file_name: &str, bytes: &[u8]) -> Result<Staged, WorkspaceError> {
        self.check_new_name(table, "table")?;
        if self.tools()?.iter().any(|t| t.name == table) {
            return Err(refused(format!("{table}: a tool of that name exists")));
        }
        if bytes.is_empty() {
            return Err(refused(format!("{file_name}: the file is empty")));
        }
        if bytes.len() > MAX_UPLOAD_BYTES {
            return Err(refused(format!(
                "{file_name}: {} bytes is over the limit of {MAX_UPLOAD_BYTES} bytes",
                bytes.len()
            )));
        }
        let parquet = bytes.starts_with(b"PAR1");
        let (schema, batches) = if parquet { read_parquet(file_name, bytes)? } else { read_csv(file_name, bytes)? };
        check_schema(file_name, &schema)?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Err(refused(format!("{file_name}: no rows")));
        }
        let staged_id = new_id("upl");
        let dir = self.root().join("quarantine").join(&staged_id);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let w = DatasetWriter::create(
            &dir.join("data"),
            &format!("workspace/{}/quarantine/{staged_id}", self.id()),
            schema.clone(),
            FileFormat::Parquet,
        )?
        .sealed(self.sealer_arc());
        w.write_part("part-00000", &batches)?;
        w.commit(serde_json::json!({"quarantine": staged_id}))?;
        let s = Staged {
            staged_id,
            kind: StagedKind::Data,
            name: table.to_owned(),
            sha256: hex::encode(Sha256::digest(bytes)),
            bytes: bytes.len() as u64,
            format: if parquet { "parquet" } else { "csv" }.to_owned(),
            rows: rows as u64,
            columns: schema.fields().iter().map(|f| (f.name().clone(), f.data_type().to_string())).collect(),
        };
        self.write_staged(&dir, &s)?;
        Ok(s)
    }

    /// Holds a tool (a named SQL view) in quarantine: one `SELECT` over this workspace's tables,
    /// checked by the sandbox's rules now, sealed, and not usable until admitted (R7).
    pub fn stage_tool(&self, name: &str, sql: &str) -> Result<Staged, WorkspaceError> {
        self.check_new_name(name, "tool")?;
        if sql.len() > MAX_TOOL_BYTES {
            return Err(refused(format!("tool {name}: {} bytes is over the limit of {MAX_TOOL_BYTES}", sql.len())));
        }
        let tables = self.tables()?;
        sandbox::check_sql(sql, &tables)?;
        let reads = sandbox::tables_read(sql)?;
        let staged_id = new_id("upl");
        let sha256 = hex::encode(Sha256::digest(sql.as_bytes()));
        let dir = self.root().join("quarantine").join(&staged_id);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let p = dir.join("tool.sql.kbs");
        let sealed = self.sealer().seal(&aad(self.id(), &format!("quarantine/{staged_id}/{sha256}")), sql.as_bytes());
        fs::write(&p, sealed).map_err(io(&p))?;
        let s = Staged {
            staged_id,
            kind: StagedKind::Tool,
            name: name.to_owned(),
            sha256,
            bytes: sql.len() as u64,
            format: "sql".to_owned(),
            rows: 0,
            columns: reads.into_iter().map(|t| (t, "table".to_owned())).collect(),
        };
        self.write_staged(&dir, &s)?;
        Ok(s)
    }

    /// An upload in quarantine.
    pub fn staged(&self, id: &str) -> Result<Staged, WorkspaceError> {
        let p = self.quarantine_dir(id)?.join("staged.json");
        let text = fs::read(&p).map_err(io(&p))?;
        serde_json::from_slice(&text).map_err(|e| refused(format!("upload {id}: {e}")))
    }

    /// Every upload still in quarantine (pending a decision).
    pub fn staged_all(&self) -> Result<Vec<Staged>, WorkspaceError> {
        let dir = self.root().join("quarantine");
        let mut v = Vec::new();
        let Ok(rd) = fs::read_dir(&dir) else { return Ok(v) };
        for e in rd.filter_map(|e| e.ok()) {
            let id = e.file_name().to_string_lossy().into_owned();
            if valid_id(&id, "upl") {
                v.push(self.staged(&id)?);
            }
        }
        v.sort_by(|a, b| a.staged_id.cmp(&b.staged_id));
        Ok(v)
    }

    /// The text of a quarantined tool, for the creator's review; checked against its digest.
    pub fn staged_tool_text(&self, id: &str) -> Result<String, WorkspaceError> {
        let s = self.staged(id)?;
        if s.kind != StagedKind::Tool {
            return Err(refused(format!("upload {id} is not a tool")));
        }
        let p = self.quarantine_dir(id)?.join("tool.sql.kbs");
        let raw = fs::read(&p).map_err(io(&p))?;
        let plain = self
            .sealer()
            .open(&aad(self.id(), &format!("quarantine/{id}/{}", s.sha256)), &raw)
            .map_err(|e| refused(format!("upload {id} does not decrypt: {e}")))?;
        let text = String::from_utf8(plain).map_err(|_| refused(format!("upload {id} is not UTF-8")))?;
        if hex::encode(Sha256::digest(text.as_bytes())) != s.sha256 {
            return Err(refused(format!("upload {id}: the text differs from the one requested")));
        }
        Ok(text)
    }

    /// Brings in an approved upload: only if its digest is `approved_sha256` (the digest the creator
    /// approved). Data becomes a table of this workspace only; a tool becomes a named view (replacing an
    /// earlier approved version of the same name). The quarantine copy is removed. Returns what came in.
    pub fn admit(&self, id: &str, approved_sha256: &str) -> Result<Staged, WorkspaceError> {
        let s = self.staged(id)?;
        if s.sha256 != approved_sha256 {
            return Err(refused(format!(
                "upload {id}: its SHA-256 {} is not the approved {approved_sha256}",
                s.sha256
            )));
        }
        let dir = self.quarantine_dir(id)?;
        match s.kind {
            StagedKind::Data => {
                self.add_own_data(&s.name, &dir.join("data"))?;
            }
            StagedKind::Tool => {
                let text = self.staged_tool_text(id)?;
                // The tables may have changed since the request; the rules are checked again.
                sandbox::check_sql(&text, &self.tables()?)?;
                let tools = self.root().join("tools");
                fs::create_dir_all(&tools).map_err(io(&tools))?;
                let p = tools.join(format!("{}.sql.kbs", s.name));
                let sealed =
                    self.sealer().seal(&aad(self.id(), &format!("tool/{}/{}", s.name, s.sha256)), text.as_bytes());
                fs::write(&p, sealed).map_err(io(&p))?;
                let meta = Tool { name: s.name.clone(), sha256: s.sha256.clone(), staged_id: s.staged_id.clone() };
                let p = tools.join(format!("{}.json", s.name));
                fs::write(&p, serde_json::to_vec_pretty(&meta).expect("json")).map_err(io(&p))?;
            }
        }
        fs::remove_dir_all(&dir).map_err(io(&dir))?;
        Ok(s)
    }

    /// Deletes a refused upload from quarantine (it never became queryable).
    pub fn discard(&self, id: &str) -> Result<Staged, WorkspaceError> {
        let s = self.staged(id)?;
        let dir = self.quarantine_dir(id)?;
        fs::remove_dir_all(&dir).map_err(io(&dir))?;
        Ok(s)
    }

    /// The approved tools.
    pub fn tools(&self) -> Result<Vec<Tool>, WorkspaceError> {
        let dir = self.root().join("tools");
        let mut v = Vec::new();
        let Ok(rd) = fs::read_dir(&dir) else { return Ok(v) };
        for e in rd.filter_map(|e| e.ok()) {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(name) = n.strip_suffix(".json")
                && valid_name(name)
            {
                let text = fs::read(e.path()).map_err(io(&e.path()))?;
                v.push(serde_json::from_slice(&text).map_err(|e| refused(format!("tool {name}: {e}")))?);
            }
        }
        v.sort_by(|a: &Tool, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// An approved tool and its text, which must hash to the approved digest.
    pub fn tool(&self, name: &str) -> Result<(Tool, String), WorkspaceError> {
        let t = self
            .tools()?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| WorkspaceError::NotFound { kind: "tool", id: name.to_owned() })?;
        let p = self.root().join("tools").join(format!("{name}.sql.kbs"));
        let raw = fs::read(&p).map_err(io(&p))?;
        let plain = self
            .sealer()
            .open(&aad(self.id(), &format!("tool/{name}/{}", t.sha256)), &raw)
            .map_err(|e| refused(format!("tool {name} does not decrypt under its approved digest: {e}")))?;
        let text = String::from_utf8(plain).map_err(|_| refused(format!("tool {name} is not UTF-8")))?;
        if hex::encode(Sha256::digest(text.as_bytes())) != t.sha256 {
            return Err(refused(format!("tool {name}: the text is not the approved one")));
        }
        Ok((t, text))
    }
}

fn bad(file: &str, e: impl std::fmt::Display) -> WorkspaceError {
    refused(format!("{file}: {e}"))
}

fn read_csv(file: &str, bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), WorkspaceError> {
    use datafusion::arrow::csv::ReaderBuilder;
    use datafusion::arrow::csv::reader::Format;
    if std::str::from_utf8(bytes).is_err() {
        return Err(bad(file, "the CSV is not UTF-8"));
    }
    let format = Format::default().with_header(true);
    let (schema, _) = format.infer_schema(Cursor::new(bytes), None).map_err(|e| bad(file, e))?;
    // A column with no values at all is text, so its type does not depend on the sample.
    let schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let t = if f.data_type() == &DataType::Null { DataType::Utf8 } else { f.data_type().clone() };
                Field::new(f.name(), t, true)
            })
            .collect::<Vec<_>>(),
    ));
    check_schema(file, &schema)?;
    let reader = ReaderBuilder::new(schema.clone())
        .with_format(format)
        .with_batch_size(8192)
        .build(Cursor::new(bytes))
        .map_err(|e| bad(file, e))?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| bad(file, e))?;
    Ok((schema, batches))
}

fn read_parquet(file: &str, bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), WorkspaceError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let b = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes)).map_err(|e| bad(file, e))?;
    let schema = b.schema().clone();
    check_schema(file, &schema)?;
    let batches = b.build().map_err(|e| bad(file, e))?.collect::<Result<Vec<_>, _>>().map_err(|e| bad(file, e))?;
    Ok((schema, batches))
}

/// Column names are identifiers (so queries need no quoting and no name can smuggle SQL), unique,
/// at most [`MAX_UPLOAD_COLUMNS`]; types are flat (numbers, text, booleans, dates and times).
fn check_schema(file: &str, schema: &Schema) -> Result<(), WorkspaceError> {
    if schema.fields().is_empty() {
        return Err(bad(file, "no columns"));
    }
    if schema.fields().len() > MAX_UPLOAD_COLUMNS {
        return Err(bad(file, format!("{} columns; at most {MAX_UPLOAD_COLUMNS}", schema.fields().len())));
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in schema.fields() {
        let n = f.name();
        if !valid_name(n) {
            return Err(bad(file, format!("column {n:?}: names are [a-z][a-z0-9_]* (rename it in the file)")));
        }
        if !seen.insert(n.clone()) {
            return Err(bad(file, format!("column {n}: appears twice")));
        }
        let t = f.data_type();
        let flat = t.is_primitive()
            || matches!(
                t,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean | DataType::Null
            );
        if !flat {
            return Err(bad(file, format!("column {n}: type {t} is not allowed (flat columns only)")));
        }
    }
    Ok(())
}
