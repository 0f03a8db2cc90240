#!/usr/bin/env bash
# Cache hits per CPU-second: ferrodns pinned to core 0 with `cache` in front of an answering
# plugin, dnsperf on core 1 asking one name over and over, so every query after the first is a
# hit. Usage: bench/cache.sh [SECONDS]   (default 10).
#
# BENCH_UPSTREAM swaps what sits behind the cache (default `whoami`, whose answer the cache keeps
# for an hour thanks to MINTTL; with `forward` merged, e.g. "forward . 127.0.0.1:5300" in front
# of a loopback server). BENCH_EXTRA adds directives, e.g. BENCH_EXTRA="prometheus :9153" to
# measure with metrics on. Prints QPS, server CPU-seconds and hits per CPU-second (dnsperf on one
# core saturates before a fast server does, so the per-CPU figure is the fair one).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
scripts/install-deps.sh
cargo build --release --quiet
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
upstream=${BENCH_UPSTREAM:-whoami}
extra=${BENCH_EXTRA:-}
cat > "$work/Corefile" <<CF
.:$port {
    $extra
    cache {
        success 9984 3600 3600
    }
    $upstream
}
CF
for i in $(seq 1 100); do echo "bench.example.org A"; done > "$work/queries"
taskset -c 0 target/release/ferrodns -conf "$work/Corefile" -quiet &
pid=$!
sleep 0.5
# Fill the cache before measuring.
dig +short +tries=1 +time=1 @127.0.0.1 -p "$port" bench.example.org A > /dev/null || true
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries" -l "$secs" -c 4 -T 1 -q 500 > "$work/out"
after=$(ticks)
qps=$(awk '/Queries per second/ {print $4}' "$work/out")
lost=$(awk '/Queries lost/ {print $3}' "$work/out")
cpu=$(awk -v a="$after" -v b="$before" -v hz="$hz" 'BEGIN { printf "%.2f", (a - b) / hz }')
per_cpu=$(awk -v q="$qps" -v s="$secs" -v c="$cpu" 'BEGIN { printf "%.0f", (c > 0 ? q * s / c : 0) }')
printf 'ferrodns cache hits: %s QPS, %s lost, %s CPU-s in %ss, %s hits per CPU-second\n' "$qps" "$lost" "$cpu" "$secs" "$per_cpu"
