#!/usr/bin/env bash
# Agent restart with N running containers: time from starting the new agent
# until every container is recovered and answering (target: under 1 s for
# N=500). Needs root. Usage: benches/recovery.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500}

cargo build --release --quiet
berth=$PWD/target/release/berth
shim=$PWD/target/release/berth-shim
dir=$(mktemp -d /tmp/berth-bench-recovery.XXXXXX)
chmod 755 "$dir"
root="berth-bench-$$"
sock="$dir/berth.sock"
agent_pid=

start_agent() {
    "$berth" agent --socket "$sock" --work-dir "$dir/work" --runtime-dir "$dir/run" \
        --cgroup-root "$root" --shim "$shim" --isolation cpu,memory >>"$dir/agent.log" 2>&1 &
    agent_pid=$!
}

cleanup() {
    set +e
    if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
        for id in $("$berth" --socket "$sock" ps -a --json | grep -o '"id": "[^"]*"' | cut -d'"' -f4); do
            "$berth" --socket "$sock" rm -f "$id" >/dev/null
        done
        kill "$agent_pid"; wait "$agent_pid" 2>/dev/null
    fi
    for c in cpu cpuacct memory; do
        own=$(awk -F: -v c="$c" '{split($2, names, ","); for (i in names) if (names[i] == c) print $3}' /proc/self/cgroup)
        rmdir "/sys/fs/cgroup/$c$own/$root"/* "/sys/fs/cgroup/$c$own/$root" 2>/dev/null
    done
    rm -rf "$dir"
}
trap cleanup EXIT

wait_socket() {
    until "$berth" --socket "$sock" info >/dev/null 2>&1; do sleep 0.005; done
}

start_agent
wait_socket
echo "launching $n containers..."
seq 1 "$n" | xargs -P 8 -I{} "$berth" --socket "$sock" run -d --name "b{}" --cpus 0.01 -- sleep 3600 >/dev/null

kill -9 "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
t0=$(date +%s.%N)
start_agent
wait_socket
# All recovered and answering: every container listed as running, then a
# few inspected (which asks every isolator for its status).
running=$("$berth" --socket "$sock" ps --json | grep -c '"state": "running"')
t1=$(date +%s.%N)
for i in 1 $((n / 2)) "$n"; do "$berth" --socket "$sock" inspect "b$i" >/dev/null; done
t2=$(date +%s.%N)
echo "recovered $running of $n running containers in $(awk "BEGIN{print $t1 - $t0}") s (target < 1 s); inspect answered after $(awk "BEGIN{print $t2 - $t0}") s"
