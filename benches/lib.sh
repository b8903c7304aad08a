# Shared by the benchmarks that run their own agent: sourced, not run.
#
#   . "$(dirname "$0")/lib.sh"
#   bench_setup NAME      REPO, TAG=berth-NAME-PID, BASE (a temp dir under
#                         BENCH_DIR, default /var/tmp), AGENT_PID="", die(),
#                         PYTHONPATH with benches/ (berth_api.py: the API over
#                         the unix socket); refuses to run without root
#   bench_binaries        BERTH and SHIM: PREBUILT=DIR's, or release binaries
#                         built now (release_binaries)
#   release_binaries DIR [CARGO_ARGS...]
#                         the binaries as shipped, into DIR: `berth` and
#                         `berth-shim` static (packaging/static-build.sh,
#                         decision 0054), `berth-agent` as cargo built it;
#                         all three dynamic, said so, where the static C
#                         libraries are missing. Honours CARGO_TARGET_DIR.
#   start_agent [ARGS]    the agent on BASE's socket, work and runtime dirs and
#                         a cgroup root TAG below this shell's cgroup; waits for
#                         its socket
#   stop_agent            kills and reaps the agent started above, if any
#   remove_bench_cgroups  removes the cgroups below TAG (the agent's, relative
#                         to our own cgroup, and runc's, absolute)
#   busybox_rootfs DIR APPLET...
#                         a rootfs in DIR: busybox-static with the applets
#                         linked, and the dirs berth and runc mount over
# Each script keeps its own cleanup (what else it started) and calls these.

bench_setup() {
    BENCH_NAME=$1
    REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    TAG="berth-$BENCH_NAME-$$"
    BASE=$(mktemp -d "${BENCH_DIR:-/var/tmp}/$TAG.XXXXXX")
    chmod 755 "$BASE"
    AGENT_PID=""
    export PYTHONPATH="$REPO/benches${PYTHONPATH:+:$PYTHONPATH}"
    [ "$(id -u)" = 0 ] || die "needs root (containers, cgroups)"
}

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }

bench_binaries() {
    if [ -n "${PREBUILT:-}" ]; then
        BERTH="$PREBUILT/berth"
        SHIM="$PREBUILT/berth-shim"
    else
        release_binaries "$REPO/target/release-shipped"
        BERTH="$REPO/target/release-shipped/berth"
        SHIM="$REPO/target/release-shipped/berth-shim"
    fi
}

release_binaries() {
    local out=$1 built status
    shift
    built=${CARGO_TARGET_DIR:-$REPO/target}/release
    echo "== building release binaries"
    (cd "$REPO" && cargo build --release --bins --quiet "$@")
    mkdir -p "$out"
    install -m 0755 "$built/berth-agent" "$out/berth-agent"
    status=0
    "$REPO/packaging/static-build.sh" "$out" --quiet "$@" >/dev/null || status=$?
    case $status in
    0) ;;
    2)
        echo "   (static build unavailable: measuring dynamic berth and berth-shim)"
        install -m 0755 "$built/berth" "$built/berth-shim" "$out/"
        ;;
    *) die "packaging/static-build.sh failed" ;;
    esac
}

start_agent() {
    "$BERTH" agent "$@" --socket "$BASE/berth.sock" --work-dir "$BASE/work" \
        --runtime-dir "$BASE/run" --cgroup-root "$TAG" --shim "$SHIM" \
        >"$BASE/agent.log" 2>&1 &
    AGENT_PID=$!
    for _ in $(seq 100); do [ -S "$BASE/berth.sock" ] && break; sleep 0.1; done
    [ -S "$BASE/berth.sock" ] || { cat "$BASE/agent.log"; die "agent did not start"; }
}

stop_agent() {
    if [ -n "$AGENT_PID" ]; then
        kill "$AGENT_PID" 2>/dev/null
        wait "$AGENT_PID" 2>/dev/null
    fi
}

own_cgroup_dirs() {
    while IFS=: read -r _ names path; do
        local sub
        if [ -z "$names" ]; then sub=/sys/fs/cgroup
        else sub=/sys/fs/cgroup/${names#name=}; fi
        [ -d "$sub" ] && echo "$sub$path"
    done </proc/self/cgroup
}

remove_bench_cgroups() {
    local dir root
    for dir in $(own_cgroup_dirs) /sys/fs/cgroup/*; do
        for root in "$dir/$TAG" "/sys/fs/cgroup/$(basename "$dir")/$TAG"; do
            [ -d "$root" ] && find "$root" -depth -type d -exec rmdir {} + 2>/dev/null
        done
    done
    return 0
}

busybox_rootfs() {
    local dir=$1 busybox applet
    shift
    busybox=$(command -v busybox) || die "busybox-static not installed"
    # sandbox: berth mounts the container's sandbox there.
    mkdir -p "$dir/bin" "$dir/dev" "$dir/proc" "$dir/sys" "$dir/tmp" "$dir/sandbox"
    cp "$busybox" "$dir/bin/busybox"
    for applet in "$@"; do ln -s busybox "$dir/bin/$applet"; done
}
