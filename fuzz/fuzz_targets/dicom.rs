//! DICOM Part 10 files: no panic, metadata rows bounded by the input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut p10 = vec![0u8; 128];
    p10.extend_from_slice(b"DICM");
    p10.extend_from_slice(data);
    for bytes in [data, &p10[..]] {
        if let Ok((f, px)) = kiban_formats::dicom::parse::read_metadata(bytes) {
            assert!(kiban_formats::dicom::metadata_rows("f", &f, px).len() <= bytes.len());
        }
        if let Ok(f) = kiban_formats::dicom::parse::read(bytes) {
            let _ = kiban_formats::dicom::parse::write(&f);
        }
    }
});
