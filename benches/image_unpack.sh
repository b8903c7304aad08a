#!/usr/bin/env bash
# Layer extraction throughput: one ~200 MiB gzip layer (real files from
# /usr) unpacked by berth (berth::images::unpack, the release test binary)
# side by side with `tar -xzf` and `umoci unpack` of the same layer in the
# same run. Prints seconds and MB/s of uncompressed tar for each, best of
# RUNS (default 3), and the ratio berth / tar.
#
# Quick run: SIZE_MIB=50 RUNS=1 benches/image_unpack.sh
# BENCH_DIR=/dev/shm measures the extractors rather than a shared disk (the
# runs alternate and each starts after a `sync`, so no run pays for the
# previous one's dirty pages).
# Needs root (ownership, device nodes). Installs umoci and python3 with
# apt-get if missing. Everything goes under a temp dir in $BENCH_DIR
# (default /var/tmp), removed at the end. Not run by CI.

set -euo pipefail

SIZE_MIB=${SIZE_MIB:-200}
RUNS=${RUNS:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BASE=$(mktemp -d "${BENCH_DIR:-/var/tmp}/berth-unpack-bench.XXXXXX")
trap 'rm -rf "$BASE"' EXIT

die() { echo "image_unpack: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
need=()
command -v umoci >/dev/null || need+=(umoci)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The layer: files under /usr until SIZE_MIB of content.
python3 - "$SIZE_MIB" > "$BASE/list" <<'EOF'
import os, sys
limit = int(sys.argv[1]) << 20
total = 0
for top in ("usr/share", "usr/lib", "usr/bin"):
    for dirpath, dirnames, filenames in os.walk("/" + top):
        dirnames.sort()
        print(dirpath[1:])
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            print(path[1:])
            total += st.st_size
            if total >= limit:
                sys.exit(0)
EOF
tar -cf "$BASE/layer.tar" -C / --no-recursion -T "$BASE/list" 2>/dev/null || true
gzip -1 -c "$BASE/layer.tar" > "$BASE/layer.tar.gz"
tar_bytes=$(stat -c %s "$BASE/layer.tar")
echo "layer: $(( tar_bytes >> 20 )) MiB tar, $(( $(stat -c %s "$BASE/layer.tar.gz") >> 20 )) MiB gzip, $(wc -l < "$BASE/list") entries"

# umoci's image: an empty base plus the layer.
umoci init --layout "$BASE/oci" >/dev/null
umoci new --image "$BASE/oci:base" >/dev/null
umoci raw add-layer --image "$BASE/oci:base" --tag layer "$BASE/layer.tar" >/dev/null

(cd "$REPO" && cargo test --release --test image_unpack --no-run -q 2>/dev/null) ||
    (cd "$REPO" && cargo test --release --test image_unpack --no-run)

best() { sort -n | head -1; }
time_of() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }

tar_times=() umoci_times=() berth_times=()
for _ in $(seq "$RUNS"); do
    rm -rf "$BASE/x"; mkdir "$BASE/x"; sync
    tar_times+=("$(time_of tar -xzf "$BASE/layer.tar.gz" -C "$BASE/x" --numeric-owner)")
    rm -rf "$BASE/x" "$BASE/bundle"; sync
    umoci_times+=("$(time_of umoci unpack --image "$BASE/oci:layer" "$BASE/bundle")")
    rm -rf "$BASE/bundle"; sync
    out=$(cd "$REPO" && BERTH_BENCH_LAYER="$BASE/layer.tar" BERTH_BENCH_BLOB="$BASE/layer.tar.gz" \
        BERTH_BENCH_DIR="$BASE" cargo test --release -q --test image_unpack -- \
        --ignored --nocapture --exact bench_unpack_throughput 2>&1 | grep '^berth unpack:')
    berth_times+=("$(sed -E 's/.* in ([0-9.]+)s .*/\1/' <<<"$out")")
done

report() {
    local name=$1 t=$2
    printf '%-14s %6.2fs  %7.1f MB/s\n' "$name" "$t" "$(echo "$tar_bytes / 1000000 / $t" | bc -l)"
}
t_tar=$(printf '%s\n' "${tar_times[@]}" | best)
t_umoci=$(printf '%s\n' "${umoci_times[@]}" | best)
t_berth=$(printf '%s\n' "${berth_times[@]}" | best)
report "tar -xzf" "$t_tar"
report "umoci unpack" "$t_umoci"
report "berth" "$t_berth"
printf 'berth / tar: %.2f   berth / umoci: %.2f\n' \
    "$(echo "$t_berth / $t_tar" | bc -l)" "$(echo "$t_berth / $t_umoci" | bc -l)"
