#!/usr/bin/env bash
# Where one launch's time goes: the steps of an API launch in the agent, the
# shim and the container's process, on one clock (decision 0051).
#
#   sudo benches/launch_timeline.sh
#
# Builds berth with the `launch-marks` feature into target/launch-marks (or
# takes PREBUILT=DIR holding such a `berth` and `berth-shim`), starts an
# agent with BERTH_LAUNCH_MARKS set (its own temp dirs, a tmpfs runtime dir,
# a cgroup root below this shell's cgroup), and makes COUNT (default 200)
# API launches one after another, 20 ms apart: POST /v1/containers
# {command: [/bin/true], rootfs: R} -> GET .../wait -> DELETE. Prints each
# step's p50 time since the client sent the create (the CLOCK_MONOTONIC
# both sides read), and the p50 of the time from the step before. The
# marks file costs a write per step: the totals run a little above
# benches/launch.sh's. Not run by CI; removes what it made and kills only
# the agent it started.

set -euo pipefail
. "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-200}
bench_setup launch-timeline
if [ -z "${PREBUILT:-}" ]; then
    echo "== building release binaries with launch-marks"
    (cd "$REPO" && cargo build --release --quiet --features launch-marks \
        --target-dir target/launch-marks --bin berth --bin berth-shim)
    PREBUILT=$REPO/target/launch-marks/release
fi
bench_binaries
# Runtime state on a tmpfs, as /run is on the hosts berth targets (systemd).
mkdir -p "$BASE/run"
mount -t tmpfs -o mode=0711 berth-bench-run "$BASE/run"
cleanup() {
    set +e
    if [ -n "$AGENT_PID" ]; then
        for id in $("$BERTH" --socket "$BASE/berth.sock" ps -aq 2>/dev/null); do
            "$BERTH" --socket "$BASE/berth.sock" rm -f "$id" >/dev/null 2>&1
        done
    fi
    stop_agent
    remove_bench_cgroups
    mountpoint -q "$BASE/run" && umount "$BASE/run"
    rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
busybox_rootfs "$BASE/rootfs" true
export BERTH_LAUNCH_MARKS="$BASE/marks"
start_agent

python3 - "$BASE" "$BASE/rootfs" "$COUNT" <<'EOF'
import collections, sys, time
from berth_api import call
base, rootfs, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sock = f"{base}/berth.sock"

def req(method, path, body=None):
    call(sock, method, path, body)

def now_us():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

warmup = 20
windows = []
for i in range(warmup + count):
    t0 = now_us()
    req("POST", "/v1/containers", {"id": f"t{i}", "command": ["/bin/true"], "rootfs": rootfs})
    t1 = now_us()
    req("GET", f"/v1/containers/t{i}/wait")
    t2 = now_us()
    req("DELETE", f"/v1/containers/t{i}?force=true")
    if i >= warmup:
        windows.append((t0, t1, t2))
    time.sleep(0.02)

marks = []
with open(f"{base}/marks") as f:
    for line in f:
        _pid, at, label = line.rstrip("\n").split(" ", 2)
        marks.append((int(at), label))
marks.sort()
offsets = collections.defaultdict(list)
j = 0
for t0, t1, t2 in windows:
    while j < len(marks) and marks[j][0] < t0:
        j += 1
    seen = set()
    k = j
    while k < len(marks) and marks[k][0] <= t2:
        at, label = marks[k]
        if label not in seen:
            seen.add(label)
            offsets[label].append(at - t0)
        k += 1
    offsets["client: has the create's answer"].append(t1 - t0)
    offsets["client: has the wait's answer"].append(t2 - t0)

def p50(v):
    v = sorted(v)
    return v[len(v) // 2]

print(f"== one API launch, {len(windows)} runs one after another: p50 us since the client sent the create")
print(f"   {'step':40s} {'at':>7s} {'after the step before':>22s}")
last = 0
for label, v in sorted(offsets.items(), key=lambda kv: p50(kv[1])):
    at = p50(v)
    note = "" if len(v) == len(windows) else f"   (in {len(v)} of {len(windows)} runs)"
    print(f"   {label:40s} {at:7d} {at - last:22d}{note}")
    last = at
EOF
