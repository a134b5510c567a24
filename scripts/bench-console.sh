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

cpu_ticks() { # user+sys clock ticks of a process
  awk '{print $14 + $15}' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)

run() { # name path [cookie] [server pid] [port]
  local out t0 t1 p=${5:-$port} who=${4:-$pid}
  t0=$(cpu_ticks "$who")
  if [ -n "${3:-}" ]; then
    out=$(wrk -t2 -c16 -d"${secs}s" --latency -H "Cookie: $3" "http://127.0.0.1:$p$2")
  else
    out=$(wrk -t2 -c16 -d"${secs}s" --latency "http://127.0.0.1:$p$2")
  fi
  t1=$(cpu_ticks "$who")
  local rps p99 non2xx reqs cpu per_cpu
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz}')
  # Requests per CPU-second of the server (user+sys): steadier than wall time on a loaded machine.
  per_cpu=$(awk -v r="$reqs" -v c="$cpu" 'BEGIN {if (c > 0) printf "%.0f", r / c; else print "n/a"}')
  echo "$1 $2: ${rps} req/s, p99 ${p99}, non-2xx ${non2xx:-0}; server CPU ${cpu}s for ${reqs} requests = ${per_cpu} req per CPU-second (target >= 500 req/s, p99 < 50ms)"
  last_per_cpu=$per_cpu
}
echo "kiban console benchmark — wrk, 2 threads, 16 connections, ${secs}s, loopback, $(nproc) cores"
run "registry list" /console/providers "$cookie"
if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/public/catalogue")" = 200 ]; then
  run "catalogue" /public/catalogue
else
  echo "catalogue /public/catalogue: not served by this build (the public-site branch adds it)"
fi

# Peer: Python's standard-library HTTP server sending the same page as a static file (no login, no
# registry, no template), measured the same way; the ratio compares server CPU per request.
peer_dir="$work/peer"
mkdir -p "$peer_dir"
curl -s -H "Cookie: $cookie" "http://127.0.0.1:$port/console/providers" >"$peer_dir/providers.html"
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$pport" --bind 127.0.0.1 --directory "$peer_dir" >/dev/null 2>&1 &
ppid_=$!
trap 'kill $pid 2>/dev/null || true; kill $ppid_ 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$pport/providers.html" && break; sleep 0.2; done
kiban_per_cpu=$last_per_cpu
run "registry list (kiban again)" /console/providers "$cookie"
kiban_per_cpu=$last_per_cpu
run "peer: python3 -m http.server, same HTML as a static file" /providers.html "" "$ppid_" "$pport"
awk -v k="$kiban_per_cpu" -v p="$last_per_cpu" 'BEGIN {if (p > 0) printf "ratio kiban / python http.server (requests per server CPU-second): %.2f\n", k / p}'
