//! Pass 2 as data: what the chosen transformation does to each row, so that it can run somewhere
//! else (a DataFusion plan on a cluster) and give the same output as the streaming pass here.
//!
//! The engine builds an [`ApplySpec`] after the search when [`crate::RunOptions::apply`] is set and
//! the policy needs nothing but keeping, deleting, tokens, re-keying with the run's own key and a
//! global generalization (A4 treatments, date coarsening, local recoding and a caller's re-keying
//! function stay in the streaming pass), also over a table the tuple budget folded. The function returns the transformed rows in input order
//! with [`SUPPRESSED_COLUMN`]; the engine drops or masks the suppressed ones and writes the output.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DeidError, Result};
use crate::io::{BATCH_ROWS, Sink, hash_batch};

/// The column that marks a suppressed row in the rows an [`ApplyFn`] returns.
pub const SUPPRESSED_COLUMN: &str = "__kiban_suppressed";

/// Runs pass 2 from its [`ApplySpec`] elsewhere and hands every transformed batch, in input order,
/// to the sink: the spec's output columns (UTF-8) then [`SUPPRESSED_COLUMN`] (boolean, never null).
pub type ApplyFn = dyn Fn(&ApplySpec, &mut dyn FnMut(RecordBatch) -> Result<()>) -> Result<()> + Send + Sync;

/// What one output column is made of (its input column has the same name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyColumn {
    /// The value as read.
    Keep,
    /// [`token`] under the run's token key (A2).
    Token,
    /// [`token`] under the run's release key (A3).
    Rekey,
    /// The label of quasi-identifier `qi` of [`ApplySpec::qi`]; `*` when the row is suppressed.
    Generalize {
        /// Index into [`ApplySpec::qi`].
        qi: usize,
    },
}

/// One quasi-identifier's recoding at the chosen level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QiApply {
    /// Input column.
    pub column: String,
    /// Each value seen in pass 1 with its released label; a value not here suppresses its row.
    pub labels: BTreeMap<String, String>,
    /// When the tuple budget folded this quasi-identifier: each value with the value that stands
    /// for its group in [`ApplySpec::failing`] (empty: every value stands for itself).
    #[serde(default)]
    pub fold: BTreeMap<String, String>,
}

/// Pass 2 of one run as data. Holds the run's token keys: never log it, seal it before it travels.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplySpec {
    /// Output columns in order, by input column name.
    pub columns: Vec<(String, ApplyColumn)>,
    /// The quasi-identifiers, in tuple order.
    pub qi: Vec<QiApply>,
    /// Tuples of values (in [`ApplySpec::qi`] order, each value through [`QiApply::fold`]) whose
    /// records the search suppressed.
    pub failing: Vec<Vec<String>>,
    /// Suppressed records stay with `*` in their quasi-identifiers (else they are removed).
    pub mask: bool,
    /// The input is CSV: values are read trimmed and an empty field is the empty string; Parquet
    /// values are read as text untrimmed and nulls stay null.
    pub csv: bool,
    /// CSV delimiter.
    pub delimiter: u8,
    /// Key of [`ApplyColumn::Token`] columns, random for this run.
    pub token_key: [u8; 32],
    /// Key of [`ApplyColumn::Rekey`] columns, random for this run.
    pub release_key: [u8; 32],
}

impl std::fmt::Debug for ApplySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplySpec")
            .field("columns", &self.columns)
            .field("qi", &self.qi.iter().map(|q| &q.column).collect::<Vec<_>>())
            .field("failing", &self.failing.len())
            .field("mask", &self.mask)
            .finish_non_exhaustive()
    }
}

impl Drop for ApplySpec {
    fn drop(&mut self) {
        self.token_key = [0u8; 32];
        self.release_key = [0u8; 32];
        std::hint::black_box(&self.token_key);
        std::hint::black_box(&self.release_key);
    }
}

/// The token of `value` in `column` under `key`: the first 12 bytes of SHA-256(key ‖ column ‖ 0 ‖
/// value), in hex (the engine's id_code tokens and default re-keyed link codes).
pub fn token(key: &[u8; 32], column: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(key);
    h.update(column.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    hex::encode(&h.finalize()[..12])
}

/// Writes what `f` returns for `spec` to the sink, in chunks of the input's batch size (so the
/// output file has the bytes the streaming pass writes); returns (records out, records read).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_remote(
    f: &ApplyFn,
    spec: &ApplySpec,
    out_schema: &SchemaRef,
    sink: &mut Sink,
    out_hash: &mut Sha256,
    memory: bool,
    mut progress: impl FnMut(u64),
) -> Result<(u64, u64)> {
    let mut with_flag: Vec<Field> = out_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    with_flag.push(Field::new(SUPPRESSED_COLUMN, DataType::Boolean, false));
    let in_schema: SchemaRef = std::sync::Arc::new(Schema::new(with_flag));
    let generalized: Vec<usize> = spec
        .columns
        .iter()
        .enumerate()
        .filter(|(_, (_, c))| matches!(c, ApplyColumn::Generalize { .. }))
        .map(|(i, _)| i)
        .collect();
    let (mut out, mut done) = (0u64, 0u64);
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0usize;
    let mut emit = |chunk: RecordBatch, out: &mut u64, done: &mut u64| -> Result<()> {
        let flag = chunk
            .column(chunk.num_columns() - 1)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| DeidError::format("pass 2", "the suppression flag is not boolean"))?
            .clone();
        let mut cols: Vec<ArrayRef> = chunk.columns()[..chunk.num_columns() - 1].to_vec();
        if spec.mask {
            let star = StringArray::new_scalar("*");
            for &i in &generalized {
                cols[i] = arrow::compute::kernels::zip::zip(&flag, &star, &cols[i])
                    .map_err(|e| DeidError::format("pass 2", e))?;
            }
        }
        let b = RecordBatch::try_new(out_schema.clone(), cols).map_err(|e| DeidError::format("pass 2", e))?;
        let b = if spec.mask {
            b
        } else {
            let keep = arrow::compute::not(&flag).map_err(|e| DeidError::format("pass 2", e))?;
            filter_record_batch(&b, &keep).map_err(|e| DeidError::format("pass 2", e))?
        };
        *out += b.num_rows() as u64;
        *done += chunk.num_rows() as u64;
        progress(*done);
        if memory {
            hash_batch(out_hash, &b);
        }
        sink.write(b)
    };
    f(spec, &mut |b: RecordBatch| {
        if b.num_columns() != in_schema.fields().len() || b.column(b.num_columns() - 1).null_count() > 0 {
            return Err(DeidError::format("pass 2", "the transformed rows do not have the output's columns"));
        }
        let b = RecordBatch::try_new(in_schema.clone(), b.columns().to_vec())
            .map_err(|e| DeidError::format("pass 2", e))?;
        pending_rows += b.num_rows();
        pending.push(b);
        while pending_rows >= BATCH_ROWS {
            let all = concat_batches(&in_schema, &pending).map_err(|e| DeidError::format("pass 2", e))?;
            emit(all.slice(0, BATCH_ROWS), &mut out, &mut done)?;
            let rest = all.slice(BATCH_ROWS, all.num_rows() - BATCH_ROWS);
            pending_rows = rest.num_rows();
            pending = vec![rest];
        }
        Ok(())
    })?;
    if pending_rows > 0 {
        let all = concat_batches(&in_schema, &pending).map_err(|e| DeidError::format("pass 2", e))?;
        emit(all, &mut out, &mut done)?;
    }
    Ok((out, done))
}
