//! HL7 v2.5 messages (SS-MIX2 files): no panic, quarantine entries bounded.
#![no_main]
use kiban_formats::canonical::{Collected, RAW_LIMIT};
use kiban_formats::hl7::{Origin, read_bytes};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut c = Collected::default();
    read_bytes(data, &Origin { file: "f", provider_id: "p" }, &mut c);
    assert!(c.quarantined.iter().all(|q| q.raw.len() <= RAW_LIMIT));
});
