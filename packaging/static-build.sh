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
# The CLI is linked against musl where this toolchain has the musl target
# (`rustup target add x86_64-unknown-linux-musl`) and a musl C compiler is at
# hand (`musl-gcc`; Debian: musl-tools), else against glibc, and says which
# (decision 0055): glibc's static start-up asks the CPU about its caches
# with dozens of CPUID instructions, each a trap to the hypervisor in a VM,
# ~0.5 ms of every command. The shim stays on glibc (its launch path
# allocates, and musl's allocator made a launch slower). BERTH_CLI_LIBC=glibc
# forces glibc; BERTH_CLI_LIBC=musl fails rather than fall back.
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
# The CLI on musl, if this host can build it (see above).
musl_triple=${triple%%-*}-unknown-linux-musl
musl_std=$(rustc --print target-libdir --target "$musl_triple" 2>/dev/null || true)
cli_libc=glibc
if [ "${BERTH_CLI_LIBC:-}" != glibc ] && [ -n "$musl_std" ] &&
    compgen -G "$musl_std/libstd-*.rlib" >/dev/null && command -v musl-gcc >/dev/null; then
    cli_libc=musl
elif [ "${BERTH_CLI_LIBC:-}" = musl ]; then
    echo "static-build: BERTH_CLI_LIBC=musl, but no $musl_triple target or no musl-gcc" >&2
    exit 2
fi
glibc_bins=(--bin berth-shim)
[ "$cli_libc" = glibc ] && glibc_bins+=(--bin berth)
# With --target, RUSTFLAGS reach only the target's code, not build scripts
# or proc macros (which must stay dynamic to be loaded by rustc).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$(dirname "$libseccomp_a") \
    cargo build --release --target "$triple" "${glibc_bins[@]}" "$@"
cli_built="$target_dir/$triple/release/berth"
if [ "$cli_libc" = musl ]; then
    # libseccomp.a alone in a dir of its own: the link searches that dir
    # before musl's, and glibc's libc.a must not be found there.
    seccomp_dir="$target_dir/musl-libseccomp"
    mkdir -p "$seccomp_dir"
    cp "$libseccomp_a" "$seccomp_dir/libseccomp.a"
    musl_cc_var="CC_$(tr - _ <<<"$musl_triple")"
    # httparse picks its SIMD code at run time through std_detect, whose
    # first use asks the CPU with a dozen CPUIDs (traps in a VM): the CLI
    # parses a few short response heads, which need no SIMD.
    env "$musl_cc_var=musl-gcc" \
        RUSTFLAGS="${RUSTFLAGS:-} --cfg httparse_disable_simd=\"1\"" \
        LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH="$seccomp_dir" \
        cargo build --release --target "$musl_triple" --bin berth "$@"
    cli_built="$target_dir/$musl_triple/release/berth"
fi
echo "static-build: berth (the CLI) on $cli_libc, berth-shim on glibc" >&2

mkdir -p "$out"
for bin in berth berth-shim; do
    built="$target_dir/$triple/release/$bin"
    [ "$bin" = berth ] && built=$cli_built
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
