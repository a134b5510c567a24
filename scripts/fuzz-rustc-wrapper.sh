#!/usr/bin/env bash
# RUSTC_WRAPPER for the fuzz build: adds libFuzzer's coverage instrumentation (stable `-C` flags,
# the same ones cargo-fuzz passes, without ASan) only to the crates of this repository, so the
# parsers are coverage-guided while arrow/parquet and the other registry crates build as usual.
rustc=$1
shift
root=${KIBAN_FUZZ_ROOT:?set KIBAN_FUZZ_ROOT to the repository root}
for a in "$@"; do
  case "$a" in
    "$root"/*.rs | fuzz_targets/*.rs)
      exec "$rustc" "$@" -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
        -Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
        -Cllvm-args=-simplifycfg-branch-fold-threshold=0 --cfg fuzzing -Cdebug-assertions -Coverflow-checks
      ;;
  esac
done
exec "$rustc" "$@"
