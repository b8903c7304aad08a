#!/usr/bin/env bash
# Log throughput: how fast container output reaches rotated log files.
#
# Measures in one run, writing SIZE_MB MiB (default 2048) of zeros in 64 KiB
# writes to the same file system:
#   raw     dd | cat > file                                   (the ceiling)
#   berth   a berth container's stdout, 10 MiB x 5 rotation   (berth-shim)
#   conmon  conmon + runc, k8s-file log, --log-size-max 10 MiB
# and prints MB/s side by side, berth/raw and berth/conmon, and the peak
# VmRSS of berth-shim sampled while it runs.
#
# Needs root. Builds release binaries; installs conmon, runc and
# busybox-static with apt-get if missing. Removes its temp dirs, cgroups and
# containers, and kills only processes it started. Not run by CI:
#   sudo benches/log_throughput.sh

set -euo pipefail
. "$(dirname "$0")/lib.sh"

SIZE_MB=${SIZE_MB:-2048}
COUNT=$((SIZE_MB * 16)) # 64 KiB blocks
BYTES=$((SIZE_MB * 1024 * 1024))
REPO=$(cd "$(dirname "$0")/.." && pwd)
TAG="berth-bench-$$"
# The work dirs go on the same file system as the repo (not a tmpfs /tmp).
BASE=$(mktemp -d "${BENCH_DIR:-/var/tmp}/$TAG.XXXXXX")
chmod 755 "$BASE"
AGENT_PID=""
CONMON_ID=""

die() { echo "log_throughput: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (containers, cgroups)"

cleanup() {
    set +e
    if [ -n "$CONMON_ID" ]; then
        runc delete --force "$CONMON_ID" >/dev/null 2>&1
    fi
    if [ -n "$AGENT_PID" ]; then
        for id in $("$BERTH" --socket "$BASE/berth.sock" ps -a --json 2>/dev/null |
            python3 -c 'import json,sys; print(" ".join(c["id"] for c in json.load(sys.stdin)))'); do
            "$BERTH" --socket "$BASE/berth.sock" rm -f "$id" >/dev/null 2>&1
        done
        kill "$AGENT_PID" 2>/dev/null
        wait "$AGENT_PID" 2>/dev/null
    fi
    remove_bench_cgroups
    rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mbps() { # bytes seconds
    awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'
}

now() { date +%s.%N; }

wait_for_file() { # path; up to 30 s
    for _ in $(seq 1500); do [ -s "$1" ] && return 0; sleep 0.02; done
    return 1
}

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

bench_binaries

# --- raw ---------------------------------------------------------------------
echo "== raw: dd | cat > file ($SIZE_MB MiB)"
sync
t0=$(now)
dd if=/dev/zero bs=64k count="$COUNT" status=none | cat >"$BASE/raw.out"
t1=$(now)
RAW_S=$(elapsed "$t0" "$t1")
RAW=$(mbps "$BYTES" "$RAW_S")
rm -f "$BASE/raw.out"
echo "   ${RAW_S}s, $RAW MB/s"

# --- berth -------------------------------------------------------------------
echo "== berth: container stdout, 10 MiB x 5 rotation"
sync
"$BERTH" agent --socket "$BASE/berth.sock" --work-dir "$BASE/work" \
    --runtime-dir "$BASE/run" --cgroup-root "$TAG" --shim "$SHIM" \
    >"$BASE/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 100); do [ -S "$BASE/berth.sock" ] && break; sleep 0.1; done
[ -S "$BASE/berth.sock" ] || { cat "$BASE/agent.log"; die "agent did not start"; }
export BERTH_SOCKET="$BASE/berth.sock"

t0=$(now)
ID=$("$BERTH" run -d --log-max-size 10485760 --log-max-files 5 -- \
    dd if=/dev/zero bs=64k count="$COUNT" status=none)
# The shim is the container process's parent.
CPID=$("$BERTH" inspect "$ID" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("pid") or "")')
SHIM_PID=$(awk '/^PPid:/ { print $2 }' "/proc/$CPID/status" 2>/dev/null || true)
PEAK_RSS=0
if [ -n "$SHIM_PID" ]; then
    (
        peak=0 peak_anon=0
        while read -r rss anon < <(awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 }
                END { if (r) print r, a }' "/proc/$SHIM_PID/status" 2>/dev/null) &&
            [ -n "$rss" ]; do
            [ "$rss" -gt "$peak" ] && peak=$rss && echo "$peak" >"$BASE/rss.peak"
            [ "$anon" -gt "$peak_anon" ] && peak_anon=$anon && echo "$anon" >"$BASE/anon.peak"
            sleep 0.05
        done
    ) &
    SAMPLER=$!
fi
CODE=$("$BERTH" wait "$ID" || true)
t1=$(now)
[ -n "${SAMPLER:-}" ] && wait "$SAMPLER" 2>/dev/null || true
[ -f "$BASE/rss.peak" ] && PEAK_RSS=$(cat "$BASE/rss.peak")
PEAK_ANON=0
[ -f "$BASE/anon.peak" ] && PEAK_ANON=$(cat "$BASE/anon.peak")
BERTH_S=$(elapsed "$t0" "$t1")
BERTH_MBPS=$(mbps "$BYTES" "$BERTH_S")
LOG_DIR=$("$BERTH" inspect "$ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["log_dir"])')
echo "   exit $CODE, ${BERTH_S}s, $BERTH_MBPS MB/s, shim $SHIM_PID peak VmRSS ${PEAK_RSS} kB (RssAnon ${PEAK_ANON} kB)"
echo "   kept: $(cd "$LOG_DIR" && ls stdout.* | tr '\n' ' ')"
LOGS_JSON=$(find "$BASE/run" -path "*$ID*" -name logs.json -exec cat {} \; 2>/dev/null | head -1)
echo "   logs.json: $LOGS_JSON"
"$BERTH" rm -f "$ID" >/dev/null

# --- conmon + runc -----------------------------------------------------------
echo "== conmon + runc: k8s-file log, --log-size-max 10 MiB"
CONMON=""
missing=""
command -v conmon >/dev/null || missing="$missing conmon"
command -v runc >/dev/null || missing="$missing runc"
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing="$missing busybox-static"
if [ -n "$missing" ]; then
    echo "   installing:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >/dev/null 2>&1 ||
        echo "   apt-get install$missing failed"
fi
if ! command -v conmon >/dev/null || ! command -v runc >/dev/null; then
    CONMON_WHY="conmon or runc not installed and apt-get could not install them"
else
    BUSYBOX=$(command -v busybox)
    BUNDLE="$BASE/bundle"
    mkdir -p "$BUNDLE/rootfs/bin" "$BUNDLE/rootfs/dev" "$BUNDLE/rootfs/proc" \
        "$BUNDLE/rootfs/sys" "$BUNDLE/rootfs/tmp" "$BASE/conmon"
    cp "$BUSYBOX" "$BUNDLE/rootfs/bin/busybox"
    for applet in sh dd; do ln -s busybox "$BUNDLE/rootfs/bin/$applet"; done
    (cd "$BUNDLE" && runc spec)
    python3 - "$BUNDLE/config.json" "$COUNT" "$TAG" <<'EOF'
import json, sys
path, count, tag = sys.argv[1], sys.argv[2], sys.argv[3]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["dd", "if=/dev/zero", "bs=65536", f"count={count}"]
spec["linux"]["cgroupsPath"] = f"/{tag}/conmon"
json.dump(spec, open(path, "w"), indent=2)
EOF
    CONMON_ID="$TAG"
    sync
    t0=$(now)
    if conmon --cid "$CONMON_ID" --cuuid "$CONMON_ID" --name "$CONMON_ID" \
        --runtime "$(command -v runc)" --bundle "$BUNDLE" \
        --log-path "k8s-file:$BASE/conmon/ctr.log" --log-size-max 10485760 \
        --exit-dir "$BASE/conmon" --socket-dir-path "$BASE/conmon" \
        --container-pidfile "$BASE/conmon/ctr.pid" \
        --conmon-pidfile "$BASE/conmon/conmon.pid" \
        >"$BASE/conmon/out.log" 2>&1 &&
        # conmon returns before runc has created the container.
        wait_for_file "$BASE/conmon/ctr.pid" &&
        runc start "$CONMON_ID" >>"$BASE/conmon/out.log" 2>&1; then
        for _ in $(seq 6000); do
            [ -f "$BASE/conmon/$CONMON_ID" ] && break
            sleep 0.02
        done
        t1=$(now)
        if [ -f "$BASE/conmon/$CONMON_ID" ]; then
            CONMON_S=$(elapsed "$t0" "$t1")
            CONMON=$(mbps "$BYTES" "$CONMON_S")
            echo "   exit $(cat "$BASE/conmon/$CONMON_ID"), ${CONMON_S}s, $CONMON MB/s"
            echo "   kept: $(cd "$BASE/conmon" && ls ctr.log* | tr '\n' ' ')"
        else
            CONMON_WHY="no exit file from conmon within 120 s"
        fi
    else
        CONMON_WHY="conmon/runc failed: $(tr '\n' ' ' <"$BASE/conmon/out.log")"
    fi
fi
[ -n "${CONMON_WHY:-}" ] && echo "   conmon not measured: $CONMON_WHY"

# --- summary -----------------------------------------------------------------
echo
printf '%-8s %10s\n' "" "MB/s"
printf '%-8s %10s\n' raw "$RAW" berth "$BERTH_MBPS" conmon "${CONMON:-n/a}"
awk -v b="$BERTH_MBPS" -v r="$RAW" 'BEGIN { printf "berth/raw    %.2f\n", b / r }'
if [ -n "$CONMON" ]; then
    awk -v b="$BERTH_MBPS" -v c="$CONMON" 'BEGIN { printf "berth/conmon %.2f\n", b / c }'
else
    echo "berth/conmon n/a (${CONMON_WHY:-})"
fi
echo "berth-shim peak VmRSS: ${PEAK_RSS} kB, of which anonymous ${PEAK_ANON} kB"
echo "(raw keeps one ${SIZE_MB} MiB file, so its pages are written back to disk;"
echo " berth and conmon delete or truncate past 50 resp. 10 MiB, so most of"
echo " their pages die in the page cache: compare berth and conmon first)"
