//! UKE receipt files: no panic, quarantine entries bounded.
#![no_main]
use kiban_formats::canonical::{Collected, RAW_LIMIT};
use kiban_formats::masters::Masters;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut c = Collected::default();
    kiban_formats::uke::read(data, "f", "p", &Masters::default(), &mut c).expect("in-memory reads do not fail");
    assert!(c.quarantined.iter().all(|q| q.raw.len() <= RAW_LIMIT));
});
