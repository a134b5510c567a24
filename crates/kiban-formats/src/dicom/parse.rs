//! DICOM Part 10 files: the data set structure of PS3.5 §7 (explicit and implicit VR, little and big
//! endian, deflated), sequences and encapsulated pixel data, read into an owned tree and written back.
//!
//! Values stay raw bytes in the file's byte order: what kiban does not change is written back exactly
//! as read, so pixel data and numeric values survive byte for byte.

use std::fmt;
use std::io::{Read, Write};

use dicom_core::dictionary::DataDictionary;
use dicom_dictionary_std::StandardDataDictionary;

/// Why a file cannot be read; each names the offset and the rule that failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DicomError {
    /// No 128-byte preamble followed by `DICM`, so no file meta information.
    #[error("no DICOM file meta header (preamble + \"DICM\" missing)")]
    NoMetaHeader,
    /// The file ends inside an element.
    #[error("truncated at byte {offset}: {what}")]
    Truncated {
        /// Byte offset where more bytes were needed.
        offset: usize,
        /// What was being read.
        what: String,
    },
    /// The transfer syntax is not one kiban can parse.
    #[error("unknown transfer syntax {0:?}")]
    UnknownTransferSyntax(String),
    /// An explicit VR that is not a DICOM value representation.
    #[error("bad VR {vr:?} for tag {tag} at byte {offset}")]
    BadVr {
        /// The tag whose header was read.
        tag: Tag,
        /// The two bytes found.
        vr: String,
        /// Byte offset of the element.
        offset: usize,
    },
    /// Structure that breaks PS3.5 (bad item, bad length, deflate error).
    #[error("malformed data set at byte {offset}: {what}")]
    Malformed {
        /// Byte offset.
        offset: usize,
        /// What rule was broken.
        what: String,
    },
}

/// A data element tag (group, element).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub u16, pub u16);

impl Tag {
    /// Pixel Data (7FE0,0010).
    pub const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
    /// Specific Character Set (0008,0005).
    pub const SPECIFIC_CHARACTER_SET: Tag = Tag(0x0008, 0x0005);
    /// Transfer Syntax UID (0002,0010).
    pub const TRANSFER_SYNTAX: Tag = Tag(0x0002, 0x0010);
    const ITEM: Tag = Tag(0xFFFE, 0xE000);
    const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
    const SEQ_END: Tag = Tag(0xFFFE, 0xE0DD);

    /// True for private tags (odd group).
    pub fn is_private(self) -> bool {
        self.0 % 2 == 1
    }
    /// Parses `gggg,eeee` or `(gggg,eeee)` or `ggggeeee`.
    pub fn parse(s: &str) -> Option<Tag> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        if s.len() != 8 {
            return None;
        }
        Some(Tag(u16::from_str_radix(&s[..4], 16).ok()?, u16::from_str_radix(&s[4..], 16).ok()?))
    }
    /// The standard dictionary's keyword, if any.
    pub fn keyword(self) -> Option<&'static str> {
        StandardDataDictionary.by_tag(dicom_core::Tag(self.0, self.1)).map(|e| e.alias)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:04X},{:04X})", self.0, self.1)
    }
}

/// A value representation: two upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vr(pub [u8; 2]);

const KNOWN_VRS: &[&[u8; 2]] = &[
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF", b"OL",
    b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US",
    b"UT", b"UV",
];

impl Vr {
    /// Person Name.
    pub const PN: Vr = Vr(*b"PN");
    /// Sequence.
    pub const SQ: Vr = Vr(*b"SQ");
    /// Unknown.
    pub const UN: Vr = Vr(*b"UN");
    /// Unique identifier.
    pub const UI: Vr = Vr(*b"UI");
    /// Other byte.
    pub const OB: Vr = Vr(*b"OB");
    /// Other word.
    pub const OW: Vr = Vr(*b"OW");
    /// Long string.
    pub const LO: Vr = Vr(*b"LO");
    /// Short string.
    pub const SH: Vr = Vr(*b"SH");
    /// Code string.
    pub const CS: Vr = Vr(*b"CS");
    /// Short text.
    pub const ST: Vr = Vr(*b"ST");
    /// Date.
    pub const DA: Vr = Vr(*b"DA");
    /// Date time.
    pub const DT: Vr = Vr(*b"DT");
    /// Time.
    pub const TM: Vr = Vr(*b"TM");
    /// Unsigned long.
    pub const UL: Vr = Vr(*b"UL");
    /// Unsigned short.
    pub const US: Vr = Vr(*b"US");
    /// Integer string.
    pub const IS: Vr = Vr(*b"IS");

    fn known(b: [u8; 2]) -> bool {
        KNOWN_VRS.iter().any(|v| **v == b)
    }
    /// The VR as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
    /// VRs with a 4-byte length in explicit VR encoding.
    fn long_header(self) -> bool {
        matches!(
            &self.0,
            b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"UC" | b"UN" | b"UR" | b"UT" | b"SV" | b"UV"
        )
    }
    /// VRs whose text is affected by Specific Character Set.
    pub fn is_charset_text(self) -> bool {
        matches!(&self.0, b"SH" | b"LO" | b"ST" | b"LT" | b"UT" | b"PN" | b"UC")
    }
    /// VRs holding text at all (padded with spaces; UI with NUL).
    pub fn is_text(self) -> bool {
        self.is_charset_text()
            || matches!(&self.0, b"AE" | b"AS" | b"CS" | b"DA" | b"DS" | b"DT" | b"IS" | b"TM" | b"UI" | b"UR")
    }
    /// The standard dictionary's VR for `tag` (UN if unknown or private).
    pub fn of_tag(tag: Tag) -> Vr {
        if tag.is_private() && (0x0010..=0x00FF).contains(&tag.1) {
            return Vr::LO; // private creator
        }
        if tag.1 == 0 {
            return Vr::UL; // group length
        }
        StandardDataDictionary
            .by_tag(dicom_core::Tag(tag.0, tag.1))
            .map(|e| {
                let s = e.vr.relaxed().to_string().as_bytes();
                Vr([s[0], s[1]])
            })
            .unwrap_or(Vr::UN)
    }
}

impl fmt::Display for Vr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An element's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Raw bytes in the file's byte order (text without decoding).
    Bytes(Vec<u8>),
    /// A sequence of items.
    Seq(Vec<DataSet>),
    /// Encapsulated pixel data: the basic offset table and the fragments.
    Fragments {
        /// Basic offset table item's bytes (may be empty).
        offsets: Vec<u8>,
        /// Fragment items.
        fragments: Vec<Vec<u8>>,
    },
}

/// A data element.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// Tag.
    pub tag: Tag,
    /// VR (explicit or looked up for implicit files).
    pub vr: Vr,
    /// Value.
    pub value: Value,
}

impl Element {
    /// The raw bytes of a non-sequence value.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    /// The value as ASCII text with padding trimmed (for UI, CS, DA … which are never charset-encoded).
    pub fn ascii(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).trim_end_matches(['\0', ' ']).trim_start_matches(' ').to_owned())
    }
}

/// A data set (or sequence item): elements in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataSet {
    /// Elements as read (ascending tag order in a valid file).
    pub elements: Vec<Element>,
}

impl DataSet {
    /// The element with `tag`.
    pub fn get(&self, tag: Tag) -> Option<&Element> {
        self.elements.iter().find(|e| e.tag == tag)
    }
    /// Mutable element with `tag`.
    pub fn get_mut(&mut self, tag: Tag) -> Option<&mut Element> {
        self.elements.iter_mut().find(|e| e.tag == tag)
    }
    /// ASCII value of `tag`, trimmed.
    pub fn ascii(&self, tag: Tag) -> Option<String> {
        self.get(tag).and_then(Element::ascii)
    }
    /// Inserts or replaces an element, keeping ascending tag order.
    pub fn put(&mut self, el: Element) {
        match self.elements.binary_search_by(|e| e.tag.cmp(&el.tag)) {
            Ok(i) => self.elements[i] = el,
            Err(i) => self.elements.insert(i, el),
        }
    }
    /// Removes the element with `tag`.
    pub fn remove(&mut self, tag: Tag) {
        self.elements.retain(|e| e.tag != tag);
    }
}

/// How the data set after the meta header is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferSyntax {
    /// The UID.
    pub uid: String,
    /// Explicit VR.
    pub explicit: bool,
    /// Little endian.
    pub little: bool,
    /// Deflated data set.
    pub deflated: bool,
    /// Pixel data encapsulated (compressed).
    pub encapsulated: bool,
}

impl TransferSyntax {
    /// Parses a transfer syntax UID kiban can read.
    pub fn from_uid(uid: &str) -> Result<TransferSyntax, DicomError> {
        let t = |explicit, little, deflated, encapsulated| TransferSyntax {
            uid: uid.to_owned(),
            explicit,
            little,
            deflated,
            encapsulated,
        };
        Ok(match uid {
            "1.2.840.10008.1.2" => t(false, true, false, false),
            "1.2.840.10008.1.2.1" => t(true, true, false, false),
            "1.2.840.10008.1.2.2" => t(true, false, false, false),
            "1.2.840.10008.1.2.1.99" => t(true, true, true, false),
            "1.2.840.10008.1.2.1.98" | "1.2.840.10008.1.2.5" => t(true, true, false, true),
            u if u.starts_with("1.2.840.10008.1.2.4.") && u[20..].chars().all(|c| c.is_ascii_digit()) => {
                t(true, true, false, true)
            }
            _ => return Err(DicomError::UnknownTransferSyntax(uid.to_owned())),
        })
    }
}

/// A DICOM Part 10 file: preamble, file meta information, and the data set.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomFile {
    /// The 128-byte preamble (kept: it may hold a TIFF header, but is blanked by de-identification).
    pub preamble: Vec<u8>,
    /// Group 0002, explicit VR little endian.
    pub meta: DataSet,
    /// Transfer syntax of `dataset`.
    pub ts: TransferSyntax,
    /// The data set.
    pub dataset: DataSet,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the original file, for error messages.
    base: usize,
    explicit: bool,
    little: bool,
    depth: usize,
}

impl<'a> Reader<'a> {
    fn need(&self, n: usize, what: &str) -> Result<(), DicomError> {
        if self.buf.len().saturating_sub(self.pos) < n {
            return Err(DicomError::Truncated { offset: self.base + self.pos, what: what.to_owned() });
        }
        Ok(())
    }
    fn u16(&mut self) -> u16 {
        let b = [self.buf[self.pos], self.buf[self.pos + 1]];
        self.pos += 2;
        if self.little { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) }
    }
    fn u32(&mut self) -> u32 {
        let b = [self.buf[self.pos], self.buf[self.pos + 1], self.buf[self.pos + 2], self.buf[self.pos + 3]];
        self.pos += 4;
        if self.little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }
    }
    fn tag(&mut self) -> Result<Tag, DicomError> {
        self.need(4, "tag")?;
        Ok(Tag(self.u16(), self.u16()))
    }
    fn peek_tag(&self) -> Option<Tag> {
        if self.buf.len() - self.pos < 4 {
            return None;
        }
        let mut r = Reader { buf: self.buf, pos: self.pos, base: 0, explicit: true, little: self.little, depth: 0 };
        Some(Tag(r.u16(), r.u16()))
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DicomError> {
        self.need(n, what)?;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads elements until the end of the buffer, an item delimiter (consumed) or `end`.
    fn dataset(&mut self, end: Option<usize>, stop_at_pixels: bool) -> Result<DataSet, DicomError> {
        let mut ds = DataSet::default();
        loop {
            if let Some(e) = end
                && self.pos >= e
            {
                break;
            }
            if self.pos >= self.buf.len() {
                if end.is_some() {
                    return Err(DicomError::Truncated { offset: self.base + self.pos, what: "item".into() });
                }
                break;
            }
            // Zero bytes after the last element (some writers pad files): not part of the data set.
            if end.is_none() && self.depth == 0 && self.buf[self.pos..].iter().all(|b| *b == 0) {
                break;
            }
            let start = self.pos;
            let tag = self.tag()?;
            if tag == Tag::ITEM_END {
                self.need(4, "item delimiter length")?;
                self.pos += 4;
                if end.is_some() {
                    return Err(DicomError::Malformed {
                        offset: self.base + start,
                        what: "item delimiter in defined-length item".into(),
                    });
                }
                return Ok(ds);
            }
            if tag == Tag::SEQ_END || tag == Tag::ITEM {
                return Err(DicomError::Malformed {
                    offset: self.base + start,
                    what: format!("unexpected {tag} in data set"),
                });
            }
            if stop_at_pixels && tag == Tag::PIXEL_DATA && self.depth == 0 {
                self.pos = start;
                return Ok(ds);
            }
            let el = self.element(tag, start)?;
            ds.elements.push(el);
        }
        if self.depth > 0 && end.is_none() {
            return Err(DicomError::Truncated { offset: self.base + self.pos, what: "item without delimiter".into() });
        }
        Ok(ds)
    }

    fn element(&mut self, tag: Tag, start: usize) -> Result<Element, DicomError> {
        let (vr, len) = if self.explicit {
            self.need(4, "VR and length")?;
            let v = [self.buf[self.pos], self.buf[self.pos + 1]];
            self.pos += 2;
            if !Vr::known(v) {
                return Err(DicomError::BadVr {
                    tag,
                    vr: String::from_utf8_lossy(&v).into_owned(),
                    offset: self.base + start,
                });
            }
            let vr = Vr(v);
            if vr.long_header() {
                self.need(6, "length")?;
                self.pos += 2;
                (vr, self.u32())
            } else {
                (vr, self.u16() as u32)
            }
        } else {
            self.need(4, "length")?;
            (Vr::of_tag(tag), self.u32())
        };
        let undefined = len == 0xFFFF_FFFF;
        if tag == Tag::PIXEL_DATA && undefined {
            return Ok(Element { tag, vr, value: self.fragments()? });
        }
        if vr == Vr::SQ || (undefined && (vr == Vr::UN || !self.explicit)) {
            // An implicit-VR element of undefined length can only be a sequence (PS3.5 §7.5);
            // so can an explicit UN of undefined length (encoded implicit VR little endian, §6.2.2).
            let as_implicit = vr == Vr::UN && self.explicit;
            let items = self.sequence(if undefined { None } else { Some(len as usize) }, as_implicit)?;
            let vr = if vr == Vr::UN { Vr::SQ } else { vr };
            return Ok(Element { tag, vr, value: Value::Seq(items) });
        }
        if undefined {
            return Err(DicomError::Malformed {
                offset: self.base + start,
                what: format!("undefined length on {vr} {tag}"),
            });
        }
        let bytes = self.take(len as usize, &format!("value of {tag}"))?;
        // Implicit VR: an unknown (private) element that holds items is a sequence in disguise; parse it so
        // identifiers nested inside are seen.
        if !self.explicit && vr == Vr::UN && bytes.len() >= 8 && bytes[..4] == [0xFE, 0xFF, 0x00, 0xE0] {
            let mut sub = Reader { buf: bytes, pos: 0, base: self.base + self.pos - bytes.len(), ..*self };
            sub.depth = self.depth;
            if let Ok(items) = sub.sequence(Some(bytes.len()), false) {
                return Ok(Element { tag, vr: Vr::SQ, value: Value::Seq(items) });
            }
        }
        Ok(Element { tag, vr, value: Value::Bytes(bytes.to_vec()) })
    }

    fn sequence(&mut self, len: Option<usize>, force_implicit_le: bool) -> Result<Vec<DataSet>, DicomError> {
        if self.depth > 64 {
            return Err(DicomError::Malformed {
                offset: self.base + self.pos,
                what: "sequences nested deeper than 64".into(),
            });
        }
        let saved = (self.explicit, self.little);
        if force_implicit_le {
            self.explicit = false;
            self.little = true;
        }
        self.depth += 1;
        let end = len.map(|l| self.pos.saturating_add(l));
        if let Some(e) = end
            && e > self.buf.len()
        {
            return Err(DicomError::Truncated { offset: self.base + self.pos, what: "sequence".into() });
        }
        let mut items = Vec::new();
        loop {
            if let Some(e) = end
                && self.pos >= e
            {
                break;
            }
            let at = self.pos;
            let tag = self.tag()?;
            self.need(4, "item length")?;
            let ilen = self.u32();
            if tag == Tag::SEQ_END {
                if end.is_some() {
                    return Err(DicomError::Malformed {
                        offset: self.base + at,
                        what: "sequence delimiter in defined-length sequence".into(),
                    });
                }
                break;
            }
            if tag != Tag::ITEM {
                return Err(DicomError::Malformed {
                    offset: self.base + at,
                    what: format!("expected item, found {tag}"),
                });
            }
            let item = if ilen == 0xFFFF_FFFF {
                self.dataset(None, false)?
            } else {
                let e = self.pos.checked_add(ilen as usize).filter(|e| *e <= self.buf.len());
                let Some(e) = e else {
                    return Err(DicomError::Truncated { offset: self.base + self.pos, what: "item".into() });
                };
                let ds = self.dataset(Some(e), false)?;
                if self.pos != e {
                    return Err(DicomError::Malformed {
                        offset: self.base + self.pos,
                        what: "item length mismatch".into(),
                    });
                }
                ds
            };
            items.push(item);
        }
        self.depth -= 1;
        (self.explicit, self.little) = saved;
        Ok(items)
    }

    fn fragments(&mut self) -> Result<Value, DicomError> {
        let mut offsets = None;
        let mut fragments = Vec::new();
        loop {
            let at = self.pos;
            let tag = self.tag()?;
            self.need(4, "fragment length")?;
            let len = self.u32();
            if tag == Tag::SEQ_END {
                break;
            }
            if tag != Tag::ITEM || len == 0xFFFF_FFFF {
                return Err(DicomError::Malformed {
                    offset: self.base + at,
                    what: format!("bad pixel data fragment {tag}"),
                });
            }
            let b = self.take(len as usize, "pixel data fragment")?.to_vec();
            if offsets.is_none() {
                offsets = Some(b);
            } else {
                fragments.push(b);
            }
        }
        Ok(Value::Fragments { offsets: offsets.unwrap_or_default(), fragments })
    }
}

/// Where the pixel data sits in the file (for tables that keep pixels by reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelRef {
    /// Byte offset of the Pixel Data element header.
    pub offset: u64,
    /// Bytes from there to the end of the element (whole file rest for encapsulated data).
    pub length: u64,
}

/// Reads a Part 10 file from memory.
pub fn read(bytes: &[u8]) -> Result<DicomFile, DicomError> {
    read_inner(bytes, false).map(|(f, _)| f)
}

/// Reads a data set stored without the Part 10 header (pre-DICOM-3 files, which pydicom reads with
/// `force=True`): the transfer syntax is guessed (explicit VR if the first element carries a known VR,
/// else implicit; little endian) and a file meta header is made for it. Callers opt in; [`read`] stays
/// strict and rejects such files.
pub fn read_without_meta(bytes: &[u8], sop_class: &str) -> Result<DicomFile, DicomError> {
    if bytes.len() < 8 {
        return Err(DicomError::Truncated { offset: 0, what: "data set".into() });
    }
    let explicit = Vr::known([bytes[4], bytes[5]]);
    // Group 0x0008 reads as 0x0800 in little endian when the data set is big endian.
    let little = !(bytes[0] == 0 && bytes[1] != 0 && explicit);
    let uid = match (explicit, little) {
        (true, true) => "1.2.840.10008.1.2.1",
        (true, false) => "1.2.840.10008.1.2.2",
        _ => "1.2.840.10008.1.2",
    };
    let ts = TransferSyntax::from_uid(uid)?;
    let mut r = Reader { buf: bytes, pos: 0, base: 0, explicit, little, depth: 0 };
    let dataset = r.dataset(None, false)?;
    let sop = dataset.ascii(Tag(0x0008, 0x0018)).unwrap_or_default();
    let ui = |t: Tag, v: &str| {
        let mut b = v.as_bytes().to_vec();
        if b.len() % 2 == 1 {
            b.push(0);
        }
        Element { tag: t, vr: Vr::UI, value: Value::Bytes(b) }
    };
    let class = dataset.ascii(Tag(0x0008, 0x0016)).unwrap_or_else(|| sop_class.to_owned());
    let meta = DataSet {
        elements: vec![
            Element { tag: Tag(0x0002, 0x0001), vr: Vr::OB, value: Value::Bytes(vec![0, 1]) },
            ui(Tag(0x0002, 0x0002), &class),
            ui(Tag(0x0002, 0x0003), &sop),
            ui(Tag::TRANSFER_SYNTAX, uid),
        ],
    };
    Ok(DicomFile { preamble: vec![0; 128], meta, ts, dataset })
}

/// Reads the meta header and the data set up to (not including) the top-level Pixel Data.
pub fn read_metadata(bytes: &[u8]) -> Result<(DicomFile, Option<PixelRef>), DicomError> {
    read_inner(bytes, true)
}

fn read_inner(bytes: &[u8], stop_at_pixels: bool) -> Result<(DicomFile, Option<PixelRef>), DicomError> {
    if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
        return Err(DicomError::NoMetaHeader);
    }
    let mut r = Reader { buf: bytes, pos: 132, base: 0, explicit: true, little: true, depth: 0 };
    let mut meta = DataSet::default();
    while let Some(t) = r.peek_tag() {
        if t.0 != 0x0002 {
            break;
        }
        let start = r.pos;
        let tag = r.tag()?;
        meta.elements.push(r.element(tag, start)?);
    }
    let body_start = r.pos;
    let (ts_uid, guessed) = match meta.ascii(Tag::TRANSFER_SYNTAX) {
        Some(u) => (u, false),
        // Like pydicom and dcmtk: a missing Transfer Syntax UID is guessed from the first element
        // (explicit VR if it carries a known VR, else implicit), little endian; the output then says it.
        None => {
            let b = &bytes[body_start.min(bytes.len())..];
            let explicit = b.len() >= 6 && Vr::known([b[4], b[5]]);
            (if explicit { "1.2.840.10008.1.2.1" } else { "1.2.840.10008.1.2" }.to_owned(), true)
        }
    };
    let ts = TransferSyntax::from_uid(&ts_uid)?;
    if guessed {
        let mut v = ts_uid.clone().into_bytes();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        meta.put(Element { tag: Tag::TRANSFER_SYNTAX, vr: Vr::UI, value: Value::Bytes(v) });
    }
    let inflated;
    let mut r = if ts.deflated {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&bytes[body_start..])
            .read_to_end(&mut out)
            .map_err(|e| DicomError::Malformed { offset: body_start, what: format!("deflate: {e}") })?;
        inflated = out;
        Reader { buf: &inflated, pos: 0, base: body_start, explicit: true, little: true, depth: 0 }
    } else {
        Reader { buf: bytes, pos: body_start, base: 0, explicit: ts.explicit, little: ts.little, depth: 0 }
    };
    let dataset = match r.dataset(None, stop_at_pixels && !ts.deflated) {
        Ok(ds) => ds,
        // A file that declares explicit VR but is encoded implicit VR (seen in the wild; pydicom and
        // dcmtk detect it): parsed implicit if that reads the whole data set; written back explicit.
        Err(e @ DicomError::BadVr { .. }) if ts.explicit && ts.little && !ts.deflated => {
            let mut r2 = Reader { buf: bytes, pos: body_start, base: 0, explicit: false, little: true, depth: 0 };
            match r2.dataset(None, stop_at_pixels) {
                Ok(ds) => {
                    r = r2;
                    ds
                }
                Err(_) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let pixels = (stop_at_pixels && !ts.deflated && r.pos < r.buf.len())
        .then(|| PixelRef { offset: r.pos as u64, length: (r.buf.len() - r.pos) as u64 });
    let file = DicomFile { preamble: bytes[..128].to_vec(), meta, ts, dataset };
    Ok((file, pixels))
}

struct Writer {
    out: Vec<u8>,
    explicit: bool,
    little: bool,
}

impl Writer {
    fn u16(&mut self, v: u16) {
        let b = if self.little { v.to_le_bytes() } else { v.to_be_bytes() };
        self.out.extend_from_slice(&b);
    }
    fn u32(&mut self, v: u32) {
        let b = if self.little { v.to_le_bytes() } else { v.to_be_bytes() };
        self.out.extend_from_slice(&b);
    }
    fn header(&mut self, tag: Tag, vr: Vr, len: u32) {
        self.u16(tag.0);
        self.u16(tag.1);
        if self.explicit {
            self.out.extend_from_slice(&vr.0);
            if vr.long_header() {
                self.out.extend_from_slice(&[0, 0]);
                self.u32(len);
            } else {
                self.u16(len as u16);
            }
        } else {
            self.u32(len);
        }
    }
    fn dataset(&mut self, ds: &DataSet) {
        for el in &ds.elements {
            // Group lengths other than the meta group's go stale when values change; they are retired.
            if el.tag.1 == 0 && el.tag.0 != 0x0002 {
                continue;
            }
            self.element(el);
        }
    }
    fn element(&mut self, el: &Element) {
        match &el.value {
            Value::Bytes(b) => {
                let mut vr = el.vr;
                // A value too long for a 2-byte length cannot be written with that VR explicitly.
                if self.explicit && !vr.long_header() && b.len() + (b.len() & 1) > 0xFFFF {
                    vr = Vr::UN;
                }
                let padded = b.len() & 1 == 1;
                self.header(el.tag, vr, (b.len() + padded as usize) as u32);
                self.out.extend_from_slice(b);
                if padded {
                    self.out.push(if vr == Vr::UI || !vr.is_text() { 0 } else { b' ' });
                }
            }
            Value::Seq(items) => {
                self.header(el.tag, Vr::SQ, 0xFFFF_FFFF);
                for item in items {
                    self.u16(0xFFFE);
                    self.u16(0xE000);
                    self.u32(0xFFFF_FFFF);
                    self.dataset(item);
                    self.u16(0xFFFE);
                    self.u16(0xE00D);
                    self.u32(0);
                }
                self.u16(0xFFFE);
                self.u16(0xE0DD);
                self.u32(0);
            }
            Value::Fragments { offsets, fragments } => {
                self.header(el.tag, el.vr, 0xFFFF_FFFF);
                for f in std::iter::once(offsets).chain(fragments) {
                    self.u16(0xFFFE);
                    self.u16(0xE000);
                    self.u32(f.len() as u32);
                    self.out.extend_from_slice(f);
                }
                self.u16(0xFFFE);
                self.u16(0xE0DD);
                self.u32(0);
            }
        }
    }
}

/// Serializes a file: preamble, meta header (group length recomputed), data set in its transfer syntax.
pub fn write(file: &DicomFile) -> Vec<u8> {
    let mut meta = Writer { out: Vec::new(), explicit: true, little: true };
    for el in &file.meta.elements {
        if el.tag != Tag(0x0002, 0x0000) {
            meta.element(el);
        }
    }
    let mut out = Vec::with_capacity(file.preamble.len() + meta.out.len() + 1024);
    let mut pre = file.preamble.clone();
    pre.resize(128, 0);
    out.extend_from_slice(&pre);
    out.extend_from_slice(b"DICM");
    out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    out.extend_from_slice(&(meta.out.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta.out);
    let mut body = Writer { out: Vec::new(), explicit: file.ts.explicit, little: file.ts.little };
    body.dataset(&file.dataset);
    if file.ts.deflated {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&body.out).expect("writing to memory");
        let mut d = enc.finish().expect("writing to memory");
        if d.len() & 1 == 1 {
            d.push(0);
        }
        out.extend_from_slice(&d);
    } else {
        out.extend_from_slice(&body.out);
    }
    out
}
