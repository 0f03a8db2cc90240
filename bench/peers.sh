#!/usr/bin/env bash
# ferrodns against the caching forwarders a user would pick instead, in one run on this machine.
#
# Usage: bench/peers.sh [SECONDS] [SERVER...]   (default 10 s; servers: ferrodns unbound dnsdist
#                                                 kresd pdns_recursor)
#
# Method (the project's headline figure; see issue 3):
# - nsd on loopback is the authoritative upstream for `bench.ferro.` (not a special-use name, which some resolvers answer locally): 10,000 names plus a wildcard,
#   response rate limiting off (Debian builds nsd with it on).
# - Each server runs as a caching forwarder to nsd with equivalent settings, pinned to core 0;
#   dnsperf drives it from core 1 (nsd shares core 1: it only works on misses).
# - For each server and workload: queries per second; queries per CPU-second the server process
#   used (from /proc/PID/stat before and after; dnsperf on one core tops out near 130k QPS, so this
#   is the fair comparison); average latency at a fixed 10k QPS; lost queries.
# - hits: 1,000 names asked once to warm the cache, then asked over and over.
#   misses: every query a new name (wildcard answers), so every query is forwarded.
# ferrodns runs kubeadm's Corefile (log off, prometheus on) with ports changed.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
secs=${1:-10}
shift || true
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(ferrodns unbound dnsdist kresd pdns_recursor)

scripts/install-deps.sh --bench
cargo build --release --quiet

work=$(mktemp -d /tmp/ferrodns-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# --- the upstream: nsd with a generated zone (bench/common.sh) ----------------------------------
up=$(free_port)
start_nsd "$work/nsd" "$up" 1
pids+=("$NSD_PID")

wait_answer() { # port name
  for _ in $(seq 1 100); do
    if dig +short +time=1 +tries=1 -p "$1" @127.0.0.1 "$2" A 2>/dev/null | grep -q '^192\.0\.2\.'; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}
wait_answer "$up" n1.bench.ferro || { echo "nsd did not start:"; cat "$work/nsd/log"; exit 1; }

# --- the servers under test -----------------------------------------------------------------
start_server() { # name port -> prints pid
  local name=$1 port=$2 dir="$work/$1"
  mkdir -p "$dir"
  case "$name" in
    ferrodns)
      kubeadm_corefile "$port" "$up" 5s > "$dir/Corefile"
      taskset -c 0 target/release/ferrodns -conf "$dir/Corefile" -quiet > "$dir/log" 2>&1 &
      ;;
    unbound)
      cat > "$dir/unbound.conf" <<EOF
server:
    interface: 127.0.0.1@$port
    port: $port
    num-threads: 1
    so-reuseport: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "$dir"
    pidfile: "$dir/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    msg-cache-size: 64m
    rrset-cache-size: 128m
    domain-insecure: "bench.ferro"
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$up
EOF
      taskset -c 0 /usr/sbin/unbound -d -c "$dir/unbound.conf" > "$dir/log" 2>&1 &
      ;;
    dnsdist)
      cat > "$dir/dnsdist.conf" <<EOF
setSecurityPollSuffix("")
setLocal("127.0.0.1:$port")
newServer({address="127.0.0.1:$up", healthCheckMode="lazy"})
pc = newPacketCache(200000, {maxTTL=86400, minTTL=0})
getPool(""):setCache(pc)
EOF
      taskset -c 0 dnsdist --supervised --disable-syslog -C "$dir/dnsdist.conf" > "$dir/log" 2>&1 &
      ;;
    kresd)
      cat > "$dir/config" <<EOF
net.listen('127.0.0.1', $port, { kind = 'dns' })
modules.unload('ta_update')
trust_anchors.remove('.')
cache.size = 128 * MB
policy.add(policy.all(policy.STUB({'127.0.0.1@$up'})))
EOF
      taskset -c 0 /usr/sbin/kresd -n -q -c "$dir/config" "$dir" > "$dir/log" 2>&1 &
      ;;
    pdns_recursor)
      taskset -c 0 /usr/sbin/pdns_recursor --daemon=no --config-dir="$dir" --socket-dir="$dir" \
        --local-address=127.0.0.1 --local-port="$port" --threads=1 --pdns-distributes-queries=no \
        --reuseport=no --forward-zones=".=127.0.0.1:$up" --dnssec=off --allow-from=127.0.0.0/8 \
        --dont-query= --max-cache-entries=1000000 --quiet=yes > "$dir/log" 2>&1 &
      ;;
    *) echo "unknown server $name" >&2; return 1 ;;
  esac
  echo $!
}

# dnsperf on core 1. Prints "qps lost avg_latency_ms" and leaves the server's CPU-seconds in
# $work/cpu.
run_dnsperf() { # pid port queryfile seconds [extra dnsperf args]
  local pid=$1 port=$2 file=$3 len=$4
  shift 4
  local before after
  before=$(cpu_ticks "$pid")
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$file" -l "$len" -c 8 -T 1 -q 1000 -t 2 "$@" \
    > "$work/dnsperf.out" 2>&1 || true
  after=$(cpu_ticks "$pid")
  awk -v a="$after" -v b="$before" -v hz="$hz" 'BEGIN { printf "%.3f", (a - b) / hz }' > "$work/cpu"
  awk '/Queries per second/ {q=$4} /Queries lost/ {l=$3} /Average Latency/ {lat=$4}
       END {printf "%s %s %.3f\n", q, l, lat * 1000}' "$work/dnsperf.out"
}

for i in $(seq 0 999); do echo "n$i.bench.ferro A"; done > "$work/hits"

results="$work/results"
: > "$results"
for name in "${servers[@]}"; do
  port=$(free_port)
  pid=$(start_server "$name" "$port")
  pids+=("$pid")
  if ! wait_answer "$port" n1.bench.ferro; then
    echo "$name did not answer; its log:"; cat "$work/$name/log"; kill "$pid" 2>/dev/null; continue
  fi
  # Warm the cache with every hit name.
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/hits" -n 1 -c 4 -q 100 > /dev/null 2>&1 || true

  read -r hqps hlost _ < <(run_dnsperf "$pid" "$port" "$work/hits" "$secs")
  hcpu=$(cat "$work/cpu")
  read -r _ _ hlat < <(run_dnsperf "$pid" "$port" "$work/hits" 3 -Q 10000)

  # Misses: a fresh name for every query (the wildcard answers them), never asked before.
  awk -v n="$name" 'BEGIN { for (i = 0; i < 3000000; i++) printf "m%d-%s.bench.ferro A\n", i, n }' \
    > "$work/misses"
  read -r mqps mlost _ < <(run_dnsperf "$pid" "$port" "$work/misses" "$secs")
  mcpu=$(cat "$work/cpu")
  awk -v n="$name" 'BEGIN { for (i = 0; i < 100000; i++) printf "l%d-%s.bench.ferro A\n", i, n }' \
    > "$work/misses"
  read -r _ _ mlat < <(run_dnsperf "$pid" "$port" "$work/misses" 3 -Q 10000)

  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "$name $hqps $hcpu $hlat $hlost $mqps $mcpu $mlat $mlost" >> "$results"
done

echo
echo "Caching forwarders in front of nsd, server pinned to core 0, dnsperf on core 1, ${secs}s per run"
awk -v secs="$secs" '
  function per(q, c) { return c > 0 ? q * secs / c : 0 }
  { n[NR]=$1; hq[NR]=$2; hc[NR]=per($2,$3); hl[NR]=$4; hx[NR]=$5; mq[NR]=$6; mc[NR]=per($6,$7); ml[NR]=$8; mx[NR]=$9
    if ($1 != "ferrodns" && hc[NR] > besth) { besth = hc[NR]; bh = $1 }
    if ($1 != "ferrodns" && mq[NR] > bestm) { bestm = mq[NR]; bm = $1 }
    if ($1 == "ferrodns") f = NR }
  END {
    printf "%-14s | %9s %10s %8s %6s | %9s %10s %8s %6s\n", "server", "hit QPS", "hit/CPU-s", "lat ms", "lost", "miss QPS", "miss/CPU-s", "lat ms", "lost"
    for (i = 1; i <= NR; i++)
      printf "%-14s | %9.0f %10.0f %8.3f %6d | %9.0f %10.0f %8.3f %6d\n", n[i], hq[i], hc[i], hl[i], hx[i], mq[i], mc[i], ml[i], mx[i]
    if (f && besth > 0) printf "ferrodns / best peer: hits per CPU-second %.2fx (%s), misses per second %.2fx (%s)\n", hc[f] / besth, bh, mq[f] / bestm, bm
  }' "$results"
