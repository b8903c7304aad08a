#!/usr/bin/env bash
# Launch latency with isolator plugins (issue 15, decision 0041): one agent
# with the example plugins configured, and alternating, after WARMUP runs of
# each, COUNT runs (default 200) of POST /v1/containers {command: [/bin/true]}
# -> GET .../wait over the unix socket, with isolation
#   (a) cpu, memory, pids                 no plugin
#   (b) cpu, memory, pids, pool           + the long-lived Python plugin
#   (c) cpu, memory, pids, stamp          + the exec-mode shell plugin
# and prints p50/p90/p99 per case and what each plugin adds at p50.
# Target: the long-lived plugin adds <= 1 ms at p50.
#
# Quick run: COUNT=20 WARMUP=3 benches/plugins.sh
# PREBUILT=DIR uses DIR/berth, DIR/berth-agent and DIR/berth-shim instead of building release
# binaries (PREBUILT=target/debug for a smoke run: debug figures are slower).
# Needs root and python3. Runs its own agent with temp dirs and a cgroup
# root below this shell's cgroup; removes them and kills only what it
# started. Not run by CI.

set -euo pipefail
. "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-200}
WARMUP=${WARMUP:-10}
bench_setup plugins

cleanup() {
    set +e
    stop_agent
    remove_bench_cgroups
    rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v python3 >/dev/null || die "needs python3"
bench_binaries
cat >"$BASE/berth.toml" <<TOML
[[plugins]]
name = "pool"
path = "$REPO/examples/plugins/pool.py"
[[plugins]]
name = "stamp"
path = "$REPO/examples/plugins/stamp.sh"
mode = "exec"
[isolators.pool]
size = 64
TOML
start_agent --config "$BASE/berth.toml"

python3 - "$BASE/berth.sock" "$TAG" "$COUNT" "$WARMUP" <<'PY'
import http.client, json, socket, sys, time
from berth_api import call_json

sock, tag = sys.argv[1:3]
count, warmup = map(int, sys.argv[3:5])
base = ["cpu", "memory", "pids"]
cases = {"none": base, "long-lived": base + ["pool"], "exec": base + ["stamp"]}

def request(method, path, body=None):
    return call_json(sock, method, path, body)

n = 0
def launch(isolation):
    global n
    n += 1
    cid = f"{tag}-{n}"
    start = time.perf_counter()
    request("POST", "/v1/containers", {"id": cid, "command": ["/bin/true"], "isolation": isolation})
    done = request("GET", f"/v1/containers/{cid}/wait")
    elapsed = time.perf_counter() - start
    if done.get("exit_code") not in (0, None):
        raise RuntimeError(f"{cid}: exit {done.get('exit_code')}")
    request("DELETE", f"/v1/containers/{cid}?force=true")
    return elapsed

times = {name: [] for name in cases}
for i in range(warmup + count):
    for name, isolation in cases.items():
        t = launch(isolation)
        if i >= warmup:
            times[name].append(t)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000

print(f"launch + wait of /bin/true, {count} runs each (ms)")
print(f"{'case':<12}{'p50':>9}{'p90':>9}{'p99':>9}")
for name, xs in times.items():
    print(f"{name:<12}{pct(xs, 50):>9.2f}{pct(xs, 90):>9.2f}{pct(xs, 99):>9.2f}")
none = pct(times["none"], 50)
for name in ("long-lived", "exec"):
    print(f"{name} plugin adds {pct(times[name], 50) - none:+.2f} ms at p50")
PY
