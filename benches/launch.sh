#!/usr/bin/env bash
# Launch latency and throughput: berth side by side with runc and crun.
#
# Alternating in one run, after WARMUP runs of each, COUNT runs (default 200) of
#   (a) berth run --rootfs R -- /bin/true      whole CLI round trip
#   (b) berth run --pull never IMAGE /bin/true the same from a cached image
#       (the same busybox files as R, built with umoci, pulled once from a
#       Debian docker-registry on loopback); skipped without umoci, skopeo and
#       docker-registry, or with NO_IMAGE=1
#   (c) API alone: POST /v1/containers {command: [/bin/true], rootfs: R}
#       -> GET /v1/containers/{id}/wait -> exit code, over the unix socket,
#       from this script's python (http.client)
#   (c') the same two requests from a compiled client, examples/api_launch.rs,
#       which times them itself: the API without the python interpreter's
#       own ~0.3 ms a request (decision 0061)
#   (d) runc run of a bundle with the same rootfs and the same isolation:
#       the spec berth's own bundle has for (c), rootfs read-only
#   (e) crun run of the same bundle (if crun is installed)
#   (f) runc run of `runc spec`'s default bundle around the same rootfs
#       (read-only, /bin/true), for reference: a network namespace berth's
#       container has not, and no seccomp filter where berth's has one
# and prints p50/p90/p99 per case, then the ratios berth/runc last.
# After a quiet spell: QUIET runs (default 50) of (c) and (d), alternating, each
# after QUIET_MS (default 100) ms of nothing, as one user's launch comes: the
# first cgroup migration after a pause waits for an RCU grace period
# (decision 0047).
# Throughput: TOTAL containers (default 500) started by CLIENTS (default 8)
# clients in parallel, containers/second, berth (CLI) and runc the same way.
#
# Quick run: COUNT=20 WARMUP=3 TOTAL=40 benches/launch.sh
# PREBUILT=DIR uses DIR/berth, DIR/berth-agent and DIR/berth-shim instead of building (e.g. an
# older build, with NO_IMAGE=1 if it cannot run images).
# Needs root. Builds release binaries; installs runc, crun and busybox-static
# with apt-get if missing. Runs its own agent with temp dirs and a cgroup root
# below this shell's cgroup; removes its temp dirs, cgroups and containers and
# kills only processes it started. Not run by CI.

set -euo pipefail
. "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-200}
WARMUP=${WARMUP:-10}
TOTAL=${TOTAL:-500}
QUIET=${QUIET:-50}
QUIET_MS=${QUIET_MS:-100}
CLIENTS=${CLIENTS:-8}
bench_setup launch
REGISTRY_PID=""
# Runtime state on a tmpfs, as /run is on the hosts berth targets (systemd):
# berth's runtime dir and runc's and crun's --root alike.
RUNTIME="$BASE/run"
mkdir -p "$RUNTIME"
mount -t tmpfs -o mode=0711 berth-bench-run "$RUNTIME"

cleanup() {
    set +e
    for rt in runc crun; do
        command -v "$rt" >/dev/null || continue
        for id in $("$rt" --root "$RUNTIME/$rt" list -q 2>/dev/null | grep "^$TAG-"); do
            "$rt" --root "$RUNTIME/$rt" delete --force "$id" >/dev/null 2>&1
        done
    done
    if [ -n "$AGENT_PID" ]; then
        for id in $("$BERTH" --socket "$BASE/berth.sock" ps -a --json 2>/dev/null |
            python3 -c 'import json,sys; print(" ".join(c["id"] for c in json.load(sys.stdin)))'); do
            "$BERTH" --socket "$BASE/berth.sock" rm -f "$id" >/dev/null 2>&1
        done
        kill "$AGENT_PID" 2>/dev/null
        wait "$AGENT_PID" 2>/dev/null
    fi
    if [ -n "$REGISTRY_PID" ]; then
        kill "$REGISTRY_PID" 2>/dev/null
        wait "$REGISTRY_PID" 2>/dev/null
    fi
    remove_bench_cgroups
    mountpoint -q "$RUNTIME" && umount "$RUNTIME"
    rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

missing=""
command -v runc >/dev/null || missing="$missing runc"
command -v crun >/dev/null || missing="$missing crun"
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing="$missing busybox-static"
if [ -n "$missing" ]; then
    echo "== installing:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >/dev/null 2>&1 ||
        echo "   apt-get install$missing failed"
fi
command -v runc >/dev/null || die "runc not installed"

bench_binaries
# (c'): built from this checkout whatever PREBUILT is (std only; the API's
# requests have not changed since it was written).
(cd "$REPO" && cargo build --release --quiet --example api_launch)
API_CLIENT=${CARGO_TARGET_DIR:-$REPO/target}/release/examples/api_launch

# One busybox rootfs for every case; runc/crun get a bundle around it.
BUNDLE="$BASE/bundle"
ROOTFS="$BUNDLE/rootfs"
busybox_rootfs "$ROOTFS" sh true
# Its config.json is written once the agent runs: berth's own spec for the
# same container (equivalent_bundle below).

# (b): the same files as an image in a loopback registry.
IMAGE=""
if [ -z "${NO_IMAGE:-}" ] && command -v umoci >/dev/null && command -v skopeo >/dev/null &&
    command -v docker-registry >/dev/null; then
    LAYOUT="$BASE/layout"
    umoci init --layout "$LAYOUT"
    umoci new --image "$LAYOUT:busy"
    umoci unpack --image "$LAYOUT:busy" "$BASE/image-bundle" >/dev/null
    cp -a "$ROOTFS/." "$BASE/image-bundle/rootfs/"
    umoci repack --image "$LAYOUT:busy" "$BASE/image-bundle"
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$BASE/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $BASE/registry
http:
  addr: 127.0.0.1:$PORT
YML
    docker-registry serve "$BASE/registry.yml" >"$BASE/registry.log" 2>&1 &
    REGISTRY_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    skopeo copy --quiet --dest-tls-verify=false "oci:$LAYOUT:busy" \
        "docker://127.0.0.1:$PORT/bench/busy:1"
    IMAGE="127.0.0.1:$PORT/bench/busy:1"
    printf '[images]\ninsecure_registries = ["127.0.0.1:%s"]\n' "$PORT" >"$BASE/berth.toml"
else
    echo "== (b) berth run IMAGE skipped (NO_IMAGE, or umoci/skopeo/docker-registry missing)"
    : >"$BASE/berth.toml"
fi

"$BERTH" agent --config "$BASE/berth.toml" --socket "$BASE/berth.sock" --work-dir "$BASE/work" \
    --runtime-dir "$RUNTIME/berth" --cgroup-root "$TAG" --shim "$SHIM" \
    >"$BASE/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 100); do [ -S "$BASE/berth.sock" ] && break; sleep 0.1; done
[ -S "$BASE/berth.sock" ] || { cat "$BASE/agent.log"; die "agent did not start"; }

python3 - "$BERTH" "$BASE/berth.sock" "$BUNDLE" "$TAG" "$COUNT" "$WARMUP" "$TOTAL" "$CLIENTS" "$RUNTIME" "$IMAGE" "$QUIET" "$QUIET_MS" "$API_CLIENT" <<'EOF'
import http.client, json, os, shutil, socket, subprocess, sys, time
from berth_api import call_json
from concurrent.futures import ThreadPoolExecutor

berth, sock, bundle, tag = sys.argv[1:5]
count, warmup, total, clients = map(int, sys.argv[5:9])
runtime_root = sys.argv[9]
image = sys.argv[10]
quiet, quiet_ms = int(sys.argv[11]), int(sys.argv[12])
api_client = sys.argv[13]
rootfs = os.path.join(bundle, "rootfs")
env = dict(os.environ, BERTH_SOCKET=sock)
seq = iter(range(10**9))

def request(method, path, body=None):
    return call_json(sock, method, path, body)

def remove(cid):
    request("DELETE", f"/v1/containers/{cid}?force=true")

def run_cli():
    cid = f"{tag}-a{next(seq)}"
    subprocess.run([berth, "run", "--name", cid, "--rootfs", rootfs, "--", "/bin/true"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return cid

def run_image():
    cid = f"{tag}-b{next(seq)}"
    subprocess.run([berth, "run", "--name", cid, "--pull", "never", image, "/bin/true"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return cid

def run_api():
    cid = f"{tag}-c{next(seq)}"
    request("POST", "/v1/containers", {"id": cid, "command": ["/bin/true"], "rootfs": rootfs})
    done = request("GET", f"/v1/containers/{cid}/wait")
    code = done.get("exit_code")
    if code not in (0, None):
        raise RuntimeError(f"api: exit {code}")
    return cid

# (c'): one client process for the whole run, a line per launch.
compiled = subprocess.Popen([api_client, sock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)

def run_api_compiled():
    """(c'), timed by the client: the id and the seconds it measured."""
    cid = f"{tag}-d{next(seq)}"
    compiled.stdin.write(f"{cid} {rootfs}\n")
    compiled.stdin.flush()
    line = compiled.stdout.readline()
    if not line:
        raise RuntimeError(f"{api_client} ended (exit {compiled.wait()})")
    micros, code = line.split()
    if code not in ("0", "null"):
        raise RuntimeError(f"api (compiled client): exit {code}")
    return cid, int(micros) / 1e6

def equivalent_bundle():
    """Gives runc and crun the isolation berth gives `berth run --rootfs R
    -- /bin/true`: the spec of berth's own bundle for it (namespaces -- no
    network namespace, berth's default is the host's network --, mounts,
    masked and read-only paths, devices, capabilities, rlimits, seccomp
    profile), with the rootfs read-only in place of berth's overlay and
    nothing of berth's own (annotations, cgroup path). `runc spec`'s
    default would add a network namespace berth's container has not, and
    no seccomp filter where berth's has one."""
    cid = f"{tag}-spec"
    request("POST", "/v1/containers", {"id": cid, "command": ["/bin/true"], "rootfs": rootfs})
    view = request("GET", f"/v1/containers/{cid}/wait")
    with open(os.path.join(view["bundle"], "config.json")) as f:
        spec = json.load(f)
    remove(cid)
    spec["root"] = {"path": rootfs, "readonly": True}
    sandbox = os.path.join(os.path.dirname(bundle), "runtime-sandbox")
    os.makedirs(sandbox, exist_ok=True)
    for mount in spec["mounts"]:
        if mount["destination"] == "/sandbox":
            mount["source"] = sandbox
    spec["process"]["args"] = ["/bin/true"]
    spec.pop("annotations", None)
    spec["linux"].pop("cgroupsPath", None)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)
    kinds = ", ".join(n["type"] for n in spec["linux"]["namespaces"])
    rules = len(spec["linux"].get("seccomp", {}).get("syscalls", []))
    print(f"== runc/crun bundle: berth's spec (namespaces {kinds}; {len(spec['mounts'])} mounts;"
          f" seccomp {rules} rules), rootfs read-only")

equivalent_bundle()

def default_bundle():
    """`runc spec`'s own default around the same rootfs, for case (f)."""
    path = os.path.join(os.path.dirname(bundle), "bundle-runc-default")
    os.makedirs(path, exist_ok=True)
    subprocess.run(["runc", "spec"], cwd=path, check=True)
    with open(os.path.join(path, "config.json")) as f:
        spec = json.load(f)
    spec["root"] = {"path": rootfs, "readonly": True}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)
    return path

runc_default = default_bundle()

def runtime(rt, bundle=bundle):
    def run():
        cid = f"{tag}-{rt}{next(seq)}"
        subprocess.run([rt, "--root", os.path.join(runtime_root, rt), "run", "-b", bundle, cid],
                       check=True,
                       stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        return None
    return run

cases = [("berth run --rootfs", run_cli)]
if image:
    # Pulled (and unpacked) once here: the case measures a cached image.
    cid = f"{tag}-pull"
    subprocess.run([berth, "run", "--name", cid, image, "/bin/true"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    remove(cid)
    cases.append(("berth run IMAGE", run_image))
cases += [("berth API create->wait", run_api), ("berth API, compiled client", run_api_compiled),
          ("runc run", runtime("runc")),
          ("runc run, runc's default", runtime("runc", runc_default))]
if shutil.which("crun"):
    probe = subprocess.run(["crun", "--root", os.path.join(runtime_root, "crun"), "run",
                            "-b", bundle, f"{tag}-crunprobe"],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if probe.returncode == 0:
        cases.append(("crun run", runtime("crun")))
    else:  # e.g. "cgroups in hybrid mode not supported"
        print(f"== crun skipped: {probe.stderr.strip().splitlines()[-1:]}")

def timed(fn):
    """A case's time: the client's own measure if it returns one with the
    id, else the wall time of `fn`."""
    t0 = time.perf_counter()
    cid = fn()
    dt = time.perf_counter() - t0
    if isinstance(cid, tuple):
        cid, dt = cid
    if cid:
        remove(cid)  # outside the timing
    return dt

times = {name: [] for name, _ in cases}
for i in range(warmup + count):
    for name, fn in cases:
        dt = timed(fn)
        if i >= warmup:
            times[name].append(dt)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

print(f"== latency, {count} runs each after {warmup} warm-up, alternating (ms)")
print(f"   {'case':<26} {'p50':>8} {'p90':>8} {'p99':>8}")
for name, _ in cases:
    xs = times[name]
    print(f"   {name:<26} {pct(xs,50)*1e3:8.1f} {pct(xs,90)*1e3:8.1f} {pct(xs,99)*1e3:8.1f}")

def throughput(fn):
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        ids = list(pool.map(lambda _: fn(), range(total)))
    dt = time.perf_counter() - t0
    for cid in ids:
        if cid:
            remove(cid)
    return total / dt

quiet_cases = [("berth API create->wait", run_api), ("runc run", runtime("runc"))]
quiet_times = {name: [] for name, _ in quiet_cases}
for _ in range(quiet):
    for name, fn in quiet_cases:
        time.sleep(quiet_ms / 1e3)
        quiet_times[name].append(timed(fn))
if quiet:
    print(f"== after {quiet_ms} ms of quiet, {quiet} runs each, alternating (ms)")
    for name, _ in quiet_cases:
        xs = quiet_times[name]
        print(f"   {name:<26} {pct(xs,50)*1e3:8.1f} {pct(xs,90)*1e3:8.1f} {pct(xs,99)*1e3:8.1f}")

print(f"== throughput, {total} containers, {clients} clients in parallel (containers/s)")
tp = {}
for name, fn in [("berth run --rootfs", run_cli), ("berth API create->wait", run_api),
                 ("runc run", runtime("runc")),
                 ("runc run, runc's default", runtime("runc", runc_default))]:
    tp[name] = throughput(fn)
    print(f"   {name:<26} {tp[name]:8.1f}")

if image:
    print("== ratio berth run IMAGE / berth run --rootfs (target <= 1.2x)")
    for p in (50, 90):
        print(f"   p{p} {pct(times['berth run IMAGE'], p) / pct(times['berth run --rootfs'], p):5.2f}x")
print("== ratios berth/runc (lower is faster), runc with berth's isolation")
runc50 = pct(times["runc run"], 50)
for name in ("berth run --rootfs", "berth API create->wait"):
    print(f"   {name:<26} p50 {pct(times[name],50)/runc50:5.2f}x"
          f"  throughput {tp[name]/tp['runc run']:5.2f}x runc's containers/s")
name = "berth API, compiled client"
print(f"   {name:<26} p50 {pct(times[name],50)/runc50:5.2f}x")
if quiet:
    name = "berth API create->wait"
    print(f"   {name + ' after quiet':<26} p50 "
          f"{pct(quiet_times[name],50)/pct(quiet_times['runc run'],50):5.2f}x")
print("== for reference, against runc's default bundle (+ network namespace, no seccomp)")
default50 = pct(times["runc run, runc's default"], 50)
default_tp = tp["runc run, runc's default"]
for name in ("berth run --rootfs", "berth API create->wait"):
    print(f"   {name:<26} p50 {pct(times[name],50)/default50:5.2f}x"
          f"  throughput {tp[name]/default_tp:5.2f}x runc's containers/s")
name = "berth API, compiled client"
print(f"   {name:<26} p50 {pct(times[name],50)/default50:5.2f}x")
EOF
