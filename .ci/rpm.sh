#!/usr/bin/env bash
# CI job (issue 16): the RPM built as a distribution would, from two source
# tarballs (the tree, and the crates `cargo vendor` fetched), with cargo
# offline inside a network namespace that has no network; its file list
# checked against packaging/rpm-files.txt; installed into a temporary root
# with `rpm --root`; the installed binaries run; the unit checked with
# systemd-analyze. Debian's rpm lacks a few EL macros: packaging/
# rpm-macros.debian defines them (the spec is not edited for Debian).
# Needs root (unshare -n). Prints its duration.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
version=$(sed -n 's/^Version: *//p' packaging/berth.spec)
top=$(mktemp -d "${TMPDIR:-/var/tmp}/berth-rpm.XXXXXX")
trap 'rm -rf "$top"' EXIT
mkdir -p "$top"/{SOURCES,SPECS,BUILD,BUILDROOT,RPMS,SRPMS,root,vendor}

echo "== source tarballs"
git archive --format=tar.gz --prefix="berth-$version/" \
    -o "$top/SOURCES/berth-$version.tar.gz" HEAD
cargo vendor --locked --quiet "$top/vendor/vendor" >/dev/null
tar -C "$top/vendor" -czf "$top/SOURCES/berth-$version-vendor.tar.gz" vendor
rm -rf "$top/vendor"

echo "== rpmbuild, offline"
# A CI build need not spend minutes optimising: the same code, unoptimised
# (the crate is compiled three times: the agent, the static glibc shim and
# the musl CLI; 196 s instead of 432 s). RPM_FULL_OPT=1 keeps the release
# profile as is.
if [ -z "${RPM_FULL_OPT:-}" ]; then
    export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
    export CARGO_PROFILE_RELEASE_OPT_LEVEL=0
fi
# No network inside: a build that needed crates.io would fail here.
unshare -n -- rpmbuild --nodeps --load packaging/rpm-macros.debian \
    --define "_topdir $top" -bb packaging/berth.spec >"$top/rpmbuild.log" 2>&1 ||
    { tail -40 "$top/rpmbuild.log"; echo "rpmbuild failed"; exit 1; }
rpm_file=$(find "$top/RPMS" -name "berth-$version-*.rpm" | head -1)
[ -n "$rpm_file" ] || { echo "no rpm built"; exit 1; }
echo "   $(basename "$rpm_file"), $(du -h "$rpm_file" | cut -f1)"

echo "== install into a temporary root"
root="$top/root"
rpm --root "$root" --initdb
rpm --root "$root" -i --nodeps --noscripts "$rpm_file"
"$root/usr/bin/berth" --version
"$root/usr/bin/berth" agent --help >/dev/null
[ -x "$root/usr/libexec/berth/berth-shim" ]
# `berth agent` execs the packaged berth-agent (decision 0052): the error
# is the agent's own (no config file), not one of finding it.
if out=$("$root/usr/bin/berth" agent --config "$top/no-such.toml" 2>&1); then
    echo "berth agent ran without its config file"; exit 1
fi
grep -q "read config" <<<"$out" || { echo "berth agent did not run berth-agent: $out"; exit 1; }
grep -q '^shim = "/usr/libexec/berth/berth-shim"' "$root/etc/berth/berth.toml"

echo "== static berth (musl) and berth-shim (glibc), dynamic berth-agent (decisions 0054, 0055)"
interp() { readelf -lW "$1" | grep -q 'Requesting program interpreter'; }
for bin in usr/bin/berth usr/libexec/berth/berth-shim; do
    ! interp "$root/$bin" || { echo "$bin is not static"; exit 1; }
done
interp "$root/usr/libexec/berth/berth-agent" || { echo "berth-agent is not dynamic"; exit 1; }
# The CLI on musl, the shim on glibc (decision 0055): glibc reads its
# tunables from the environment at start, musl has none.
glibc() { grep -q GLIBC_TUNABLES "$1"; }
! glibc "$root/usr/bin/berth" || { echo "berth is not built on musl"; exit 1; }
glibc "$root/usr/libexec/berth/berth-shim" || { echo "berth-shim is not built on glibc"; exit 1; }

echo "== a container through the installed binaries"
(
    . benches/lib.sh
    bench_setup rpm
    BERTH="$root/usr/bin/berth" SHIM="$root/usr/libexec/berth/berth-shim"
    trap 'stop_agent; remove_bench_cgroups; rm -rf "$BASE"' EXIT
    busybox_rootfs "$BASE/rootfs" sh echo
    : >"$BASE/berth.toml"
    start_agent --config "$BASE/berth.toml"
    out=$("$BERTH" --socket "$BASE/berth.sock" run --rm --rootfs "$BASE/rootfs" -- \
        sh -c 'echo "from the container"; exit 7') && status=0 || status=$?
    [ "$out" = "from the container" ] || { echo "unexpected output: $out"; exit 1; }
    [ "$status" = 7 ] || { echo "exit status $status, not 7"; exit 1; }
    echo "   output and exit status 7 through the static CLI and shim"
)

echo "== file list"
# packaging/rpm-files.txt, plus a man page for every command the installed
# berth has (compared without the .gz a build host's rpm may add); the
# documentation tree (one file per decision) is checked for presence only,
# and the build-id links (one per binary build) not at all.
"$root/usr/bin/berth" man "$top/man"
{ cat packaging/rpm-files.txt; ls "$top/man" | sed 's|^|/usr/share/man/man1/|'; } |
    sort >"$top/expected.txt"
rpm -qlp "$rpm_file" | sed 's/\.gz$//' | grep -v -e '^/usr/share/doc/berth-[^/]*/docs/' -e '^/usr/lib/.build-id' |
    sort >"$top/files.txt"
if ! diff -u "$top/expected.txt" "$top/files.txt"; then
    echo "the package's files differ from the expected list"
    exit 1
fi
rpm -qlp "$rpm_file" | grep -q '/docs/log-format.md$' || { echo "docs missing"; exit 1; }
[ "$(stat -c %a "$root/var/lib/berth")" = 711 ]

if command -v systemd-analyze >/dev/null; then
    echo "== systemd-analyze verify"
    # The unit as installed, its binary at the temporary root's path.
    sed "s|/usr/bin/berth|$root/usr/bin/berth|" "$root/usr/lib/systemd/system/berth.service" \
        >"$top/berth.service"
    MANPATH="$root/usr/share/man" systemd-analyze verify "$top/berth.service"
fi
echo "rpm job: ok in $(( $(date +%s) - start ))s"
