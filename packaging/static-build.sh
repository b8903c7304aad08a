#!/usr/bin/env bash
# Builds the two binaries that start once per command or per container,
# `berth` (the CLI) and `berth-shim`, as static-pie executables, and copies
# them into OUT_DIR (decision 0054): no dynamic loader, no shared libraries
# to map, relocate and fault in at every start; ASLR stays (static-pie).
# `berth-agent` stays dynamic: it starts once, and resolves registry host
# names through the host's NSS, which a static glibc cannot load safely.
#
#   packaging/static-build.sh OUT_DIR [CARGO_ARGS...]   # e.g. --locked --offline
#
# Needs the static C libraries the two link: glibc's libc.a (Debian:
# libc6-dev; EL: glibc-static) and libseccomp.a (Debian: libseccomp-dev; EL:
# libseccomp-static). Without either it builds nothing and exits 2, naming
# the missing one: linking a static binary against a shared libseccomp
# "succeeds" and yields a binary that crashes at start.
# Honours CARGO_TARGET_DIR; builds for the host's target triple.

set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [CARGO_ARGS...]" >&2; exit 64; }
out=$1
shift
cd "$(dirname "$0")/.."

# The path the C compiler links for a library, or nothing.
static_lib() {
    local path
    path=$(${CC:-cc} -print-file-name="$1" 2>/dev/null || true)
    if [ -n "$path" ] && [ "$path" != "$1" ] && [ -e "$path" ]; then
        echo "$path"
    fi
}
missing=()
libc_a=$(static_lib libc.a)
libseccomp_a=$(static_lib libseccomp.a)
[ -n "$libc_a" ] || missing+=(libc.a)
[ -n "$libseccomp_a" ] || missing+=(libseccomp.a)
if [ ${#missing[@]} -gt 0 ]; then
    echo "static-build: no ${missing[*]} on this host (see $0)" >&2
    exit 2
fi

triple=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
# With --target, RUSTFLAGS reach only the target's code, not build scripts
# or proc macros (which must stay dynamic to be loaded by rustc).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$(dirname "$libseccomp_a") \
    cargo build --release --target "$triple" --bin berth --bin berth-shim "$@"

mkdir -p "$out"
for bin in berth berth-shim; do
    built="$target_dir/$triple/release/$bin"
    # A static-pie has no program interpreter: a left-over dynamic link
    # (the flag lost to a RUSTFLAGS override, a shared library slipped in)
    # shows here.
    if readelf -lW "$built" | grep -q 'Requesting program interpreter'; then
        echo "static-build: $built is not static" >&2
        exit 1
    fi
    install -m 0755 "$built" "$out/$bin"
done
"$out/berth" --version >/dev/null
# The shim refuses a missing argument with a usage line and exit 2; a
# broken static binary dies of a signal before main.
set +e
"$out/berth-shim" >/dev/null 2>&1
shim_status=$?
set -e
if [ "$shim_status" -ge 128 ]; then
    echo "static-build: $out/berth-shim died at start (status $shim_status)" >&2
    exit 1
fi
echo "$out"
