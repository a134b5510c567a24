//! Bad input: truncated files, wrong encodings, mixed line endings, BOMs, missing segments. Each
//! becomes a clear quarantine entry (file, place, field, reason) or, where harmless, reads correctly.

use kiban_formats::canonical::{Collected, Record, Table};
use kiban_formats::encoding::encode_sjis;
use kiban_formats::hl7::{self, Origin};
use kiban_formats::masters::Masters;
use kiban_formats::{ssmix2, uke};

use crate::common::{of_provider, synth_records};

const O: Origin<'static> = Origin { file: "m.hl7", provider_id: "prov-a" };

fn adt() -> (String, Vec<u8>) {
    let recs = of_provider(&synth_records(20), "prov-a");
    let refs: Vec<&Record> = recs.iter().filter(|r| r.table() == Table::Patients).take(1).collect();
    let m = hl7::messages_for_patient(&refs).remove(0);
    let bytes = hl7::encode_message(&m.text).unwrap();
    (m.text, bytes)
}

fn read(bytes: &[u8]) -> Collected {
    let mut c = Collected::default();
    hl7::read_bytes(bytes, &O, &mut c);
    c
}

#[test]
fn b2_hl7_wrong_encodings_are_named() {
    let (text, _) = adt();
    let c = read(text.as_bytes());
    assert!(c.records.is_empty());
    assert_eq!((c.quarantined[0].location.as_str(), c.quarantined[0].field.as_str()), ("message 1", "message"));
    assert!(c.quarantined[0].problem.contains("ISO-2022-JP") && c.quarantined[0].problem.contains("UTF-8"));
    let c = read(&encode_sjis(&text).unwrap());
    assert!(c.quarantined[0].problem.contains("Shift_JIS"), "{}", c.quarantined[0].problem);
    // Declared UTF-8 in MSH-18: read as UTF-8.
    let utf8 = text.replace("~ISO IR87", "UNICODE UTF-8");
    let c = read(utf8.as_bytes());
    assert!(c.quarantined.is_empty() && c.records.len() == 1, "{:?}", c.quarantined);
}

#[test]
fn b2_hl7_truncated_messages_are_quarantined() {
    let (_, bytes) = adt();
    // Cut inside the kanji of PID-5: an ISO-2022-JP double-byte run ends half-way.
    let esc = bytes.windows(3).position(|w| w == b"\x1b$B").unwrap();
    let c = read(&bytes[..esc + 4]);
    assert!(c.records.is_empty());
    assert!(c.quarantined[0].problem.contains("truncated"), "{:?}", c.quarantined);
    // The same cut inside a message that still ends with CR: the decoder refuses the half character.
    let mut half = bytes[..esc + 4].to_vec();
    half.push(b'\r');
    let c = read(&half);
    assert!(c.records.is_empty());
    assert!(c.quarantined[0].problem.contains("ISO-2022-JP"), "{:?}", c.quarantined);
    // Cut right after MSH: the PID segment is missing.
    let cr = bytes.iter().position(|&b| b == b'\r').unwrap();
    let c = read(&bytes[..cr + 1]);
    assert_eq!(c.quarantined.len(), 1);
    assert_eq!(c.quarantined[0].field, "PID");
    assert!(c.quarantined[0].problem.contains("missing segment PID"));
    // Cut inside MSH-2, or anywhere short of the last CR: never half a field.
    let c = read(&bytes[..5]);
    assert_eq!(c.quarantined[0].field, "segment");
    let c = read(&bytes[..bytes.len() - 3]);
    assert!(c.records.is_empty());
    assert!(c.quarantined[0].problem.contains("truncated"), "{:?}", c.quarantined);
}

#[test]
fn b2_hl7_bom_and_mixed_line_endings_read_the_same() {
    let (_, bytes) = adt();
    let clean = read(&bytes);
    assert_eq!(clean.records.len(), 1);
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(&bytes);
    assert_eq!(read(&bom).records, clean.records);
    let mut mixed = Vec::new();
    for (k, seg) in bytes.split(|&b| b == b'\r').enumerate() {
        mixed.extend_from_slice(seg);
        mixed.extend_from_slice([&b"\r\n"[..], b"\n", b"\r"][k % 3]);
    }
    let c = read(&mixed);
    assert!(c.quarantined.is_empty(), "{:?}", c.quarantined);
    assert_eq!(c.records, clean.records);
}

#[test]
fn b2_hl7_missing_segments_and_bad_fields_name_the_segment() {
    let ppr = "MSH|^~\\&|A|B|||20240101||PPR^ZD1^PPR_ZD1|1|P|2.5\rPID|||123^^^^PI\r";
    let c = read(ppr.as_bytes());
    assert_eq!((c.quarantined[0].field.as_str(), c.records.len()), ("PRB", 0));
    let a01 = "MSH|^~\\&|A|B|||20240101||ADT^A01^ADT_A01|1|P|2.5\rPID|||123^^^^PI||山田^太郎||19700230|M\r";
    let c = read(&hl7::encode_message(a01).unwrap());
    let fields: Vec<&str> = c.quarantined.iter().map(|q| q.field.as_str()).collect();
    assert_eq!(fields, vec!["PID-7", "PV1"], "{:?}", c.quarantined);
    assert_eq!(c.quarantined[0].location, "message 1 segment 2 (PID)");
    let oru = "MSH|^~\\&|A|B|||20240101||ORU^R01^ORU_R01|1|P|2.5\rPID|||123^^^^PI\rOBR|1||||||20240101\rOBX|1|NM|3D046^HbA1c^JC10||abc|%\rOBX|2|TX|X^所見^99L||所見なし\r";
    let c = read(&hl7::encode_message(oru).unwrap());
    assert_eq!(c.records.len(), 1, "the text result survives its bad neighbour");
    assert_eq!(
        (c.quarantined[0].field.as_str(), c.quarantined[0].location.as_str()),
        ("OBX-5", "message 1 segment 4 (OBX)")
    );
}

#[test]
fn b2_ssmix2_misplaced_deleted_and_stray_files_are_quarantined() {
    let recs = of_provider(&synth_records(10), "prov-a");
    let tmp = tempfile::tempdir().unwrap();
    let st = ssmix2::write(tmp.path(), &recs).unwrap();
    let mut all = Collected::default();
    ssmix2::walk(tmp.path(), "prov-a", &mut all);
    assert!(all.quarantined.is_empty());
    // Pick one message file and damage the tree around it.
    let mut files = Vec::new();
    fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { walk(&p, out) } else { out.push(p) }
        }
    }
    walk(tmp.path(), &mut files);
    files.sort();
    assert_eq!(files.len() as u64, st.files);
    let f = &files[0];
    let name = f.file_name().unwrap().to_string_lossy().into_owned();
    let deleted = f.with_file_name(format!("{}1", &name[..name.len() - 1]));
    std::fs::copy(f, &deleted).unwrap();
    std::fs::write(tmp.path().join("README.txt"), "stray").unwrap();
    std::fs::write(f.with_file_name("badname"), "x").unwrap();
    let mut got = Collected::default();
    ssmix2::walk(tmp.path(), "prov-a", &mut got);
    assert_eq!(got.records.len(), all.records.len(), "good files still read");
    let mut fields: Vec<&str> = got.quarantined.iter().map(|q| q.field.as_str()).collect();
    fields.sort();
    assert_eq!(fields, vec!["condition flag", "file name", "path"], "{:?}", got.quarantined);
}

fn uke_file() -> (Vec<u8>, Masters, usize) {
    let recs = of_provider(&synth_records(20), "prov-b");
    let mut m = Masters::default();
    let mut out = Vec::new();
    uke::write(&mut out, &recs, "1", uke::Variant::Medical, &mut m).unwrap();
    let mut clean = Collected::default();
    uke::read(&out[..], "r.uke", "prov-b", &m, &mut clean).unwrap();
    assert!(clean.quarantined.is_empty());
    (out, m, clean.records.len())
}

fn uke_read(b: &[u8], m: &Masters) -> Collected {
    let mut c = Collected::default();
    uke::read(b, "r.uke", "prov-b", m, &mut c).unwrap();
    c
}

#[test]
fn b2_uke_truncated_file_is_reported_at_its_end() {
    let (out, m, _) = uke_file();
    let cut = &out[..out.len() * 2 / 3];
    let c = uke_read(cut, &m);
    let last = c.quarantined.last().unwrap();
    assert_eq!(last.field, "GO");
    assert!(last.problem.contains("truncated"), "{}", last.problem);
    assert!(last.location.starts_with("end of file"));
    let partial = &c.quarantined[c.quarantined.len() - 2];
    assert!(partial.problem.contains("middle of this line"), "{partial:?}");
    assert!(!c.records.is_empty(), "receipts before the cut are kept");
}

#[test]
fn b2_uke_wrong_encoding_quarantines_each_line_with_its_number() {
    let (out, m, _) = uke_file();
    let text = encoding_rs::SHIFT_JIS.decode(&out).0.into_owned();
    let c = uke_read(text.as_bytes(), &m);
    assert!(
        c.quarantined.iter().any(|q| q.location == "line 1" && q.problem.contains("UTF-8")),
        "{:?}",
        &c.quarantined[..2]
    );
    // With a BOM it is still UTF-8, so still the wrong encoding, and said so.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(text.as_bytes());
    let c = uke_read(&bom, &m);
    assert!(c.quarantined.iter().any(|q| q.location == "line 1" && q.problem.contains("UTF-8")));
    // Nothing decoded as mojibake: every receipt whose RE line held Japanese was quarantined.
    assert_eq!(c.of(Table::Patients).count(), 0, "{:?}", c.records.first());
}

#[test]
fn b2_uke_mixed_line_endings_read_the_same() {
    let (out, m, n) = uke_file();
    let mut mixed = Vec::new();
    for (k, line) in out.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        mixed.extend_from_slice(line);
        mixed.extend_from_slice([&b"\r\n"[..], b"\n", b"\r"][k % 3]);
    }
    let c = uke_read(&mixed, &m);
    assert!(c.quarantined.is_empty(), "{:?}", c.quarantined);
    assert_eq!(c.records.len(), n);
}

#[test]
fn b2_uke_structure_errors_are_named() {
    let m = Masters::default();
    let text = "SY,0000999,5060401,1,,高血圧症,01,\r\nRE,1,1112,50604,山田太郎,1,3450101,70,,,,,,12345,,,,,,,,01\r\nXX,1\r\nGO,2,0,99\r\n";
    let c = uke_read(&encode_sjis(text).unwrap(), &m);
    let got: Vec<(&str, &str)> = c.quarantined.iter().map(|q| (q.location.as_str(), q.field.as_str())).collect();
    assert_eq!(got, vec![("line 1", "record"), ("line 2", "IR"), ("line 3", "record"), ("line 4", "GO.1 総件数")]);
    assert_eq!(c.of(Table::Encounters).count(), 1);
}

#[test]
fn b2_fhir_truncated_bom_and_bad_lines() {
    let recs = of_provider(&synth_records(10), "prov-c");
    let mut nd = Vec::new();
    kiban_formats::fhir::write_ndjson(&mut nd, &recs).unwrap();
    let first_line_end = nd.iter().position(|&b| b == b'\n').unwrap();
    let first = &nd[..first_line_end];
    // A whole Bundle cut in half: one clear entry, says truncated, no records.
    let mut c = Collected::default();
    kiban_formats::fhir::read_json(&first[..first.len() / 2], "b.json", "prov-c", &mut c);
    assert!(c.records.is_empty());
    assert!(c.quarantined[0].problem.contains("truncated"), "{}", c.quarantined[0].problem);
    // With a BOM: read as usual.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(first);
    let mut c = Collected::default();
    kiban_formats::fhir::read_json(&bom, "b.json", "prov-c", &mut c);
    assert!(c.quarantined.is_empty() && !c.records.is_empty());
    // NDJSON with one damaged line: only that line is quarantined, by its number.
    let mut damaged = nd.clone();
    damaged.truncate(first_line_end + 1);
    damaged.extend_from_slice(b"{\"resourceType\": \"Bundle\", \"entry\": [\n");
    damaged.extend_from_slice(&nd[first_line_end + 1..]);
    let mut all = Collected::default();
    kiban_formats::fhir::read_ndjson(&nd[..], "x.ndjson", "prov-c", &mut all).unwrap();
    let mut c = Collected::default();
    kiban_formats::fhir::read_ndjson(&damaged[..], "x.ndjson", "prov-c", &mut c).unwrap();
    assert_eq!(c.records.len(), all.records.len());
    assert_eq!((c.quarantined.len(), c.quarantined[0].location.as_str()), (1, "line 2"));
}

#[test]
fn b2_dpc_wrong_encoding_is_named_per_line() {
    let text = "131234567\t0001\t20240110\t20240101\t0\tA006010\t1\t0\t0000999\tI10\t\t\t\t\t\t\t本態性高血圧症\n";
    let mut c = Collected::default();
    kiban_formats::dpc::read(
        text.as_bytes(),
        kiban_formats::dpc::DpcFile::Form1,
        "f.txt",
        "p",
        &Masters::default(),
        &mut c,
    )
    .unwrap();
    assert!(c.records.is_empty());
    assert_eq!(c.quarantined[0].location, "line 1");
    assert!(c.quarantined[0].problem.contains("UTF-8"));
    let mut c = Collected::default();
    let sj = encode_sjis(text).unwrap();
    kiban_formats::dpc::read(&sj[..], kiban_formats::dpc::DpcFile::Form1, "f.txt", "p", &Masters::default(), &mut c)
        .unwrap();
    assert!(c.quarantined.is_empty());
    assert_eq!(c.records.len(), 1);
    // Cut at the end of the file (no line ending): the last line may be half, so it is not read.
    let cut = encode_sjis(text.trim_end()).unwrap();
    let mut c = Collected::default();
    kiban_formats::dpc::read(&cut[..], kiban_formats::dpc::DpcFile::Form1, "f.txt", "p", &Masters::default(), &mut c)
        .unwrap();
    assert!(c.records.is_empty());
    assert!(c.quarantined[0].problem.contains("no line ending"), "{:?}", c.quarantined);
}
