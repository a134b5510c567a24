//! 特定健診 CDA XML: no panic, quarantine entries bounded.
#![no_main]
use kiban_formats::canonical::{Collected, RAW_LIMIT};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut c = Collected::default();
    kiban_formats::cda::read(data, "f", "p", &mut c);
    assert!(c.quarantined.iter().all(|q| q.raw.len() <= RAW_LIMIT));
});
