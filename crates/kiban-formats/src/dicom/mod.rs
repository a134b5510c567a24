//! DICOM files: a Part 10 reader and writer ([`parse`]), Specific Character Set decoding and
//! re-encoding including the Japanese ISO 2022 code extensions ([`charset`]), and the metadata table
//! (one row per attribute, nested sequences by path, pixel data kept by reference to the file).

pub mod charset;
pub mod parse;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

pub use charset::CharacterSet;
pub use parse::{
    DataSet, DicomError, DicomFile, Element, PixelRef, Tag, TransferSyntax, Value, Vr, read, read_metadata,
    read_without_meta, write,
};

/// The character set in force for `ds`, given the one inherited from the enclosing data set.
pub fn charset_of(ds: &DataSet, inherited: &CharacterSet) -> CharacterSet {
    match ds.get(Tag::SPECIFIC_CHARACTER_SET).and_then(Element::bytes) {
        Some(b) => CharacterSet::parse(&String::from_utf8_lossy(b)),
        None => inherited.clone(),
    }
}

/// A value as text: charset-decoded for text VRs, numbers for binary numeric VRs, a size for bulk data.
pub fn display_value(el: &Element, cs: &CharacterSet, little: bool) -> String {
    let b = match &el.value {
        Value::Bytes(b) => b,
        Value::Seq(items) => return format!("<{} items>", items.len()),
        Value::Fragments { fragments, .. } => return format!("<{} fragments>", fragments.len()),
    };
    if el.vr.is_charset_text() {
        return cs.decode(b);
    }
    if el.vr.is_text() {
        return String::from_utf8_lossy(b).trim_end_matches(['\0', ' ']).to_owned();
    }
    let nums = |w: usize, f: &dyn Fn(&[u8]) -> String| -> String {
        if b.len() > 64 * w {
            return format!("<{} bytes>", b.len());
        }
        b.chunks_exact(w).map(f).collect::<Vec<_>>().join("\\")
    };
    let arr = |c: &[u8]| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..c.len()].copy_from_slice(c);
        if !little {
            a[..c.len()].reverse();
        }
        a
    };
    match &el.vr.0 {
        b"US" => nums(2, &|c| u16::from_le_bytes(arr(c)[..2].try_into().unwrap_or_default()).to_string()),
        b"SS" => nums(2, &|c| i16::from_le_bytes(arr(c)[..2].try_into().unwrap_or_default()).to_string()),
        b"UL" => nums(4, &|c| u32::from_le_bytes(arr(c)[..4].try_into().unwrap_or_default()).to_string()),
        b"SL" => nums(4, &|c| i32::from_le_bytes(arr(c)[..4].try_into().unwrap_or_default()).to_string()),
        b"FL" => nums(4, &|c| f32::from_le_bytes(arr(c)[..4].try_into().unwrap_or_default()).to_string()),
        b"FD" => nums(8, &|c| f64::from_le_bytes(arr(c)).to_string()),
        _ => format!("<{} bytes>", b.len()),
    }
}

/// One attribute of one file in the metadata table.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaRow {
    /// The file.
    pub file: String,
    /// Path of the attribute: `gggg,eeee` at top level, `gggg,eeee[i].gggg,eeee` inside sequences.
    pub path: String,
    /// Keyword from the standard dictionary (empty for private or unknown tags).
    pub keyword: String,
    /// VR.
    pub vr: String,
    /// The value as text (decoded from the file's character set).
    pub value: String,
}

/// Metadata of one file: a row per attribute (meta header included), and the pixel data reference row
/// (`value` = `@offset+length` into the file) instead of the pixels.
pub fn metadata_rows(file_name: &str, f: &DicomFile, pixels: Option<PixelRef>) -> Vec<MetaRow> {
    let mut rows = Vec::new();
    let cs = CharacterSet::default();
    walk(file_name, "", &f.meta, &cs, true, &mut rows);
    walk(file_name, "", &f.dataset, &cs, f.ts.little, &mut rows);
    if let Some(p) = pixels {
        rows.push(MetaRow {
            file: file_name.to_owned(),
            path: "7FE0,0010".into(),
            keyword: "PixelData".into(),
            vr: "OB".into(),
            value: format!("@{}+{}", p.offset, p.length),
        });
    }
    rows
}

fn walk(file: &str, prefix: &str, ds: &DataSet, inherited: &CharacterSet, little: bool, rows: &mut Vec<MetaRow>) {
    let cs = charset_of(ds, inherited);
    for el in &ds.elements {
        let path = format!("{prefix}{:04X},{:04X}", el.tag.0, el.tag.1);
        rows.push(MetaRow {
            file: file.to_owned(),
            path: path.clone(),
            keyword: el.tag.keyword().unwrap_or("").to_owned(),
            vr: el.vr.to_string(),
            value: display_value(el, &cs, little),
        });
        if let Value::Seq(items) = &el.value {
            for (i, item) in items.iter().enumerate() {
                walk(file, &format!("{path}[{i}]."), item, &cs, little, rows);
            }
        }
    }
}

/// A file that could not be read, with the reason (reported, never dropped silently).
#[derive(Debug, Clone)]
pub struct Quarantined {
    /// The file.
    pub file: PathBuf,
    /// Why.
    pub error: String,
}

/// Every regular file under `root` (sorted, so runs are reproducible).
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Reads the metadata of every file under `root` (a file or a folder): good files' rows and the
/// files that could not be read.
pub fn read_tree_metadata(root: &Path) -> (Vec<MetaRow>, Vec<Quarantined>) {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for p in files_under(root) {
        let name = p.display().to_string();
        match std::fs::read(&p).map_err(|e| e.to_string()).and_then(|b| read_metadata(&b).map_err(|e| e.to_string())) {
            Ok((f, px)) => rows.extend(metadata_rows(&name, &f, px)),
            Err(e) => bad.push(Quarantined { file: p, error: e }),
        }
    }
    (rows, bad)
}

/// The metadata table as an Arrow batch (columns file, path, keyword, vr, value, row).
pub fn rows_to_batch(rows: &[MetaRow]) -> RecordBatch {
    let col =
        |f: &dyn Fn(&MetaRow) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    let schema = Schema::new(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("keyword", DataType::Utf8, false),
        Field::new("vr", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("row", DataType::UInt64, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            col(&|r| &r.file),
            col(&|r| &r.path),
            col(&|r| &r.keyword),
            col(&|r| &r.vr),
            col(&|r| &r.value),
            Arc::new(UInt64Array::from_iter_values(0..rows.len() as u64)),
        ],
    )
    .expect("columns match the schema")
}
