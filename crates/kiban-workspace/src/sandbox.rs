//! One query in a sealed-off DataFusion context (R13, R6): only this workspace's tables, only a
//! single `SELECT`, no file or URL tables, no object stores, no spill files, and three limits
//! (memory pool, rows, time) that stop a runaway query without touching any other query.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemTable;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNode;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::object_store::ObjectStore;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures_util::StreamExt;
use serde::Serialize;

use crate::WorkspaceError;

/// Resource limits of one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Bytes the query's operators may hold (sorts, joins, aggregates); no spilling to disk.
    pub memory_bytes: usize,
    /// Rows a result may hold; the query stops there and the result is marked truncated.
    pub max_rows: usize,
    /// Wall-clock time a query may run.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: 256 << 20, max_rows: 100_000, timeout: Duration::from_secs(60) }
    }
}

/// Table functions that compute values and read nothing; every other table function is refused.
const PURE_TABLE_FUNCTIONS: [&str; 2] = ["generate_series", "range"];

/// What a query produced, before it is stored.
#[derive(Debug, Clone)]
pub struct QueryOutcome {
    /// The result's schema.
    pub schema: SchemaRef,
    /// The rows (at most `max_rows`).
    pub batches: Vec<RecordBatch>,
    /// Rows in `batches`.
    pub rows: usize,
    /// The row limit cut the result.
    pub truncated: bool,
    /// No aggregation: each row may be one person's record (views are capped, D9/R6).
    pub row_level: bool,
    /// Time taken.
    pub elapsed: Duration,
}

/// An object-store registry that has no stores and accepts none: no query reaches a file system,
/// whatever path or URL it names.
#[derive(Debug)]
struct NoObjectStores;

impl ObjectStoreRegistry for NoObjectStores {
    fn register_store(&self, _url: &url::Url, _store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        None
    }

    fn get_store(&self, url: &url::Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        Err(DataFusionError::Plan(format!(
            "no object store is available in the Visiting environment ({})",
            url.scheme()
        )))
    }
}

fn refused(reason: impl Into<String>) -> WorkspaceError {
    WorkspaceError::Refused { rule: "R13", reason: reason.into() }
}

/// Checks a query's text before anything runs: exactly one `SELECT` (or `WITH … SELECT`), naming only
/// `tables` (plus this context's own `information_schema` and the pure table functions).
pub fn check_sql(sql: &str, tables: &[String]) -> Result<DfStatement, WorkspaceError> {
    let mut stmts = DFParser::parse_sql(sql).map_err(|e| WorkspaceError::Sql(e.to_string()))?;
    if stmts.len() != 1 {
        return Err(WorkspaceError::Refused {
            rule: "R6",
            reason: format!("one statement per query, got {}", stmts.len()),
        });
    }
    let stmt = stmts.pop_front().expect("one");
    match &stmt {
        DfStatement::Statement(s) if matches!(**s, SqlStatement::Query(_)) => {}
        DfStatement::CreateExternalTable(_) => return Err(refused("CREATE EXTERNAL TABLE reads files: not allowed")),
        DfStatement::CopyTo(_) => return Err(refused("COPY … TO writes files: not allowed")),
        _ => {
            return Err(WorkspaceError::Refused {
                rule: "R6",
                reason: "only SELECT queries run in the Visiting environment".into(),
            });
        }
    }
    let (refs, _ctes) = resolve_table_references(&stmt, true).map_err(|e| WorkspaceError::Sql(e.to_string()))?;
    for r in refs {
        let ok = match &r {
            TableReference::Bare { table } => {
                tables.iter().any(|t| t == table.as_ref()) || PURE_TABLE_FUNCTIONS.contains(&table.as_ref())
            }
            TableReference::Partial { schema, table } => match schema.as_ref() {
                "information_schema" => matches!(table.as_ref(), "tables" | "columns"),
                "public" => tables.iter().any(|t| t == table.as_ref()),
                _ => false,
            },
            TableReference::Full { catalog, schema, table } => {
                catalog.as_ref() == "datafusion"
                    && schema.as_ref() == "public"
                    && tables.iter().any(|t| t == table.as_ref())
            }
        };
        if !ok {
            return Err(refused(format!("{r} is not a table of this workspace")));
        }
    }
    Ok(stmt)
}

/// The tables a query names (bare names, sorted, once each), for describing a tool to the creator.
pub fn tables_read(sql: &str) -> Result<Vec<String>, WorkspaceError> {
    let stmt = DFParser::parse_sql(sql)
        .map_err(|e| WorkspaceError::Sql(e.to_string()))?
        .pop_front()
        .ok_or_else(|| WorkspaceError::Sql("no statement".into()))?;
    let (refs, _) = resolve_table_references(&stmt, true).map_err(|e| WorkspaceError::Sql(e.to_string()))?;
    let mut v: Vec<String> = refs.iter().map(|r| r.table().to_owned()).collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Runs `sql` over `tables` (name, schema, batches) and the approved tools `views` (name, SQL over
/// the tables only) under `limits`.
pub async fn run(
    sql: &str,
    tables: Vec<(String, SchemaRef, Vec<RecordBatch>)>,
    views: Vec<(String, String)>,
    limits: Limits,
) -> Result<QueryOutcome, WorkspaceError> {
    let table_names: Vec<String> = tables.iter().map(|(n, _, _)| n.clone()).collect();
    // A view reads tables only, never another view, so no order or cycle matters.
    for (_, text) in &views {
        check_sql(text, &table_names)?;
    }
    let mut names = table_names;
    names.extend(views.iter().map(|(n, _)| n.clone()));
    check_sql(sql, &names)?;
    let start = Instant::now();
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory_bytes, 1.0)
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
        .with_object_store_registry(Arc::new(NoObjectStores))
        .build_arc()
        .map_err(|e| WorkspaceError::Sql(e.to_string()))?;
    // Two partitions: the machine is shared by every workspace; information_schema shows only the
    // tables registered below, since the context is this query's alone.
    let config = SessionConfig::new().with_target_partitions(2).with_information_schema(true);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    for (name, schema, batches) in tables {
        let t = MemTable::try_new(schema, vec![batches]).map_err(|e| WorkspaceError::Sql(e.to_string()))?;
        ctx.register_table(name.as_str(), Arc::new(t)).map_err(|e| WorkspaceError::Sql(e.to_string()))?;
    }
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    for (name, text) in &views {
        let df = ctx.sql_with_options(text, options).await.map_err(df_err)?;
        ctx.register_table(name.as_str(), df.into_view()).map_err(|e| WorkspaceError::Sql(e.to_string()))?;
    }
    let work = async {
        let df = ctx.sql_with_options(sql, options).await.map_err(df_err)?;
        let row_level = !df
            .logical_plan()
            .exists(|p| Ok(matches!(p, LogicalPlan::Aggregate(_))))
            .map_err(|e| WorkspaceError::Sql(e.to_string()))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await.map_err(df_err)?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        let mut truncated = false;
        while let Some(b) = stream.next().await {
            let b = b.map_err(df_err)?;
            let room = limits.max_rows - rows;
            if b.num_rows() > room {
                batches.push(b.slice(0, room));
                rows += room;
                truncated = true;
                break;
            }
            rows += b.num_rows();
            batches.push(b);
            if rows == limits.max_rows {
                // A further row would be cut; ask for one more batch only to know.
                truncated = stream.next().await.is_some_and(|b| b.is_ok_and(|b| b.num_rows() > 0));
                break;
            }
        }
        Ok::<_, WorkspaceError>(QueryOutcome { schema, batches, rows, truncated, row_level, elapsed: Duration::ZERO })
    };
    match tokio::time::timeout(limits.timeout, work).await {
        Ok(Ok(mut q)) => {
            q.elapsed = start.elapsed();
            Ok(q)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(WorkspaceError::Limit {
            limit: "time",
            detail: format!("the query ran longer than {} ms and was stopped", limits.timeout.as_millis()),
        }),
    }
}

fn df_err(e: DataFusionError) -> WorkspaceError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(m) => WorkspaceError::Limit { limit: "memory", detail: m.clone() },
        root => {
            let text = root.to_string();
            if text.contains("not found") && (text.contains("table") || text.contains("Table")) {
                refused(text)
            } else {
                WorkspaceError::Sql(text)
            }
        }
    }
}
