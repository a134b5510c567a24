//! Pixel data: burned-in text (declared annotation regions per modality/manufacturer, plus OCR with
//! Tesseract's Japanese and English models), faces in photographs and secondary captures (OpenCV's
//! Haar cascade), and blanking of the regions found. Only native (uncompressed) pixel data can be
//! blanked; a compressed image that needs checking is an error, never passed through unchecked.

use std::path::Path;
use std::process::Command;

use kiban_formats::dicom::{DataSet, DicomFile, Tag, Value};
use serde::{Deserialize, Serialize};

/// A rectangle in pixels (x, y from the top-left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

/// A declared annotation region: where a device burns in patient data.
#[derive(Debug, Clone, Deserialize)]
pub struct DeclaredRegion {
    /// Modality (0008,0060).
    pub modality: String,
    /// Manufacturer (0008,0070), matched as a prefix; empty matches any.
    #[serde(default)]
    pub manufacturer: String,
    /// Model (0008,1090), matched exactly; empty matches any.
    #[serde(default)]
    pub model: String,
    /// Rows and columns this layout applies to (0 = any).
    #[serde(default)]
    pub rows: u32,
    /// Columns (0 = any).
    #[serde(default)]
    pub columns: u32,
    /// Rectangles to blank.
    pub rects: Vec<Rect>,
    /// Where the layout comes from.
    #[serde(default)]
    pub source: String,
}

/// The declared regions shipped with kiban (`data/annotation_regions.toml`).
pub fn standard_regions() -> Vec<DeclaredRegion> {
    #[derive(Deserialize)]
    struct F {
        region: Vec<DeclaredRegion>,
    }
    toml::from_str::<F>(include_str!("../data/annotation_regions.toml"))
        .expect("embedded annotation regions parse")
        .region
}

/// What was found and done in the pixels of one file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PixelReport {
    /// Pixels were checked (modality or SOP class calls for it, or Burned In Annotation = YES).
    pub checked: bool,
    /// Regions blanked because declared for this device.
    pub declared: Vec<Rect>,
    /// Regions blanked because OCR found text there, with the text (never logged elsewhere).
    pub ocr: Vec<Rect>,
    /// Faces found and blanked.
    pub faces: Vec<Rect>,
    /// Head CT/MR that could be rendered into a face: flagged for review.
    pub head_volume_flag: bool,
    /// A head CT slice whose voxels outside the skull mask were set to air (`deface`).
    pub defaced: bool,
    /// Why a check could not run (tool missing), if so.
    pub notes: Vec<String>,
}

/// Image geometry of native pixel data.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    rows: usize,
    cols: usize,
    samples: usize,
    bytes_per_sample: usize,
    planar: bool,
    frames: usize,
    monochrome1: bool,
}

fn us(ds: &DataSet, t: Tag, little: bool) -> Option<usize> {
    let b = ds.get(t)?.bytes()?;
    let a: [u8; 2] = b.get(..2)?.try_into().ok()?;
    Some(if little { u16::from_le_bytes(a) } else { u16::from_be_bytes(a) } as usize)
}

fn geometry(f: &DicomFile) -> Option<Geometry> {
    let ds = &f.dataset;
    let l = f.ts.little;
    let bits = us(ds, Tag(0x0028, 0x0100), l)?;
    Some(Geometry {
        rows: us(ds, Tag(0x0028, 0x0010), l)?,
        cols: us(ds, Tag(0x0028, 0x0011), l)?,
        samples: us(ds, Tag(0x0028, 0x0002), l).unwrap_or(1).max(1),
        bytes_per_sample: bits.div_ceil(8).max(1),
        planar: us(ds, Tag(0x0028, 0x0006), l).unwrap_or(0) == 1,
        frames: ds.ascii(Tag(0x0028, 0x0008)).and_then(|s| s.trim().parse().ok()).unwrap_or(1).max(1),
        monochrome1: ds.ascii(Tag(0x0028, 0x0004)).as_deref() == Some("MONOCHROME1"),
    })
}

/// Does this image get its pixels checked for burned-in text by default?
pub fn needs_text_check(ds: &DataSet) -> bool {
    let modality = ds.ascii(Tag(0x0008, 0x0060)).unwrap_or_default();
    let sop = ds.ascii(Tag(0x0008, 0x0016)).unwrap_or_default();
    let burned = ds.ascii(Tag(0x0028, 0x0301)).as_deref() == Some("YES");
    burned
        || matches!(modality.as_str(), "US" | "OT" | "SC" | "XC" | "ES" | "GM" | "DOC")
        || sop.starts_with("1.2.840.10008.5.1.4.1.1.7") // secondary capture family
        || sop.starts_with("1.2.840.10008.5.1.4.1.1.6") // ultrasound
}

/// Does this image get checked for faces (photographs and secondary captures)?
pub fn needs_face_check(ds: &DataSet) -> bool {
    let modality = ds.ascii(Tag(0x0008, 0x0060)).unwrap_or_default();
    let sop = ds.ascii(Tag(0x0008, 0x0016)).unwrap_or_default();
    matches!(modality.as_str(), "XC" | "OT" | "SC" | "GM" | "ES")
        || sop.starts_with("1.2.840.10008.5.1.4.1.1.7")
        || sop.starts_with("1.2.840.10008.5.1.4.1.1.77.1.4") // VL photographic
}

/// Head CT/MR: a volume a face can be rendered from.
pub fn is_head_volume(ds: &DataSet) -> bool {
    let modality = ds.ascii(Tag(0x0008, 0x0060)).unwrap_or_default();
    if !matches!(modality.as_str(), "CT" | "MR" | "PT") {
        return false;
    }
    let text = [Tag(0x0018, 0x0015), Tag(0x0008, 0x1030), Tag(0x0008, 0x103E), Tag(0x0018, 0x1030)]
        .iter()
        .filter_map(|t| ds.ascii(*t))
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    ["HEAD", "BRAIN", "SKULL", "NECK", "FACE", "ORBIT", "SINUS", "頭部", "頭"].iter().any(|k| text.contains(k))
}

/// Frame 0 as 8-bit grey (luminance or first sample), for OCR and face detection.
fn frame0_grey(px: &[u8], g: &Geometry, little: bool) -> Option<Vec<u8>> {
    let n = g.rows * g.cols;
    let frame_len = n * g.samples * g.bytes_per_sample;
    if px.len() < frame_len {
        return None;
    }
    let sample = |i: usize| -> u32 {
        let o = i * g.bytes_per_sample;
        match g.bytes_per_sample {
            1 => px[o] as u32,
            _ => {
                let a = [px[o], px[o + 1]];
                (if little { u16::from_le_bytes(a) } else { u16::from_be_bytes(a) }) as u32
            }
        }
    };
    let mut v: Vec<u32> = (0..n)
        .map(|p| {
            if g.samples == 3 {
                let (r, gg, b) = if g.planar {
                    (sample(p), sample(n + p), sample(2 * n + p))
                } else {
                    (sample(3 * p), sample(3 * p + 1), sample(3 * p + 2))
                };
                (r * 299 + gg * 587 + b * 114) / 1000
            } else {
                sample(p * g.samples)
            }
        })
        .collect();
    let max = v.iter().copied().max().unwrap_or(1).max(1);
    if g.bytes_per_sample > 1 {
        v.iter_mut().for_each(|x| *x = *x * 255 / max);
    }
    Some(v.into_iter().map(|x| if g.monochrome1 { 255 - x.min(255) as u8 } else { x.min(255) as u8 }).collect())
}

fn write_pgm(path: &Path, grey: &[u8], g: &Geometry) -> std::io::Result<()> {
    let mut out = format!("P5 {} {} 255\n", g.cols, g.rows).into_bytes();
    out.extend_from_slice(grey);
    std::fs::write(path, out)
}

/// Runs Tesseract (jpn+eng, sparse text) on a PGM; word boxes with confidence ≥ 30 and a letter or digit.
fn ocr(pgm: &Path) -> Result<Vec<(Rect, String)>, String> {
    let out = Command::new("tesseract")
        .arg(pgm)
        .arg("-")
        .args(["-l", "jpn+eng", "--psm", "11", "tsv"])
        .output()
        .map_err(|e| format!("tesseract not runnable ({e}); install tesseract-ocr tesseract-ocr-jpn"))?;
    if !out.status.success() {
        return Err(format!("tesseract failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")));
    }
    let mut words = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() < 12 || c[0] != "5" {
            continue;
        }
        let num = |i: usize| c[i].parse::<f64>().unwrap_or(-1.0);
        let text = c[11].trim();
        if num(10) < 30.0 || !text.chars().any(|ch| ch.is_alphanumeric()) {
            continue;
        }
        words.push((Rect { x: num(6) as u32, y: num(7) as u32, w: num(8) as u32, h: num(9) as u32 }, text.to_owned()));
    }
    Ok(words)
}

const FACE_SCRIPT: &str = r#"
import sys, cv2
img = cv2.imread(sys.argv[1], cv2.IMREAD_GRAYSCALE)
casc = cv2.CascadeClassifier(sys.argv[2])
img = cv2.equalizeHist(img)
for (x, y, w, h) in casc.detectMultiScale(img, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40)):
    print(x, y, w, h)
"#;

fn cascade_path() -> Option<String> {
    [
        "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml",
        "/usr/share/opencv/haarcascades/haarcascade_frontalface_default.xml",
    ]
    .iter()
    .find(|p| Path::new(p).exists())
    .map(|p| (*p).to_owned())
}

/// Detects frontal faces with OpenCV's Haar cascade (Debian `python3-opencv` + `opencv-data`).
fn faces(pgm: &Path) -> Result<Vec<Rect>, String> {
    let casc = cascade_path().ok_or("OpenCV face cascade missing; install python3-opencv opencv-data")?;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", FACE_SCRIPT])
        .arg(pgm)
        .arg(casc)
        .output()
        .map_err(|e| format!("python3 not runnable ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "face detection failed: {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let v: Vec<u32> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            (v.len() == 4).then(|| Rect { x: v[0], y: v[1], w: v[2], h: v[3] })
        })
        .collect())
}

fn blank(px: &mut [u8], g: &Geometry, r: Rect) {
    let (x0, y0) = (r.x as usize, r.y as usize);
    let (x1, y1) = ((x0 + r.w as usize).min(g.cols), (y0 + r.h as usize).min(g.rows));
    let fill = if g.monochrome1 { 0xFF } else { 0 };
    let n = g.rows * g.cols;
    let bps = g.bytes_per_sample;
    let frame_len = n * g.samples * bps;
    for f in 0..g.frames {
        let base = f * frame_len;
        for y in y0..y1 {
            if g.planar {
                for s in 0..g.samples {
                    let a = base + (s * n + y * g.cols + x0) * bps;
                    let b = base + (s * n + y * g.cols + x1) * bps;
                    if let Some(sl) = px.get_mut(a..b) {
                        sl.fill(fill);
                    }
                }
            } else {
                let a = base + (y * g.cols + x0) * g.samples * bps;
                let b = base + (y * g.cols + x1) * g.samples * bps;
                if let Some(sl) = px.get_mut(a..b) {
                    sl.fill(fill);
                }
            }
        }
    }
}

/// Which pixel checks to run.
#[derive(Debug, Clone, Copy)]
pub struct PixelChecks {
    /// Clean Pixel Data: declared regions and OCR.
    pub text: bool,
    /// Clean Recognizable Visual Features: faces, head-volume flag.
    pub faces: bool,
    /// Run OCR (else declared regions only).
    pub ocr: bool,
    /// Deface head CT: voxels outside the skull mask set to air (MR is flagged only).
    pub deface: bool,
}

/// Checks and blanks the pixels of `f` (after attribute de-identification, which keeps the pixel module).
pub fn clean_pixels(
    f: &mut DicomFile,
    checks: PixelChecks,
    regions: &[DeclaredRegion],
    tmp: &Path,
) -> Result<PixelReport, String> {
    let mut rep = PixelReport::default();
    let ds = &f.dataset;
    rep.head_volume_flag = checks.faces && is_head_volume(ds);
    if rep.head_volume_flag && checks.deface && ds.ascii(Tag(0x0008, 0x0060)).as_deref() == Some("CT") {
        rep.defaced = deface_ct(f)?;
    }
    let ds = &f.dataset;
    let want_text = checks.text && needs_text_check(ds);
    let want_faces = checks.faces && needs_face_check(ds);
    if !want_text && !want_faces {
        return Ok(rep);
    }
    let Some(g) = geometry(f) else {
        return match ds.get(Tag::PIXEL_DATA) {
            None => Ok(rep),
            Some(_) => Err("image pixel module incomplete: cannot check pixel data".into()),
        };
    };
    rep.checked = true;
    let little = f.ts.little;
    let modality = ds.ascii(Tag(0x0008, 0x0060)).unwrap_or_default();
    let manufacturer = ds.ascii(Tag(0x0008, 0x0070)).unwrap_or_default();
    let model = ds.ascii(Tag(0x0008, 0x1090)).unwrap_or_default();
    if want_text {
        for r in regions {
            if r.modality == modality
                && manufacturer.starts_with(&r.manufacturer)
                && (r.model.is_empty() || r.model == model)
                && (r.rows == 0 || r.rows as usize == g.rows)
                && (r.columns == 0 || r.columns as usize == g.cols)
            {
                rep.declared.extend(r.rects.iter().copied());
            }
        }
    }
    if matches!(f.dataset.get(Tag::PIXEL_DATA).map(|e| &e.value), Some(Value::Fragments { .. })) {
        decompress_jpeg(f)?;
        rep.notes.push(format!("JPEG pixel data decoded to native for checking; written as {}", f.ts.uid));
    }
    let Some(g) = geometry(f) else { return Err("image pixel module incomplete after decoding".into()) };
    let Some(px_el) = f.dataset.elements.iter_mut().find(|e| e.tag == Tag::PIXEL_DATA) else { return Ok(rep) };
    let px = match &mut px_el.value {
        Value::Bytes(b) => b,
        _ => return Err("compressed pixel data cannot be checked for burned-in text or faces; decompress first".into()),
    };
    let mut found = Vec::new();
    if (want_text && checks.ocr) || want_faces {
        let grey = frame0_grey(px, &g, little).ok_or("pixel data shorter than rows × columns")?;
        std::fs::create_dir_all(tmp).map_err(|e| e.to_string())?;
        let pgm = tmp.join(format!("kiban-dicom-{}-{:p}.pgm", std::process::id(), px.as_ptr()));
        write_pgm(&pgm, &grey, &g).map_err(|e| e.to_string())?;
        if want_text && checks.ocr {
            match ocr(&pgm) {
                Ok(words) => rep.ocr.extend(words.into_iter().map(|(r, _)| pad(r, 4))),
                Err(e) => {
                    let _ = std::fs::remove_file(&pgm);
                    return Err(e);
                }
            }
        }
        if want_faces {
            match faces(&pgm) {
                Ok(fs) => rep.faces.extend(fs.into_iter().map(|r| pad(r, r.w / 5))),
                Err(e) => {
                    let _ = std::fs::remove_file(&pgm);
                    return Err(e);
                }
            }
        }
        let _ = std::fs::remove_file(&pgm);
    }
    found.extend(rep.declared.iter().chain(&rep.ocr).chain(&rep.faces).copied());
    for r in &found {
        blank(px, &g, *r);
    }
    if !found.is_empty() {
        f.dataset.put(kiban_formats::dicom::Element {
            tag: Tag(0x0028, 0x0301),
            vr: kiban_formats::dicom::Vr::CS,
            value: Value::Bytes(b"NO".to_vec()),
        });
    }
    Ok(rep)
}

fn pad(r: Rect, m: u32) -> Rect {
    Rect { x: r.x.saturating_sub(m), y: r.y.saturating_sub(m), w: r.w + 2 * m, h: r.h + 2 * m }
}

/// The text Tesseract reads in frame 0 (words joined by spaces): for checks and tests, never logged.
pub fn ocr_frame0(f: &DicomFile, tmp: &Path) -> Result<String, String> {
    let g = geometry(f).ok_or("no image pixel module")?;
    let Some(Value::Bytes(px)) = f.dataset.get(Tag::PIXEL_DATA).map(|e| &e.value) else {
        return Err("no native pixel data".into());
    };
    let grey = frame0_grey(px, &g, f.ts.little).ok_or("pixel data shorter than rows × columns")?;
    let pgm = tmp.join(format!("kiban-dicom-ocr-{}-{:p}.pgm", std::process::id(), px.as_ptr()));
    write_pgm(&pgm, &grey, &g).map_err(|e| e.to_string())?;
    let words = ocr(&pgm);
    let _ = std::fs::remove_file(&pgm);
    Ok(words?.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(" "))
}

fn ds_num(ds: &DataSet, t: Tag) -> Option<f64> {
    ds.ascii(t)?.split('\\').next()?.trim().parse().ok()
}

/// Sets every voxel of each slice outside its skull mask to air: the mask is the set of pixels that lie
/// between the outermost bone pixels (> 300 HU) of both their row and their column, so skin, nose and
/// lips in front of the facial bones go while everything inside the bony outline stays.
fn deface_ct(f: &mut DicomFile) -> Result<bool, String> {
    let Some(g) = geometry(f) else { return Ok(false) };
    if g.samples != 1 || g.bytes_per_sample != 2 {
        return Ok(false);
    }
    let little = f.ts.little;
    let ds = &f.dataset;
    let slope = ds_num(ds, Tag(0x0028, 0x1053)).unwrap_or(1.0);
    let intercept = ds_num(ds, Tag(0x0028, 0x1052)).unwrap_or(0.0);
    let signed = us(ds, Tag(0x0028, 0x0103), little) == Some(1);
    let Some(px_el) = f.dataset.elements.iter_mut().find(|e| e.tag == Tag::PIXEL_DATA) else { return Ok(false) };
    let Value::Bytes(px) = &mut px_el.value else {
        return Err("compressed head CT cannot be defaced; decompress first".into());
    };
    let read = |b: &[u8], i: usize| -> f64 {
        let a = [b[2 * i], b[2 * i + 1]];
        let raw = if little { u16::from_le_bytes(a) } else { u16::from_be_bytes(a) };
        let v = if signed { raw as i16 as f64 } else { raw as f64 };
        v * slope + intercept
    };
    let air = ((-1000.0 - intercept) / slope).round();
    let air_raw: u16 = if signed {
        air.clamp(i16::MIN as f64, i16::MAX as f64) as i16 as u16
    } else {
        air.clamp(0.0, u16::MAX as f64) as u16
    };
    let air_bytes = if little { air_raw.to_le_bytes() } else { air_raw.to_be_bytes() };
    let n = g.rows * g.cols;
    for fr in 0..g.frames {
        let Some(b) = px.get_mut(fr * n * 2..(fr + 1) * n * 2) else { break };
        let bone: Vec<bool> = (0..n).map(|i| read(b, i) > 300.0).collect();
        let mut row_span = vec![(usize::MAX, 0usize); g.rows];
        let mut col_span = vec![(usize::MAX, 0usize); g.cols];
        for y in 0..g.rows {
            for x in 0..g.cols {
                if bone[y * g.cols + x] {
                    row_span[y] = (row_span[y].0.min(x), row_span[y].1.max(x));
                    col_span[x] = (col_span[x].0.min(y), col_span[x].1.max(y));
                }
            }
        }
        for y in 0..g.rows {
            for x in 0..g.cols {
                let inside = row_span[y].0 <= x && x <= row_span[y].1 && col_span[x].0 <= y && y <= col_span[x].1;
                if !inside {
                    b[2 * (y * g.cols + x)..2 * (y * g.cols + x) + 2].copy_from_slice(&air_bytes);
                }
            }
        }
    }
    Ok(true)
}

/// Decodes 8-bit JPEG pixel data (baseline, extended, lossless; transfer syntaxes 1.2.840.10008.1.2.4.50,
/// .51, .57, .70) to native pixels so they can be checked and blanked; the file is then written explicit
/// VR little endian. Other compressions (JPEG 2000, JPEG-LS, RLE, 16-bit) stay errors.
fn decompress_jpeg(f: &mut DicomFile) -> Result<(), String> {
    const JPEG: [&str; 4] =
        ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"];
    let unsupported = || {
        format!("compressed pixel data ({}) cannot be checked for burned-in text or faces; decompress first", f.ts.uid)
    };
    if !JPEG.contains(&f.ts.uid.as_str()) {
        return Err(unsupported());
    }
    let l = f.ts.little;
    let rows = us(&f.dataset, Tag(0x0028, 0x0010), l).ok_or("no Rows")?;
    let cols = us(&f.dataset, Tag(0x0028, 0x0011), l).ok_or("no Columns")?;
    let frames: usize = f.dataset.ascii(Tag(0x0028, 0x0008)).and_then(|s| s.trim().parse().ok()).unwrap_or(1).max(1);
    let Some(Value::Fragments { fragments, .. }) = f.dataset.get(Tag::PIXEL_DATA).map(|e| &e.value) else {
        return Err(unsupported());
    };
    let streams: Vec<Vec<u8>> = if frames == 1 {
        vec![fragments.concat()]
    } else if fragments.len() == frames {
        fragments.clone()
    } else {
        return Err(format!("{} fragments for {frames} frames: cannot split JPEG frames", fragments.len()));
    };
    let mut out = Vec::new();
    let mut samples = 1;
    for s in &streams {
        let mut d = jpeg_decoder::Decoder::new(s.as_slice());
        let px = d.decode().map_err(|e| format!("JPEG decode: {e}"))?;
        let info = d.info().ok_or("JPEG without header")?;
        if info.width as usize != cols || info.height as usize != rows {
            return Err("JPEG size differs from Rows/Columns".into());
        }
        samples = match info.pixel_format {
            jpeg_decoder::PixelFormat::L8 => 1,
            jpeg_decoder::PixelFormat::RGB24 => 3,
            _ => return Err(unsupported()),
        };
        out.extend_from_slice(&px);
    }
    let put = |ds: &mut DataSet, t: Tag, vr: &[u8; 2], v: Vec<u8>| {
        ds.put(kiban_formats::dicom::Element { tag: t, vr: kiban_formats::dicom::Vr(*vr), value: Value::Bytes(v) })
    };
    let ds = &mut f.dataset;
    put(ds, Tag(0x0028, 0x0002), b"US", (samples as u16).to_le_bytes().to_vec());
    put(ds, Tag(0x0028, 0x0004), b"CS", if samples == 3 { b"RGB ".to_vec() } else { b"MONOCHROME2 ".to_vec() });
    put(ds, Tag(0x0028, 0x0100), b"US", 8u16.to_le_bytes().to_vec());
    put(ds, Tag(0x0028, 0x0101), b"US", 8u16.to_le_bytes().to_vec());
    put(ds, Tag(0x0028, 0x0102), b"US", 7u16.to_le_bytes().to_vec());
    put(ds, Tag(0x0028, 0x0103), b"US", 0u16.to_le_bytes().to_vec());
    if samples == 3 {
        put(ds, Tag(0x0028, 0x0006), b"US", 0u16.to_le_bytes().to_vec());
    } else {
        ds.remove(Tag(0x0028, 0x0006));
    }
    // The image was lossy-compressed once; that history must stay visible.
    if f.ts.uid.ends_with(".50") || f.ts.uid.ends_with(".51") {
        put(ds, Tag(0x0028, 0x2110), b"CS", b"01".to_vec());
    }
    put(ds, Tag::PIXEL_DATA, b"OB", out);
    f.ts = kiban_formats::dicom::TransferSyntax::from_uid("1.2.840.10008.1.2.1").expect("known");
    f.meta.put(kiban_formats::dicom::Element {
        tag: Tag::TRANSFER_SYNTAX,
        vr: kiban_formats::dicom::Vr::UI,
        value: Value::Bytes(b"1.2.840.10008.1.2.1\0".to_vec()),
    });
    Ok(())
}
