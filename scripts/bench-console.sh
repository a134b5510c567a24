#!/usr/bin/env bash
# Console benchmark (issue 12): `kiban serve --demo` on loopback, one logged-in session, then wrk on
# the registry list page (/console/providers) and, when the public site is built in, the catalogue
# (/public/catalogue). Target: >= 500 requests/s with p99 < 50 ms on 2 cores.
# Usage: scripts/bench-console.sh [seconds]   (builds the release binary once if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
target=${CARGO_TARGET_DIR:-target}
scripts/fetch-browser.sh   # installs wrk too
bin=${KIBAN_BIN:-$target/release/kiban}
[ -x "$bin" ] || cargo build --release -p kiban
work="$target/bench-console"
demo_dir=${KIBAN_DEMO_DIR:-$work/demo}
mkdir -p "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log="$work/serve.log"
"$bin" serve --demo --demo-dir "$demo_dir" --bind "127.0.0.1:$port" --idle-minutes 60 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q "security-officer" "$log" 2>/dev/null && curl -s -o /dev/null "http://127.0.0.1:$port/login" && break
  kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
  sleep 1
done
# The intake operator may read the providers list; the printed "code now" column is its current TOTP.
line=$(grep -E "^ +intake_operator " "$log")
login=$(awk '{print $2}' <<<"$line"); code=$(awk '{print $4}' <<<"$line")
password=$(sed -n 's/^パスワード password (all accounts): //p' "$log")
cookie=$(curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$port/login" \
  --data-urlencode "login=$login" --data-urlencode "password=$password" --data-urlencode "totp=$code" \
  | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(kiban_session=[0-9a-f]*\).*/\1/p')
[ -n "$cookie" ] || { echo "login failed"; cat "$log"; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "http://127.0.0.1:$port/console/providers")
[ "$status" = 200 ] || { echo "/console/providers answered $status"; exit 1; }

run() { # name path [cookie]
  local out
  if [ -n "${3:-}" ]; then
    out=$(wrk -t2 -c16 -d"${secs}s" --latency -H "Cookie: $3" "http://127.0.0.1:$port$2")
  else
    out=$(wrk -t2 -c16 -d"${secs}s" --latency "http://127.0.0.1:$port$2")
  fi
  local rps p99 non2xx
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  echo "$1 $2: ${rps} req/s, p99 ${p99}, non-2xx ${non2xx:-0} (target >= 500 req/s, p99 < 50ms)"
}
echo "kiban console benchmark — wrk, 2 threads, 16 connections, ${secs}s, loopback, $(nproc) cores"
run "registry list" /console/providers "$cookie"
if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/public/catalogue")" = 200 ]; then
  run "catalogue" /public/catalogue
else
  echo "catalogue /public/catalogue: not served by this build (the public-site branch adds it)"
fi
