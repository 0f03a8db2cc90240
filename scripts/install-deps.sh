#!/usr/bin/env bash
# Install the Debian packages the tests and benchmarks drive ferrodns with. Safe to run again:
# it installs only what is missing. Needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail

# command -> Debian package
declare -A want=(
  [dig]=bind9-dnsutils
  [kdig]=knot-dnsutils
  [dnsperf]=dnsperf
  # The interop suite (tests/interop_dualstack.rs): network namespaces and the real clients,
  # built from tests/interop/ (pip fetches the c-ares 1.15.0 sources).
  [ip]=iproute2
  [gcc]=gcc
  [musl-gcc]=musl-tools
  [pgbouncer]=pgbouncer
  [nginx]=nginx
  [pip3]=python3-pip
)
# file -> Debian package, for what is not a command
declare -A want_files=(
  [/usr/include/ares.h]=libc-ares-dev
)
if [ "${1:-}" = "--bench" ]; then
  want[nsd]=nsd
  want[unbound]=unbound
  want[dnsdist]=dnsdist
  want[kresd]=knot-resolver
  want[pdns_recursor]=pdns-recursor
fi

missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${want[$cmd]}")
done
for f in "${!want_files[@]}"; do
  [ -e "$f" ] || missing+=("${want_files[$f]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
