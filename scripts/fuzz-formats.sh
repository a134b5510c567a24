#!/usr/bin/env bash
# Runs every kiban-formats cargo-fuzz target for a short time (default 20 s each). Needs a nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz`); says so and exits 0 when they are missing,
# unless CI=true, where a missing tool is a failure.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-20}
if ! command -v cargo-fuzz >/dev/null 2>&1 || ! rustup toolchain list | grep -q nightly; then
  echo "cargo-fuzz or nightly missing: fuzzing skipped (the proptest robustness tests still run)"
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
for t in hl7 uke dpc fhir cda tabular dicom; do
  echo "== fuzz $t (${secs}s)"
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=1024 -timeout=5
done
