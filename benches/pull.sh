#!/usr/bin/env bash
# Pull + unpack of a ~200 MiB, 10-layer image from a registry on loopback:
# `berth pull` (the agent fetches, verifies every blob and diff_id, and
# extracts every layer) side by side with `skopeo copy` to an OCI layout +
# `umoci unpack` of the same image in the same run. Best of RUNS (default
# 3) for each; the ratio berth / (skopeo + umoci) is printed last (target:
# <= 0.7).
#
# Quick run: SIZE_MIB=50 RUNS=1 benches/pull.sh
# Needs root. Installs docker-registry, skopeo, umoci and python3 with
# apt-get if missing; builds berth in release mode. Everything goes under a
# temp dir in $BENCH_DIR (default /var/tmp), removed at the end. Not run by
# CI.
#
# Last measured (2 cores shared with other builds, 10 layers / 200 MiB of
# /usr files, 120 MiB gzip in the registry, RUNS=2): berth 4.85 s, skopeo
# copy + umoci unpack 17.89 s: ratio 0.27.

set -euo pipefail

SIZE_MIB=${SIZE_MIB:-200}
LAYERS=${LAYERS:-10}
RUNS=${RUNS:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TAG="berth-pull-$$"
BASE=$(mktemp -d "${BENCH_DIR:-/var/tmp}/$TAG.XXXXXX")
chmod 755 "$BASE"
REGISTRY_PID=""
AGENT_PID=""
cleanup() {
    set +e
    for pid in $AGENT_PID $REGISTRY_PID; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    # The agent's (empty) cgroup dirs.
    find /sys/fs/cgroup -depth -type d -name "$TAG" -exec rmdir {} \; 2>/dev/null || true
    rm -rf "$BASE"
}
trap cleanup EXIT

die() { echo "pull: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v umoci >/dev/null || need+=(umoci)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

(cd "$REPO" && cargo build --release --bins -q) || die "cargo build --release failed"
BERTH="$REPO/target/release/berth"
SHIM="$REPO/target/release/berth-shim"

# The registry: no auth, storage in the temp dir, a free port.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADDR="127.0.0.1:$PORT"
cat > "$BASE/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $BASE/registry
http:
  addr: $ADDR
EOF
docker-registry serve "$BASE/registry.yml" >"$BASE/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

# The image: LAYERS layers of real files from /usr, SIZE_MIB in all.
python3 - "$SIZE_MIB" "$LAYERS" "$BASE/lists" <<'EOF'
import os, sys
limit = int(sys.argv[1]) << 20
layers = int(sys.argv[2])
out = sys.argv[3]
os.makedirs(out, exist_ok=True)
per = limit // layers
files = []
total = 0
for top in ("usr/share", "usr/lib", "usr/bin"):
    for dirpath, dirnames, filenames in os.walk("/" + top):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            files.append((path[1:], st.st_size))
            total += st.st_size
            if total >= limit:
                break
        if total >= limit:
            break
    if total >= limit:
        break
n, acc = 0, 0
lists = [open(os.path.join(out, str(i)), "w") for i in range(layers)]
for path, size in files:
    lists[min(n, layers - 1)].write(path + "\n")
    acc += size
    if acc >= per * (n + 1):
        n += 1
EOF
umoci init --layout "$BASE/src" >/dev/null
umoci new --image "$BASE/src:img" >/dev/null
umoci unpack --image "$BASE/src:img" "$BASE/bundle" >/dev/null
for i in $(seq 0 $((LAYERS - 1))); do
    mkdir -p "$BASE/bundle/rootfs/l$i"
    tar -C / -cf - -T "$BASE/lists/$i" 2>/dev/null | tar -C "$BASE/bundle/rootfs/l$i" -xf -
    umoci repack --refresh-bundle --image "$BASE/src:img" "$BASE/bundle" >/dev/null
done
rm -rf "$BASE/bundle"
skopeo copy --quiet --dest-tls-verify=false "oci:$BASE/src:img" "docker://$ADDR/bench/img:v1"
blobs=$(du -sm "$BASE/registry" | cut -f1)
echo "image: $LAYERS layers, ~${SIZE_MIB} MiB of files, ${blobs} MiB in the registry"

# berth's agent.
mkdir -p "$BASE/run"
"$BERTH" agent --socket "$BASE/berth.sock" --work-dir "$BASE/work" \
    --runtime-dir "$BASE/run/berth" --cgroup-root "$TAG" --shim "$SHIM" \
    --insecure-registry "$ADDR" >"$BASE/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 100); do [ -S "$BASE/berth.sock" ] && break; sleep 0.1; done
[ -S "$BASE/berth.sock" ] || { cat "$BASE/agent.log"; die "agent did not start"; }
export BERTH_SOCKET="$BASE/berth.sock"

now() { date +%s.%N; }
best() { python3 -c 'import sys; print(min(float(x) for x in sys.argv[1:]))' "$@"; }

berth_times=()
tools_times=()
for run in $(seq "$RUNS"); do
    sync
    t0=$(now)
    "$BERTH" pull "$ADDR/bench/img:v1" >/dev/null
    t1=$(now)
    berth_times+=("$(python3 -c "print($t1 - $t0)")")
    "$BERTH" rmi "$ADDR/bench/img:v1" >/dev/null

    rm -rf "$BASE/sk" "$BASE/unpacked"
    sync
    t0=$(now)
    skopeo copy --quiet --src-tls-verify=false "docker://$ADDR/bench/img:v1" "oci:$BASE/sk:img"
    umoci unpack --image "$BASE/sk:img" "$BASE/unpacked" >/dev/null
    t1=$(now)
    tools_times+=("$(python3 -c "print($t1 - $t0)")")
    echo "run $run: berth ${berth_times[-1]} s, skopeo+umoci ${tools_times[-1]} s"
done
b=$(best "${berth_times[@]}")
t=$(best "${tools_times[@]}")
printf 'berth pull (fetch + verify + unpack): %.2f s (best of %d)\n' "$b" "$RUNS"
printf 'skopeo copy + umoci unpack:          %.2f s (best of %d)\n' "$t" "$RUNS"
python3 -c "print(f'ratio berth / (skopeo + umoci): {$b / $t:.2f} (target <= 0.7)')"
