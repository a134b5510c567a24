#!/usr/bin/env bash
# Coverage-guided libFuzzer run of every kiban-formats parser, on the stable toolchain.
#
#   scripts/fuzz-formats.sh [SECONDS_PER_TARGET]   (default 20; CI runs it with 15)
#
# No nightly and no cargo-fuzz: libfuzzer-sys builds libFuzzer with the system C++ compiler, and
# scripts/fuzz-rustc-wrapper.sh adds the SanitizerCoverage flags (stable `-C` flags, the ones
# cargo-fuzz passes) to this repository's crates only, so arrow/parquet build as usual. No ASan:
# Rust's safe code needs none for the property checked (no panic, no timeout, bounded RSS).
# Each target starts from the seeds in fuzz/corpus/<target>/ (synthetic files we own) plus, for
# DICOM, the pydicom files fetched by scripts/fetch-fixtures-dicom.sh when present. A crash,
# timeout, out-of-memory or an uninstrumented build makes the script fail; the input that failed
# is left in <target-dir>/fuzz/artifacts/<target>/ and printed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-20}
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target=$root/$target ;; esac
out=$target/fuzz
jobs=${FUZZ_JOBS:-${CARGO_BUILD_JOBS:-$(nproc)}}
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || {
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends g++ >/dev/null
}

start=$(date +%s)
echo "== fuzz build (stable, SanitizerCoverage on kiban crates) into $out"
(cd fuzz && CARGO_TARGET_DIR=$out RUSTC_WRAPPER=$root/scripts/fuzz-rustc-wrapper.sh KIBAN_FUZZ_ROOT=$root \
  cargo build --locked --bins)
echo "   built in $(($(date +%s) - start)) s"

targets=(uke tabular hl7 dpc fhir cda dicom)
run_one() {
  local t=$1 corpus=$out/corpus/$t art=$out/artifacts/$t log=$out/logs/$t.log
  mkdir -p "$corpus" "$art" "$out/logs"
  cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  if [ "$t" = dicom ] && [ -d "$target/fixtures/dicom" ]; then
    find "$target/fixtures/dicom/pydicom-charset" "$target/fixtures/dicom/pydicom" -name '*.dcm' -size -8k 2>/dev/null |
      head -n 40 | while read -r f; do cp -n "$f" "$corpus/" || true; done || true # head closing the pipe is fine
  fi
  local rc=0
  "$out/debug/$t" "$corpus" -max_total_time="$secs" -rss_limit_mb=1024 -timeout=5 -max_len=16384 \
    -artifact_prefix="$art/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  local first last runs
  first=$(grep -m1 -o 'INITED cov: [0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  last=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | grep -o '[0-9]*$' || echo 0)
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  if [ "$rc" != 0 ]; then
    echo "!! fuzz $t FAILED (exit $rc): input kept in $art/"
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 20
    return 1
  fi
  if [ "${first:-0}" = 0 ] || grep -q 'no interesting inputs were found' "$log"; then
    echo "!! fuzz $t: no coverage feedback (is the build instrumented?) — see $log"
    return 1
  fi
  echo "   fuzz $t: ${secs}s, $runs runs, coverage $first → $last edges, no crash"
}

echo "== fuzz ${#targets[@]} targets, ${secs}s each, $jobs at a time"
fail=0
pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then
    wait "${pids[0]}" || fail=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
echo "== fuzz done in $(($(date +%s) - start)) s"
exit $fail
