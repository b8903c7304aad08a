#!/usr/bin/env bash
# Metrics scrape cost with many running containers.
#
# Starts an agent, launches COUNT containers (default 1000) running `sleep`
# on the host's root with --network none (CLIENTS in parallel, default 8),
# then scrapes GET /metrics SCRAPES times (default 20) over the unix socket
# and prints, per scrape, the wall time and the agent's CPU time (the sum of
# its threads' /proc/PID/task/*/schedstat, in ns, around each scrape, and
# averaged over all of them), next to the agent's idle CPU over as long.
# Target: < 100 ms of agent CPU per scrape at 1000 containers. Then three
# scrapes 5.5 s apart, as Prometheus would make them, whose fs usage figures
# are all walked again.
#
# Baseline side by side (cAdvisor is not packaged in Debian): a python loop
# reading the same cgroup files of the same containers once per pass (open,
# read, close each; no parsing), its CPU per pass.
#
# Quick run: COUNT=100 SCRAPES=5 benches/metrics.sh
# PREBUILT=DIR uses DIR/berth, DIR/berth-agent and DIR/berth-shim instead of building.
# Needs root. Builds release binaries. Runs its own agent with temp dirs and
# a cgroup root below this shell's cgroup; removes its containers, temp dirs
# and cgroups and kills only processes it started. Not run by CI.

set -euo pipefail

COUNT=${COUNT:-1000}
SCRAPES=${SCRAPES:-20}
CLIENTS=${CLIENTS:-8}
. "$(dirname "$0")/lib.sh"
bench_setup metrics

cleanup() {
    set +e
    if [ -n "$AGENT_PID" ]; then
        # Every container ends with the agent's stop (and is removed below
        # with the work dir); kill the shims' sleeps for certain first.
        python3 - "$BASE/berth.sock" "$TAG" <<'EOF' 2>/dev/null
import http.client, json, socket, sys
from berth_api import call
from concurrent.futures import ThreadPoolExecutor
sock, tag = sys.argv[1:3]
def call_quiet(method, path):
    return call(sock, method, path)
ids = [c["id"] for c in json.loads(call_quiet("GET", "/v1/containers"))]
with ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda i: call_quiet("DELETE", f"/v1/containers/{i}?force=true"), ids))
EOF
    fi
    stop_agent
    remove_bench_cgroups
    rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_binaries

ulimit -n 65536 2>/dev/null || true
start_agent
echo "== agent pid $AGENT_PID"

python3 - "$BASE/berth.sock" "$TAG" "$AGENT_PID" "$COUNT" "$SCRAPES" "$CLIENTS" <<'EOF'
import http.client, json, os, socket, sys, time
from berth_api import call
from concurrent.futures import ThreadPoolExecutor

sock, tag = sys.argv[1:3]
agent_pid, count, scrapes, clients = map(int, sys.argv[3:7])

def request(method, path, body=None):
    return call(sock, method, path, body)

def cpu_ms():
    """The agent's CPU time so far, per thread, in ms: its threads'
    schedstat (nanoseconds; /proc/PID/stat counts 10 ms ticks, too coarse
    for one scrape)."""
    out = {}
    for task in os.listdir(f"/proc/{agent_pid}/task"):
        try:
            with open(f"/proc/{agent_pid}/task/{task}/schedstat") as f:
                out[task] = int(f.read().split()[0]) / 1e6
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out

def spent(before):
    """The agent's CPU since `before` (threads that ended meanwhile, idle
    blocking-pool threads, are left out; new ones count from zero)."""
    return sum(ms - before.get(task, 0) for task, ms in cpu_ms().items() if ms >= before.get(task, 0))

def launch(i):
    # A launch may fail when another process on the host replaces a file the
    # container binds (e.g. /etc/gshadow by groupadd): try again.
    for attempt in range(3):
        try:
            request("POST", "/v1/containers", {"id": f"m{i}", "command": ["sleep", "100000"],
                                               "network": "none"})
            return
        except RuntimeError as e:
            if attempt == 2:
                raise
            print(f"   m{i}: {e}; again")

print(f"== launching {count} sleep containers ({clients} clients)")
t0 = time.perf_counter()
with ThreadPoolExecutor(clients) as pool:
    list(pool.map(launch, range(count)))
print(f"   {time.perf_counter() - t0:.1f} s")

def scrape():
    return request("GET", "/metrics")

text = scrape().decode()  # warm-up (first fs walks, device lookups)
series = sum(1 for l in text.splitlines() if l and not l.startswith("#"))
running = [l for l in text.splitlines() if l.startswith('berth_containers{state="running"}')]
print(f"== scrape: {len(text)} bytes, {series} samples; {running[0] if running else '?'}")

walls, cpus = [], []
c_start = cpu_ms()
w_start = time.perf_counter()
for _ in range(scrapes):
    c0, w0 = cpu_ms(), time.perf_counter()
    scrape()
    walls.append((time.perf_counter() - w0) * 1000)
    cpus.append(spent(c0))
total_wall = time.perf_counter() - w_start
total_cpu = spent(c_start)
# The agent's CPU when nobody scrapes, over as long.
c0 = cpu_ms()
time.sleep(total_wall)
idle = spent(c0)

for i, (w, c) in enumerate(zip(walls, cpus)):
    print(f"   scrape {i + 1:3}: wall {w:7.1f} ms, agent CPU {c:6.1f} ms")
walls.sort()
print(f"== {scrapes} scrapes of {count} containers")
print(f"   wall per scrape: p50 {walls[len(walls) // 2]:.1f} ms, max {walls[-1]:.1f} ms")
print(f"   agent CPU per scrape: {total_cpu / scrapes:.1f} ms (target < 100 ms; "
      f"idle agent over the same {total_wall:.1f} s: {idle:.1f} ms)")

# Scrapes as far apart as Prometheus makes them (15 s by default): every
# container's fs usage figure is then older than its refresh (5 s) and each
# sandbox is walked again within the scrape.
spaced = []
for _ in range(3):
    time.sleep(5.5)
    c0 = cpu_ms()
    scrape()
    spaced.append(spent(c0))
print(f"   agent CPU per scrape 5.5 s apart (every fs usage walked again): "
      f"{', '.join(f'{c:.1f}' for c in spaced)} ms")

# Baseline: the same cgroup files, read by a python loop.
def cgroup_dirs():
    dirs = []
    for line in open("/proc/self/cgroup"):
        _, names, path = line.rstrip("\n").split(":", 2)
        sub = "/sys/fs/cgroup" if not names else "/sys/fs/cgroup/" + names.replace("name=", "")
        for root in (f"{sub}{path}/{tag}", f"{sub}/{tag}"):
            if os.path.isdir(root):
                dirs.append(root)
    return sorted(set(dirs))

FILES = ["cpuacct.stat", "cpuacct.usage", "cpu.stat", "memory.usage_in_bytes",
         "memory.max_usage_in_bytes", "memory.stat", "memory.limit_in_bytes",
         "memory.soft_limit_in_bytes", "memory.oom_control", "pids.current", "pids.events",
         "blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_serviced_recursive",
         # v2
         "memory.current", "memory.peak", "memory.max", "memory.low", "memory.events",
         "io.stat"]
paths = []
for root in cgroup_dirs():
    for i in range(count):
        d = f"{root}/m{i}"
        for name in FILES:
            p = f"{d}/{name}"
            if os.path.exists(p):
                paths.append(p)
def read_all():
    for p in paths:
        with open(p, "rb") as f:
            f.read()
read_all()
c0 = time.process_time()
passes = 5
for _ in range(passes):
    read_all()
py = (time.process_time() - c0) * 1000 / passes
print(f"== baseline: python reading the same {len(paths)} cgroup files: {py:.1f} ms CPU per pass")
EOF
