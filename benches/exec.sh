#!/usr/bin/env bash
# Exec round trip: berth exec of /bin/true into a running container, side by
# side with runc exec into the same container (the same busybox rootfs, a
# runc container started from a bundle around it) in the same run.
#
# Alternating, after WARMUP runs of each, COUNT runs (default 200) of
#   (a) API: POST /v1/containers/{id}/exec {command: [/bin/true]} -> exit code
#   (b) CLI: berth exec ID /bin/true
#   (c) runc exec ID /bin/true
# and prints p50/p90/p99 per case, then the ratio berth API p50 / runc p50
# last (target <= 0.5).
#
# Quick run: COUNT=30 WARMUP=3 benches/exec.sh
# Needs root. Builds release binaries; installs runc and busybox-static with
# apt-get if missing. Runs its own agent with temp dirs and a cgroup root
# below this shell's cgroup; removes what it made and kills only processes it
# started. Not run by CI.

set -euo pipefail

COUNT=${COUNT:-200}
WARMUP=${WARMUP:-10}
. "$(dirname "$0")/lib.sh"
bench_setup exec

cleanup() {
    set +e
    runc delete --force "$TAG-runc" >/dev/null 2>&1
    if [ -n "$AGENT_PID" ]; then
        "$BERTH" --socket "$BASE/berth.sock" rm -f "$TAG-berth" >/dev/null 2>&1
    fi
    stop_agent
    remove_bench_cgroups
    rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

missing=""
command -v runc >/dev/null || missing="$missing runc"
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing="$missing busybox-static"
if [ -n "$missing" ]; then
    echo "== installing:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >/dev/null 2>&1 ||
        echo "   apt-get install$missing failed"
fi
command -v runc >/dev/null || die "runc not installed"

bench_binaries

BUNDLE="$BASE/bundle"
ROOTFS="$BUNDLE/rootfs"
busybox_rootfs "$ROOTFS" sh true sleep
(cd "$BUNDLE" && runc spec)
python3 - "$BUNDLE/config.json" <<'EOF'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["/bin/sleep", "100000"]
spec["root"]["readonly"] = True
json.dump(spec, open(path, "w"), indent=2)
EOF
runc run -d --bundle "$BUNDLE" "$TAG-runc" >/dev/null 2>&1 </dev/null || die "runc run failed"

start_agent
BERTH_SOCKET="$BASE/berth.sock" "$BERTH" run -d --name "$TAG-berth" --rootfs "$ROOTFS" \
    -- /bin/sleep 100000 >/dev/null

python3 - "$BERTH" "$BASE/berth.sock" "$TAG" "$COUNT" "$WARMUP" <<'EOF'
import http.client, json, os, socket, subprocess, sys, time
from berth_api import UnixHTTP

berth, sock, tag = sys.argv[1:4]
count, warmup = map(int, sys.argv[4:6])
env = dict(os.environ, BERTH_SOCKET=sock)

def api():
    conn = UnixHTTP(sock)
    conn.request("POST", f"/v1/containers/{tag}-berth/exec",
                 json.dumps({"command": ["/bin/true"]}), {"content-type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    assert resp.status == 200 and data["exit_code"] == 0, data

def cli():
    subprocess.run([berth, "exec", f"{tag}-berth", "/bin/true"], env=env, check=True)

def runc():
    subprocess.run(["runc", "exec", f"{tag}-runc", "/bin/true"], check=True)

cases = [("berth exec (API)", api), ("berth exec (CLI)", cli), ("runc exec", runc)]
times = {name: [] for name, _ in cases}
for i in range(warmup + count):
    for name, f in cases:
        start = time.perf_counter()
        f()
        if i >= warmup:
            times[name].append((time.perf_counter() - start) * 1000)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

print(f"== exec of /bin/true, {count} runs each (ms)")
print(f"{'case':<20} {'p50':>8} {'p90':>8} {'p99':>8}")
for name, _ in cases:
    xs = times[name]
    print(f"{name:<20} {pct(xs, 50):8.2f} {pct(xs, 90):8.2f} {pct(xs, 99):8.2f}")
api50, cli50, runc50 = (pct(times[n], 50) for n, _ in cases)
print(f"ratio berth CLI p50 / runc exec p50: {cli50 / runc50:.2f}")
print(f"ratio berth API p50 / runc exec p50: {api50 / runc50:.2f} (target <= 0.5)")
EOF
