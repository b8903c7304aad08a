#!/usr/bin/env bash
# Launch latency and throughput of two berth builds side by side (A/B).
#
#   sudo benches/launch_ab.sh BASE_DIR NEW_DIR
#
# BASE_DIR and NEW_DIR each hold a `berth`, a `berth-agent` (from decision
# 0052 on; `berth agent` execs it) and a `berth-shim` (e.g. a copy of
# target/release before and after a change); both are copied into the
# benchmark's dir at its start and run from there. Two agents run at once, one per
# build, each with its own temp dirs, runtime dir (a tmpfs) and cgroup root
# below this shell's cgroup. ROUNDS (default 200) rounds alternate the builds
# (ab, ba, ab, ...), each round on each build: one API launch (POST
# /v1/containers {command: [/bin/true], rootfs: R} -> GET .../wait) and one
# `berth run --rootfs R -- /bin/true`. Then TP_ROUNDS (default 4) rounds of
# TOTAL (default 200) API launches by 8 clients, alternating the builds.
# Prints p50/p99 of create, create->exit and the CLI per build, and the
# throughputs. On a shared machine only such same-run comparisons mean
# anything (decisions 0035, 0038). A_CONFIG and B_CONFIG (optional) are
# each agent's berth.toml text, to compare one build with two settings
# (e.g. B_CONFIG=$'[container]\nidle_shims = 0', decision 0043).
# Removes what it made; kills only the
# agents it started. Not run by CI.

set -euo pipefail
A=${1:?usage: launch_ab.sh BASE_DIR NEW_DIR}
B=${2:?usage: launch_ab.sh BASE_DIR NEW_DIR}
ROUNDS=${ROUNDS:-200}
TP_ROUNDS=${TP_ROUNDS:-4}
TOTAL=${TOTAL:-200}
[ "$(id -u)" = 0 ] || { echo "launch_ab: needs root" >&2; exit 1; }
BUSYBOX=$(command -v busybox) || { echo "launch_ab: needs busybox" >&2; exit 1; }
TAG="berth-launch-ab-$$"
BASE=$(mktemp -d "${BENCH_DIR:-/var/tmp}/$TAG.XXXXXX")
chmod 755 "$BASE"
mkdir -p "$BASE/run"
mount -t tmpfs -o mode=0711 berth-bench-run "$BASE/run"
R="$BASE/rootfs"
mkdir -p "$R/bin" "$R/dev" "$R/proc" "$R/sys" "$R/tmp" "$R/sandbox"
cp "$BUSYBOX" "$R/bin/busybox"
ln -s busybox "$R/bin/true"
# Both builds run from copies made now, side by side: in the VM these
# benchmarks run in, one build copied two hours before another copy of
# itself launched 0.87-0.92x as fast as that copy (decision 0061).
for x in a b; do
    from=$A
    [ "$x" = b ] && from=$B
    mkdir -p "$BASE/bin-$x"
    for f in berth berth-agent berth-shim; do
        cat "$from/$f" >"$BASE/bin-$x/$f"
        chmod 755 "$BASE/bin-$x/$f"
    done
done
A=$BASE/bin-a
B=$BASE/bin-b
printf '%s\n' "${A_CONFIG:-}" >"$BASE/berth-a.toml"
printf '%s\n' "${B_CONFIG:-}" >"$BASE/berth-b.toml"
PIDS=()
bin_of() { if [ "$1" = a ]; then echo "$A"; else echo "$B"; fi; }
cleanup() {
    set +e
    for x in a b; do
        bin=$(bin_of $x)
        for id in $("$bin/berth" --socket "$BASE/$x.sock" ps -aq 2>/dev/null); do
            "$bin/berth" --socket "$BASE/$x.sock" rm -f "$id" >/dev/null 2>&1
        done
    done
    for p in "${PIDS[@]}"; do kill "$p"; wait "$p"; done
    for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
        find "$h" -depth -type d -name "$TAG*" -exec rmdir {} \; 2>/dev/null
    done
    mountpoint -q "$BASE/run" && umount "$BASE/run"
    rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for x in a b; do
    bin=$(bin_of $x)
    "$bin/berth" agent --config "$BASE/berth-$x.toml" --socket "$BASE/$x.sock" \
        --work-dir "$BASE/work-$x" --runtime-dir "$BASE/run/$x" --cgroup-root "$TAG-$x" \
        --shim "$bin/berth-shim" >"$BASE/agent-$x.log" 2>&1 &
    PIDS+=($!)
done
for _ in $(seq 100); do [ -S "$BASE/a.sock" ] && [ -S "$BASE/b.sock" ] && break; sleep 0.1; done
[ -S "$BASE/a.sock" ] && [ -S "$BASE/b.sock" ] || { cat "$BASE"/agent-*.log; exit 1; }

python3 - "$A/berth" "$B/berth" "$BASE" "$R" "$ROUNDS" "$TP_ROUNDS" "$TOTAL" <<'EOF'
import http.client, json, os, socket, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
bins = {"a": sys.argv[1], "b": sys.argv[2]}
base, rootfs = sys.argv[3], sys.argv[4]
rounds, tp_rounds, total = map(int, sys.argv[5:8])

class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path_ = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path_)

def req(x, method, path, body=None):
    c = Unix(f"{base}/{x}.sock")
    c.request(method, path, json.dumps(body) if body is not None else None,
              {"content-type": "application/json"} if body is not None else {})
    r = c.getresponse(); data = r.read(); c.close()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
    return json.loads(data) if data else None

res = {(x, k): [] for x in "ab" for k in ("create", "api", "cli")}
warmup = 3
for i in range(rounds + warmup):
    for x in ("ab" if i % 2 == 0 else "ba"):
        t0 = time.perf_counter()
        req(x, "POST", "/v1/containers", {"id": f"a{i}", "command": ["/bin/true"], "rootfs": rootfs})
        t1 = time.perf_counter()
        req(x, "GET", f"/v1/containers/a{i}/wait")
        t2 = time.perf_counter()
        req(x, "DELETE", f"/v1/containers/a{i}?force=true")
        env = dict(os.environ, BERTH_SOCKET=f"{base}/{x}.sock")
        t3 = time.perf_counter()
        subprocess.run([bins[x], "run", "--name", f"c{i}", "--rootfs", rootfs, "--", "/bin/true"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        t4 = time.perf_counter()
        req(x, "DELETE", f"/v1/containers/c{i}?force=true")
        if i >= warmup:
            res[(x, "create")].append((t1 - t0) * 1e3)
            res[(x, "api")].append((t2 - t0) * 1e3)
            res[(x, "cli")].append((t4 - t3) * 1e3)

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]

print(f"== latency, {rounds} alternating rounds (ms)")
for k, name in (("create", "API create (201)"), ("api", "API create->exit"), ("cli", "berth run --rootfs")):
    a, b = res[("a", k)], res[("b", k)]
    print(f"   {name:20s} base p50 {pct(a,50):6.2f} p99 {pct(a,99):7.2f} | "
          f"new p50 {pct(b,50):6.2f} p99 {pct(b,99):7.2f} | new/base p50 {pct(b,50)/pct(a,50):.2f}x")

tp = {"a": [], "b": []}
n = 0
for r in range(tp_rounds):
    for x in ("ab" if r % 2 == 0 else "ba"):
        ids = [f"t{n}-{i}" for i in range(total)]
        n += 1
        def one(cid):
            req(x, "POST", "/v1/containers", {"id": cid, "command": ["/bin/true"], "rootfs": rootfs})
            req(x, "GET", f"/v1/containers/{cid}/wait")
        t = time.perf_counter()
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(one, ids))
        tp[x].append(total / (time.perf_counter() - t))
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(lambda c: req(x, "DELETE", f"/v1/containers/{c}?force=true"), ids))
if tp_rounds:
    print(f"== API throughput, {total} launches by 8 clients, {tp_rounds} alternating rounds (containers/s)")
    print("   base", " ".join(f"{v:.1f}" for v in tp["a"]), "| new", " ".join(f"{v:.1f}" for v in tp["b"]))
EOF
