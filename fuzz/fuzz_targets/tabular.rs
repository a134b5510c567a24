//! CSV through a schema file: no panic, quarantine entries bounded.
#![no_main]
use kiban_formats::canonical::{Collected, RAW_LIMIT};
use kiban_formats::tabular::{SchemaFile, read_csv};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (schema, table) = SchemaFile::parse(
        "table = \"labs\"\nencoding = \"shift_jis\"\nprovider_id = \"p\"\n[columns]\npatient_id = \"a\"\nresult_date = \"b\"\nvalue = \"c\"",
    )
    .expect("valid schema");
    let mut c = Collected::default();
    read_csv(data, &schema, table, "f", &mut c);
    assert!(c.quarantined.iter().all(|q| q.raw.len() <= RAW_LIMIT));
});
