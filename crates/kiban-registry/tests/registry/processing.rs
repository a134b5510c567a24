//! Processed datasets: the anonymized release path reads its source part by part (bounded memory)
//! and writes the same records as the whole source read at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use kiban_formats::Sealer;

/// A test sealer (not encryption): binds the AAD and flips the bytes; counts the parts it opens.
struct CountingSealer(AtomicUsize);

impl Sealer for CountingSealer {
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut v = (aad.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(aad);
        v.extend(plain.iter().map(|b| b ^ 0xa5));
        v
    }
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
        let n = u32::from_le_bytes(sealed.get(..4).ok_or("short")?.try_into().expect("4 bytes")) as usize;
        if sealed.get(4..4 + n) != Some(aad) {
            return Err("wrong part".into());
        }
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(sealed[4 + n..].iter().map(|b| b ^ 0xa5).collect())
    }
}

const POLICY: &str = "version = 1\nname = \"stream-anon\"\n[privacy]\nk = 3\n\
    [hierarchies]\nage = { builder = \"flat\" }\nsex = { builder = \"flat\" }\n\
    [[columns]]\nname = \"patient_id\"\nrole = \"identifier\"\n\
    [[columns]]\nname = \"age_band\"\nrole = \"quasi_identifier\"\nhierarchy = \"age\"\n\
    [[columns]]\nname = \"sex\"\nrole = \"quasi_identifier\"\nhierarchy = \"sex\"\n\
    [[columns]]\nname = \"finding\"\nrole = \"keep\"\n";

/// Part `p` of the source: 40 records, a few with rare age bands so that something is suppressed.
fn part(p: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(
        ["patient_id", "age_band", "sex", "finding"].map(|c| Field::new(c, DataType::Utf8, true)).to_vec(),
    ));
    let n = 40;
    let col = |f: &dyn Fn(usize) -> String| Arc::new(StringArray::from((0..n).map(f).collect::<Vec<_>>())) as ArrayRef;
    RecordBatch::try_new(
        schema,
        vec![
            col(&|i| format!("P{p}{i:04}")),
            col(&|i| {
                if (p * n + i).is_multiple_of(37) {
                    format!("{}-", 95 + p)
                } else {
                    ["40-44", "45-49"][i % 2].to_owned()
                }
            }),
            col(&|i| ["1", "2"][(i / 2) % 2].to_owned()),
            col(&|i| format!("E{}", (p * n + i) % 7)),
        ],
    )
    .unwrap()
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<&StringArray> = b.columns().iter().map(|c| c.as_any().downcast_ref().unwrap()).collect();
        for r in 0..b.num_rows() {
            out.push(cols.iter().map(|c| c.is_valid(r).then(|| c.value(r).to_owned())).collect());
        }
    }
    out
}

#[test]
fn a7_an_anonymized_release_streams_a_multi_part_source_into_the_same_records_as_a_whole_read() {
    let tmp = tempfile::tempdir().unwrap();
    let sealer = Arc::new(CountingSealer(AtomicUsize::new(0)));
    let src = tmp.path().join("source");
    let w = kiban_formats::DatasetWriter::create(&src, "source", part(0).schema(), kiban_formats::FileFormat::Parquet)
        .unwrap()
        .sealed(sealer.clone());
    for p in 0..3 {
        w.write_part(&format!("part-{p:05}"), &[part(p)]).unwrap();
    }
    w.commit(serde_json::json!({})).unwrap();
    let policy = kiban_deid::Policy::from_toml(POLICY, tmp.path(), &BTreeMap::new()).unwrap();

    // Before: the whole source read into memory and anonymized at once.
    let whole: Vec<RecordBatch> = (0..3).map(part).collect();
    let opts = kiban_deid::RunOptions::default();
    let before =
        kiban_deid::anonymize(&policy, &kiban_deid::Input::Batches(whole), &kiban_deid::Output::Memory, &opts).unwrap();

    // Now: part by part, into a sealed dataset.
    let out = tmp.path().join("released");
    let made = kiban_registry::processing::anonymize_dataset_to_dataset(
        &policy,
        &src,
        Some(sealer.clone()),
        &opts,
        &out,
        "released",
        sealer.clone(),
        serde_json::json!({"release": "rel-test"}),
    )
    .unwrap();
    // Each pass of the engine opened the parts again instead of holding the source.
    let opened = sealer.0.load(Ordering::Relaxed);
    assert!(opened >= 6 && opened.is_multiple_of(3), "the 3 parts are read once per pass: {opened} opens");

    assert_eq!((made.records_in, made.records_out), (before.report.records_in, before.report.records_out));
    assert_eq!(made.records_in, 120);
    let m = kiban_formats::verify_dataset(&out).unwrap();
    assert!(m.sealed);
    let mut streamed = Vec::new();
    for f in &m.files {
        streamed.extend(kiban_formats::read_part(&out, &m, f, Some(sealer.as_ref())).unwrap());
    }
    assert_eq!(rows(&streamed), rows(&before.batches), "the same records, in the same order");
    let released = rows(&streamed);
    assert!(released.iter().any(|r| r.contains(&Some("*".to_owned()))), "the rare age bands were generalized (k = 3)");
    assert_eq!(m.columns.len(), 3, "the patient id is not released: {:?}", m.columns);
    let source_manifest = std::fs::read(src.join("manifest.json")).unwrap();
    let digest = kiban_registry::ledger::sha256_hex(&source_manifest);
    assert_eq!(m.provenance["source_sha256"], digest.as_str());
    assert_eq!(m.provenance["report"]["input_sha256"], digest.as_str());
    assert_eq!(m.provenance["policy_sha256"], policy.hash.as_str());
    assert_eq!(m.provenance["release"], "rel-test");
}
