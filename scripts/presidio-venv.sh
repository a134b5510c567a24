#!/usr/bin/env bash
# Makes the Python venv of the text benchmark's peer (presidio-analyzer) under the target dir.
# Only the benchmarks use it (`kiban bench-text`, `cargo bench -p kiban-deid --bench text`); tests do not.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${CARGO_TARGET_DIR:-$root/target}/peers-venv-text"
if "$venv/bin/python" -c "import presidio_analyzer" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
# PyPI connections are sometimes reset: retry.
for i in 1 2 3 4 5; do
  "$venv/bin/pip" install -q presidio-analyzer && break
  echo "pip failed (try $i), retrying" >&2
  sleep 3
done
"$venv/bin/python" -c "import presidio_analyzer"
echo "$venv/bin/python"
