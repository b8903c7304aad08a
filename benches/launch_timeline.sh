#!/usr/bin/env bash
# Where one launch's time goes: the steps of an API launch and of
# `berth run` in the CLI, the agent, the shim and the container's process,
# on one clock (decision 0051).
#
#   sudo benches/launch_timeline.sh
#
# Builds berth with the `launch-marks` feature, as shipped (decision 0054),
# into target/launch-marks/shipped (or
# takes PREBUILT=DIR holding such a `berth`, `berth-agent` and `berth-shim`), starts an
# agent with BERTH_LAUNCH_MARKS set (its own temp dirs, a tmpfs runtime dir,
# a cgroup root below this shell's cgroup), and makes COUNT (default 200)
# API launches one after another, 20 ms apart (POST /v1/containers
# {command: [/bin/true], rootfs: R} -> GET .../wait -> DELETE), then COUNT
# `berth run --rm --rootfs R -- /bin/true`. Prints each step's p50 time
# since the client began (sent the create; forked the CLI), on the
# CLOCK_MONOTONIC all sides read, and the p50 of the time from the step
# before. The marks file costs a write per step: the totals run a little
# above benches/launch.sh's. Not run by CI; removes what it made and kills
# only the agent it started.

set -euo pipefail
. "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-200}
bench_setup launch-timeline
if [ -z "${PREBUILT:-}" ]; then
    echo "== release binaries with launch-marks"
    CARGO_TARGET_DIR=$REPO/target/launch-marks \
        release_binaries "$REPO/target/launch-marks/shipped" --features launch-marks
    PREBUILT=$REPO/target/launch-marks/shipped
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

python3 - "$BASE" "$BASE/rootfs" "$COUNT" "$BERTH" <<'EOF'
import collections, os, subprocess, sys, time
from berth_api import call
base, rootfs, count, berth = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sock = f"{base}/berth.sock"
warmup = 20

def now_us():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

def api_launch(i):
    """One API launch: its window and the client's own times by label."""
    t0 = now_us()
    call(sock, "POST", "/v1/containers", {"id": f"t{i}", "command": ["/bin/true"], "rootfs": rootfs})
    t1 = now_us()
    call(sock, "GET", f"/v1/containers/t{i}/wait")
    t2 = now_us()
    call(sock, "DELETE", f"/v1/containers/t{i}?force=true")
    return t0, t2, {"client: has the create's answer": t1, "client: has the wait's answer": t2}

env = dict(os.environ, BERTH_SOCKET=sock)

def cli_launch(i):
    """One `berth run --rm`, from before the client's fork to its exit."""
    t0 = now_us()
    subprocess.run([berth, "run", "--rm", "--name", f"c{i}", "--rootfs", rootfs, "--", "/bin/true"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    t2 = now_us()
    return t0, t2, {"client: the CLI has exited": t2}

def p50(v):
    v = sorted(v)
    return v[len(v) // 2]

def timeline(title, launch):
    windows = []
    for i in range(warmup + count):
        window = launch(i)
        if i >= warmup:
            windows.append(window)
        time.sleep(0.02)
    marks = []
    with open(f"{base}/marks") as f:
        for line in f:
            _pid, at, label = line.rstrip("\n").split(" ", 2)
            marks.append((int(at), label))
    marks.sort()
    offsets = collections.defaultdict(list)
    j = 0
    for t0, t2, client in windows:
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
        for label, at in client.items():
            offsets[label].append(at - t0)
    print(f"== {title}, {len(windows)} runs one after another: p50 us since the client began")
    print(f"   {'step':40s} {'at':>7s} {'after the step before':>22s}")
    last = 0
    for label, v in sorted(offsets.items(), key=lambda kv: p50(kv[1])):
        at = p50(v)
        note = "" if len(v) == len(windows) else f"   (in {len(v)} of {len(windows)} runs)"
        print(f"   {label:40s} {at:7d} {at - last:22d}{note}")
        last = at

timeline("one API launch (create, wait)", api_launch)
timeline("one `berth run --rm --rootfs R -- /bin/true`", cli_launch)
EOF
