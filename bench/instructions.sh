#!/usr/bin/env bash
# User-space instructions per query, counted by callgrind: the one figure on this 2-core machine
# that does not move with whatever else is running, so it is how the hot paths are tuned between
# the timed runs of bench/peers.sh.
#
# Usage: bench/instructions.sh [hits|misses] [QUERIES]   (default: hits, 200000)
#
# ferrodns runs kubeadm's Corefile (log off, prometheus on) under `valgrind --tool=callgrind` in
# front of nsd (bench.ferro., as in bench/peers.sh). hits: 1,000 names asked once, then asked
# over and over; misses: every query a new name. Prints instructions per query (start-up and the
# warm-up subtracted: a second, shorter run with only the warm-up is counted too) and leaves the
# callgrind profile where it says, for `callgrind_annotate`.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
workload=${1:-hits}
queries=${2:-200000}
case "$workload" in hits|misses) ;; *) echo "usage: $0 [hits|misses] [QUERIES]" >&2; exit 2 ;; esac

scripts/install-deps.sh --bench
command -v valgrind > /dev/null || { echo "valgrind is missing" >&2; exit 1; }
cargo build --release --quiet

work=$(mktemp -d /tmp/ferrodns-instr.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

up=$(free_port)
start_nsd "$work/nsd" "$up"
pids+=("$NSD_PID")

for i in $(seq 0 999); do echo "n$i.bench.ferro A"; done > "$work/hits"

# One profiled run: start, warm, ask $1 queries from file $2, stop. Prints total instructions.
profile() { # queries file out
  local n=$1 file=$2 out=$3 port pid
  port=$(free_port)
  kubeadm_corefile "$port" "$up" 0s > "$work/Corefile"
  valgrind --tool=callgrind --callgrind-out-file="$out" \
    target/release/ferrodns -conf "$work/Corefile" -quiet > "$work/ferrodns.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 n1.bench.ferro A 2>/dev/null | grep -q '^192' && break
    sleep 0.1
  done
  dnsperf -s 127.0.0.1 -p "$port" -d "$work/hits" -n 1 -c 4 -q 100 > /dev/null 2>&1 || true
  if [ "$n" -gt 0 ]; then
    dnsperf -s 127.0.0.1 -p "$port" -d "$file" -n 1 -c 8 -q 200 -t 5 > "$work/dnsperf.out" 2>&1 || true
    grep -E 'Queries (completed|lost)' "$work/dnsperf.out" >&2
  fi
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  awk '/^summary:/ {print $2}' "$out"
}

if [ "$workload" = hits ]; then
  : > "$work/queries"
  reps=$(( (queries + 999) / 1000 ))
  for _ in $(seq 1 "$reps"); do cat "$work/hits" >> "$work/queries"; done
  queries=$((reps * 1000))
else
  awk -v n="$queries" -v r="$RANDOM" 'BEGIN { for (i = 0; i < n; i++) printf "m%d-%d.bench.ferro A\n", i, r }' \
    > "$work/queries"
fi
base=$(profile 0 /dev/null "$work/base.out")
total=$(profile "$queries" "$work/queries" "$work/callgrind.out")
awk -v t="$total" -v b="$base" -v q="$queries" -v w="$workload" \
  'BEGIN { printf "%s: %.0f instructions per query (%d queries; %.0f in all, %.0f for start-up and warm-up)\n", w, (t - b) / q, q, t, b }'
echo "profile: $work/callgrind.out (callgrind_annotate $work/callgrind.out)"
