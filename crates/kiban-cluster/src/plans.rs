//! The bulk passes as DataFusion plans (DataFrames), the same in-process and on a cluster.

use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{Expr, ScalarUDF, col, lit};

use crate::{Result, df};

/// The column the gate pass adds: the verdict's name (`admitted`, `opted_out`, …).
pub const VERDICT_COLUMN: &str = "gate_verdict";
/// The count column of the QI frequency table.
pub const COUNT_COLUMN: &str = "n";

/// The opt-out gate: every input column plus [`VERDICT_COLUMN`] from `kiban_gate(provider_id,
/// patient_id, provision_date)`. Nothing is dropped: refused records keep their reason.
pub fn gate_pass(input: DataFrame, gate: Arc<ScalarUDF>, provision_date: &str) -> Result<DataFrame> {
    let mut cols: Vec<Expr> = input.schema().columns().into_iter().map(Expr::Column).collect();
    cols.push(gate.call(vec![col("provider_id"), col("patient_id"), col(provision_date)]).alias(VERDICT_COLUMN));
    input.select(cols).map_err(df("gate pass"))
}

/// Pseudonym tokens: each column of `columns` is replaced, under the same name, by its token
/// (`kiban_token(column, 'column')`); the other columns pass through.
pub fn tokenize_pass(input: DataFrame, token: Arc<ScalarUDF>, columns: &[&str]) -> Result<DataFrame> {
    for c in columns {
        if input.schema().field_with_unqualified_name(c).is_err() {
            return Err(crate::ClusterError::Input {
                field: (*c).to_owned(),
                rule: "a column to tokenize must exist in the input".into(),
            });
        }
    }
    let cols: Vec<Expr> = input
        .schema()
        .columns()
        .into_iter()
        .map(|c| {
            if columns.contains(&c.name.as_str()) {
                let name = c.name.clone();
                token.call(vec![Expr::Column(c), lit(name.clone())]).alias(name)
            } else {
                Expr::Column(c)
            }
        })
        .collect();
    input.select(cols).map_err(df("tokenize pass"))
}

/// The frequency table of distinct quasi-identifier tuples: one row per tuple of `qi` with its
/// count in [`COUNT_COLUMN`] (the k-anonymity search works on this, small beside the data).
pub fn qi_frequency(input: DataFrame, qi: &[&str]) -> Result<DataFrame> {
    let group: Vec<Expr> = qi.iter().map(|c| col(*c)).collect();
    input.aggregate(group, vec![count(lit(1)).alias(COUNT_COLUMN)]).map_err(df("QI frequency count"))
}
