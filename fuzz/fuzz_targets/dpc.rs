//! DPC EF and 様式1 files: no panic, quarantine entries bounded.
#![no_main]
use kiban_formats::canonical::{Collected, RAW_LIMIT};
use kiban_formats::dpc::{DpcFile, read};
use kiban_formats::masters::Masters;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for kind in [DpcFile::Ef, DpcFile::Form1] {
        let mut c = Collected::default();
        read(data, kind, "f", "p", &Masters::default(), &mut c).expect("in-memory reads do not fail");
        assert!(c.quarantined.iter().all(|q| q.raw.len() <= RAW_LIMIT));
    }
});
