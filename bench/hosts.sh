#!/usr/bin/env bash
# Queries per second for a `hosts`-answered name: ferrodns pinned to core 0, dnsperf on core 1.
# Usage: bench/hosts.sh [SECONDS]   (default 10). Prints QPS, server CPU-seconds and QPS per
# CPU-second (dnsperf on one core saturates before a fast server does, so the per-CPU figure is
# the fair one).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
scripts/install-deps.sh
cargo build --release --quiet
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# BENCH_PLUGIN swaps the answering plugin (for example `whoami`) to compare the chain's cost.
plugin=${BENCH_PLUGIN:-"hosts {
        192.0.2.10 bench.example.org
    }"}
cat > "$work/Corefile" <<CF
.:$port {
    $plugin
}
CF
for i in $(seq 1 100); do echo "bench.example.org A"; done > "$work/queries"
taskset -c 0 target/release/ferrodns -conf "$work/Corefile" -quiet &
pid=$!
sleep 0.5
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries" -l "$secs" -c 4 -T 1 -q 500 > "$work/out"
after=$(ticks)
qps=$(awk '/Queries per second/ {print $4}' "$work/out")
lost=$(awk '/Queries lost/ {print $3}' "$work/out")
cpu=$(awk -v a="$after" -v b="$before" -v hz="$hz" 'BEGIN { printf "%.2f", (a - b) / hz }')
per_cpu=$(awk -v q="$qps" -v s="$secs" -v c="$cpu" 'BEGIN { printf "%.0f", (c > 0 ? q * s / c : 0) }')
printf 'ferrodns hosts answer: %s QPS, %s lost, %s CPU-s in %ss, %s queries per CPU-second\n' "$qps" "$lost" "$cpu" "$secs" "$per_cpu"
