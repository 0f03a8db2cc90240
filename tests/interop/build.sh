#!/usr/bin/env bash
# Build the real DNS clients the interop suite (tests/interop_dualstack.rs) runs against
# ferrodns, into OUT (default target/interop). Run by the tests themselves; safe to run again:
# whatever is newer than its sources is kept, so a second run costs nothing.
#
#   resolve-glibc      getaddrinfo(AF_UNSPEC), glibc, dynamic
#   resolve-musl       the same source, musl-gcc -static (Debian's musl 1.2.3)
#   ares-1.18          ares_getaddrinfo / ares_gethostbyname against Debian's libc-ares
#   ares-1.15          the same source against c-ares 1.15.0, linked in statically
#   cares-1.15/libcares.so.2   c-ares 1.15.0 as a shared library, for PgBouncer via
#                      LD_LIBRARY_PATH (PgBouncer calls ares_gethostbyname, which 1.15 has)
#
# c-ares 1.15.0 comes from the pycares 3.1.1 sdist on PyPI (it bundles deps/c-ares with a
# ready config_linux/ares_config.h, so no autotools run is needed).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../target/interop}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# stale TARGET SOURCES...: whether TARGET must be (re)built.
stale() {
  local t="$1"
  shift
  [ -e "$t" ] || return 0
  local s
  for s in "$@" "$here/build.sh"; do
    [ "$s" -nt "$t" ] && return 0
  done
  return 1
}

cflags=(-O1 -Wall -Wextra)

if stale "$out/resolve-glibc" "$here/resolve.c"; then
  gcc "${cflags[@]}" -o "$out/resolve-glibc" "$here/resolve.c"
fi
if stale "$out/resolve-musl" "$here/resolve.c"; then
  musl-gcc "${cflags[@]}" -static -o "$out/resolve-musl" "$here/resolve.c"
fi
if stale "$out/ares-1.18" "$here/ares_resolve.c"; then
  gcc "${cflags[@]}" -o "$out/ares-1.18" "$here/ares_resolve.c" -lcares
fi

# c-ares 1.15.0 from source.
cares="$out/cares-1.15"
src="$cares/src"
if [ ! -f "$src/ares_version.h" ]; then
  dl="$out/download"
  mkdir -p "$dl"
  if ! ls "$dl"/pycares-3.1.1.tar.gz >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$dl" pycares==3.1.1
  fi
  rm -rf "$cares" "$dl/pycares-3.1.1"
  tar -xzf "$dl/pycares-3.1.1.tar.gz" -C "$dl" pycares-3.1.1/deps/c-ares/src
  mkdir -p "$cares"
  mv "$dl/pycares-3.1.1/deps/c-ares/src" "$src"
  rm -rf "$dl/pycares-3.1.1"
fi
grep -q 'ARES_VERSION_STR "1.15.0"' "$src/ares_version.h" || {
  echo "expected c-ares 1.15.0 in $src" >&2
  exit 1
}

# The library's sources on Linux (pycares' setup_cares.py list: everything but the Windows port).
lib_sources=()
for f in "$src"/*.c; do
  case "$(basename "$f")" in
    ares_platform.c | windows_port.c | ares_getenv.c) ;;
    *) lib_sources+=("$f") ;;
  esac
done
cares_flags=(-O1 -fPIC -w -DHAVE_CONFIG_H -D_LARGEFILE_SOURCE -D_FILE_OFFSET_BITS=64
  -DCARES_BUILDING_LIBRARY -I"$src" -I"$src/config_linux")

if stale "$cares/libcares.so.2" "$src/ares_version.h"; then
  gcc "${cares_flags[@]}" -shared -Wl,-soname,libcares.so.2 -o "$cares/libcares.so.2" \
    "${lib_sources[@]}"
fi
if stale "$out/ares-1.15" "$here/ares_resolve.c" "$src/ares_version.h"; then
  objs="$cares/obj"
  rm -rf "$objs"
  mkdir -p "$objs"
  for f in "${lib_sources[@]}"; do
    gcc "${cares_flags[@]}" -DCARES_STATICLIB -c -o "$objs/$(basename "${f%.c}").o" "$f"
  done
  gcc "${cflags[@]}" -DCARES_STATICLIB -I"$src" -o "$out/ares-1.15" "$here/ares_resolve.c" \
    "$objs"/*.o
fi
echo "interop clients ready in $out"
