#!/usr/bin/env bash
# The cluster benchmark on loopback: a scheduler and two executors (each its own process, own work
# dir, the same cluster key), then `kiban-cluster-node bench --cluster`, which runs every stage
# in-process and on the cluster over the same synthetic claims, checks the outputs are byte-identical
# and runs the DuckDB peer in the same run. Prints the bench's JSON lines, then each executor's CPU
# seconds and peak RSS (the bench's own CPU figures on a cluster are the submitting host's share).
#
#   scripts/bench-cluster.sh ROWS [FILES]
#
# Environment: KIBAN_NODE (the release binary; default $CARGO_TARGET_DIR/release/kiban-cluster-node,
# built with `cargo build --release -p kiban-cluster --features cluster --bin kiban-cluster-node`),
# KIBAN_BENCH_WORK (scratch dir; default under the target dir), KIBAN_DUCKDB_PYTHON (a Python with
# `duckdb`; default target/peers-venv-gate/bin/python if present), KIBAN_BENCH_ARGS (extra bench
# flags, e.g. --no-anonymize), KIBAN_EXECUTOR_VCORES (task slots per executor, default 2).
set -euo pipefail
ROWS=${1:?usage: scripts/bench-cluster.sh ROWS [FILES]}
FILES=${2:-8}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${KIBAN_NODE:-$TARGET/release/kiban-cluster-node}
WORK=${KIBAN_BENCH_WORK:-$TARGET/bench-cluster}
VCORES=${KIBAN_EXECUTOR_VCORES:-2}
PY=${KIBAN_DUCKDB_PYTHON:-}
if [[ -z $PY ]]; then
  for p in "$TARGET/peers-venv-gate/bin/python" "$TARGET/../peers-venv-gate/bin/python"; do
    [[ -x $p ]] && PY=$p && break
  done
fi
[[ -x $BIN ]] || { echo "no binary at $BIN (build it with --features cluster)" >&2; exit 2; }
"$BIN" --help | grep -q scheduler || { echo "$BIN was built without the cluster feature" >&2; exit 2; }

rm -rf "$WORK"
mkdir -p "$WORK/logs"
KEY=$WORK/cluster.key
"$BIN" keygen "$KEY"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

SCHED=127.0.0.1:$(free_port)
RUST_LOG=warn "$BIN" scheduler --bind "$SCHED" --job-data-cleanup-s 600 >"$WORK/logs/scheduler.log" 2>&1 &
PIDS+=($!)
for i in 0 1; do
  RUST_LOG=warn "$BIN" executor --scheduler "$SCHED" --flight-port "$(free_port)" --grpc-port "$(free_port)" \
    --work-dir "$WORK/executor-$i" --key-file "$KEY" --vcores "$VCORES" >"$WORK/logs/executor-$i.log" 2>&1 &
  PIDS+=($!)
done
sleep 3

ARGS=(bench --rows "$ROWS" --files "$FILES" --work "$WORK/run" --cluster "df://$SCHED" --key-file "$KEY")
[[ -n $PY ]] && ARGS+=(--duckdb-python "$PY")
# shellcheck disable=SC2206
ARGS+=(${KIBAN_BENCH_ARGS:-})
echo "# $BIN ${ARGS[*]}" >&2
RUST_LOG=warn "$BIN" "${ARGS[@]}"

# Each executor's CPU seconds (user + system) and peak RSS over the whole run.
TICK=$(getconf CLK_TCK)
for i in 1 2; do
  p=${PIDS[$i]}
  read -r -a st <"/proc/$p/stat"
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$p/status")
  awk -v e=$((i - 1)) -v t="$(( ${st[13]} + ${st[14]} ))" -v hz="$TICK" -v kb="$hwm" \
    'BEGIN { printf "{\"executor\":%d,\"cpu_seconds\":%.2f,\"peak_rss_bytes\":%.0f}\n", e, t / hz, kb * 1024 }'
done
rm -rf "$WORK/run"
