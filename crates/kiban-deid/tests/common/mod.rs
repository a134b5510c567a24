//! Test helpers: tables as record batches, policies from TOML text, an independent class counter.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use kiban_deid::Policy;

/// A batch of string columns.
pub fn batch(header: &[&str], rows: &[Vec<&str>]) -> RecordBatch {
    let schema = Arc::new(Schema::new(header.iter().map(|h| Field::new(*h, DataType::Utf8, true)).collect::<Vec<_>>()));
    let cols: Vec<ArrayRef> = (0..header.len())
        .map(|c| Arc::new(StringArray::from(rows.iter().map(|r| r[c]).collect::<Vec<_>>())) as ArrayRef)
        .collect();
    RecordBatch::try_new(schema, cols).expect("batch")
}

/// A policy from TOML text (hierarchy paths relative to the crate).
pub fn policy(text: &str) -> Policy {
    Policy::from_toml(text, Path::new(env!("CARGO_MANIFEST_DIR")), &BTreeMap::new()).expect("valid policy")
}

/// Column names of output batches.
pub fn names(batches: &[RecordBatch]) -> Vec<String> {
    batches.first().map(|b| b.schema().fields().iter().map(|f| f.name().clone()).collect()).unwrap_or_default()
}

/// Values of a column over all batches (null as `None`).
pub fn column(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let i = b.schema().index_of(name).expect("column");
        let a = b.column(i).as_any().downcast_ref::<StringArray>().expect("utf8");
        for r in 0..a.len() {
            out.push(a.is_valid(r).then(|| a.value(r).to_owned()));
        }
    }
    out
}

/// Independent counter: sizes of the classes formed by the given columns of the output.
pub fn class_sizes(batches: &[RecordBatch], cols: &[&str]) -> Vec<u64> {
    let vals: Vec<Vec<Option<String>>> = cols.iter().map(|c| column(batches, c)).collect();
    let n = vals.first().map_or(0, Vec::len);
    let mut m: HashMap<Vec<Option<String>>, u64> = HashMap::new();
    for r in 0..n {
        *m.entry(vals.iter().map(|v| v[r].clone()).collect()).or_default() += 1;
    }
    m.into_values().collect()
}
