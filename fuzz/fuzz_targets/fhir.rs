//! FHIR JSON and NDJSON: no panic, quarantine entries bounded.
#![no_main]
use kiban_formats::canonical::{Collected, RAW_LIMIT};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut c = Collected::default();
    kiban_formats::fhir::read_json(data, "f", "p", &mut c);
    kiban_formats::fhir::read_ndjson(data, "f", "p", &mut c).expect("in-memory reads do not fail");
    assert!(c.quarantined.iter().all(|q| q.raw.len() <= RAW_LIMIT));
});
