# Sourced by the benchmarks: the authoritative upstream they forward to, and the Corefile
# ferrodns runs in front of it.
#
# start_nsd DIR PORT [CPU]: nsd on 127.0.0.1:PORT serving `bench.ferro.` from DIR: 10,000 names
# (n0 ... n9999) plus a wildcard, so that every made-up name is a fresh answer. Not a special-use
# name, which some resolvers answer locally. Response rate limiting is off (Debian builds nsd
# with it on). Pinned to CPU when given. Sets NSD_PID.
start_nsd() {
  local dir=$1 port=$2 cpu=${3:-}
  mkdir -p "$dir"
  {
    printf '$ORIGIN bench.ferro.\n$TTL 3600\n'
    printf '@ IN SOA ns.bench.ferro. admin.bench.ferro. 1 3600 600 86400 300\n'
    printf '@ IN NS ns.bench.ferro.\nns IN A 127.0.0.1\n* IN A 192.0.2.250\n'
    for i in $(seq 0 9999); do printf 'n%d IN A 192.0.2.%d\n' "$i" $((i % 250)); done
  } > "$dir/bench.ferro.zone"
  cat > "$dir/nsd.conf" <<CONF
server:
    ip-address: 127.0.0.1@$port
    port: $port
    username: ""
    chroot: ""
    zonesdir: "$dir"
    database: ""
    zonelistfile: "$dir/zone.list"
    xfrdfile: "$dir/xfrd.state"
    xfrdir: "$dir"
    pidfile: "$dir/nsd.pid"
    server-count: 1
    verbosity: 0
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: bench.ferro
    zonefile: bench.ferro.zone
CONF
  if [ -n "$cpu" ]; then
    taskset -c "$cpu" /usr/sbin/nsd -d -c "$dir/nsd.conf" > "$dir/log" 2>&1 &
  else
    /usr/sbin/nsd -d -c "$dir/nsd.conf" > "$dir/log" 2>&1 &
  fi
  NSD_PID=$!
}

# kubeadm_corefile PORT UPSTREAM_PORT LAMEDUCK: kubeadm's Corefile with log off and the ports
# changed (health, ready and prometheus on free loopback ports). Needs free_port.
kubeadm_corefile() {
  cat <<EOF
.:$1 {
    errors
    health 127.0.0.1:$(free_port) { lameduck $3 }
    ready 127.0.0.1:$(free_port)
    prometheus 127.0.0.1:$(free_port)
    forward . 127.0.0.1:$2 { max_concurrent 1000 }
    cache 30
    loop
    reload
    loadbalance
}
EOF
}
