#!/usr/bin/env bash
# Launch latency with 0 versus 100 concurrent event subscribers (issue 14:
# subscribers must not slow launches by more than 10 %).
#
# Alternating blocks of BLOCK launches (default 20) without and with SUBS
# (default 100) subscribers reading `GET /v1/events` (NDJSON, every event,
# over the unix socket), COUNT launches (default 200) per case after WARMUP:
# each launch is POST /v1/containers {command: [/bin/true], rootfs: R} ->
# GET .../wait -> DELETE, timed from the POST to the end of the wait. Prints
# p50/p90/p99 per case and the ratio of the p50s last (target <= 1.10), and
# checks that every subscriber saw every launch's events.
#
# READ=0: the subscribers read nothing (the agent writes the same into their
# socket buffers), which leaves this client's own CPU out of the comparison.
# Quick run: COUNT=40 WARMUP=5 benches/events.sh
# PREBUILT=DIR uses DIR/berth, DIR/berth-agent and DIR/berth-shim instead of building release
# binaries. Needs root and busybox-static. Runs its own agent with temp dirs
# and a cgroup root below this shell's cgroup; removes what it made and kills
# only processes it started. Not run by CI.

set -euo pipefail

COUNT=${COUNT:-200}
WARMUP=${WARMUP:-10}
BLOCK=${BLOCK:-20}
SUBS=${SUBS:-100}
. "$(dirname "$0")/lib.sh"
bench_setup events

cleanup() {
    set +e
    stop_agent
    remove_bench_cgroups
    rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_binaries

ROOTFS="$BASE/rootfs"
busybox_rootfs "$ROOTFS" sh true

start_agent

python3 - "$BASE/berth.sock" "$ROOTFS" "$TAG" "$COUNT" "$WARMUP" "$BLOCK" "$SUBS" "${READ:-1}" <<'EOF'
import http.client, json, selectors, socket, sys, threading, time
from berth_api import call_json

sock, rootfs, tag = sys.argv[1:4]
count, warmup, block, subs = map(int, sys.argv[4:8])
# READ=0: subscribers that read nothing (their socket buffers take what the
# agent sends), to tell the agent's cost from this client's.
reading = sys.argv[8] != "0"
seq = iter(range(10**9))

def request(method, path, body=None):
    return call_json(sock, method, path, body)

def launch():
    cid = f"{tag}-{next(seq)}"
    start = time.perf_counter()
    request("POST", "/v1/containers", {"id": cid, "command": ["/bin/true"], "rootfs": rootfs})
    request("GET", f"/v1/containers/{cid}/wait")
    took = time.perf_counter() - start
    request("DELETE", f"/v1/containers/{cid}")
    return took

class Subscribers(threading.Thread):
    """n subscribers read by one thread (a selector), so that the client
    side costs little CPU next to the agent; counts each one's destroys."""
    def __init__(self, n):
        super().__init__(daemon=True)
        self.socks = []
        self.destroys = [0] * n
        self.carry = [b""] * n
        self.stop = False
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock)
            s.sendall(b"GET /v1/events?type=container HTTP/1.1\r\nHost: localhost\r\n\r\n")
            self.socks.append(s)
        # Every answer's head has come before launches are timed.
        for i, s in enumerate(self.socks):
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            assert head.startswith(b"HTTP/1.1 200"), head[:100]
            self.carry[i] = head.split(b"\r\n\r\n", 1)[1]
    def run(self):
        selector = selectors.DefaultSelector()
        for i, s in enumerate(self.socks):
            selector.register(s, selectors.EVENT_READ, i)
        while not self.stop:
            for key, _ in selector.select(timeout=0.1):
                i = key.data
                data = key.fileobj.recv(65536)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                text = self.carry[i] + data
                self.destroys[i] += text.count(b'"destroy"')
                # Keep a tail that may hold a split word, not a counted one.
                cut = max(len(text) - 9, text.rfind(b'"destroy"') + 9)
                self.carry[i] = text[cut:]
    def close(self):
        self.stop = True
        self.join()
        for s in self.socks:
            s.close()

for _ in range(warmup):
    launch()
times = {0: [], subs: []}
seen_ok = True
while min(len(v) for v in times.values()) < count:
    for n in (0, subs):
        group = Subscribers(n)
        if reading:
            group.start()
        for _ in range(block):
            times[n].append(launch())
        if reading:
            deadline = time.time() + 30
            while time.time() < deadline and any(d < block for d in group.destroys):
                time.sleep(0.05)
            if any(d < block for d in group.destroys):
                seen_ok = False
            group.close()
        else:
            for s in group.socks:
                s.close()

def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]

for n, values in times.items():
    ms = [v * 1000 for v in values]
    print(f"{n:>3} subscribers: n={len(ms)} p50={pct(ms, 50):.1f}ms p90={pct(ms, 90):.1f}ms p99={pct(ms, 99):.1f}ms")
print(f"every subscriber saw every launch: {'yes' if seen_ok else 'NO'}" if reading else "subscribers did not read (READ=0)")
ratio = pct(times[subs], 50) / pct(times[0], 50)
print(f"ratio p50 with {subs} / without: {ratio:.3f} (target <= 1.10)")
EOF
