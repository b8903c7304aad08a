#!/usr/bin/env bash
# .ci/v2-vm/suite.sh: the integration tests on a real cgroup v2 kernel.
#
# Builds the chosen test binaries on the host, then boots the v2 VM
# (run.sh) twice: once running them from the root cgroup, once each as the
# single process of a delegated service cgroup (guest-tests.sh). The tests
# chosen (issue 16): launch, update, memory, cpu, blkio, disk, recovery,
# shim, pids, and the v2-specific ones (cgroup_v2); overlay roots from
# images (image_rootfs) and health checkers (health), which place processes
# in the container's cgroups; XFS project quotas (xfs_quota). Fails if any fails.
# V2VM_MODES="root delegated" picks the runs; V2VM_TESTS overrides the list;
# V2VM_BIN_TIMEOUT (s, default 300) ends a hanging test binary (guest-tests.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=.ci/v2-vm
root_tests=${V2VM_TESTS:-"launch update blkio disk recovery shim pids cgroup_v2 image_rootfs health open_contract xfs_quota"}
# xfs_quota: XFS project quotas, which only this kernel has (the host's has
# no CONFIG_XFS_QUOTA); mkfs.xfs runs in the guest from the shared root.
case " $root_tests " in
*" xfs_quota "*)
    command -v mkfs.xfs >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xfsprogs >/dev/null ;;
esac
crate_tests="berth-isolator-memory berth-isolator-cpu berth-cgroups"

bins=()
collect() {
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])'
}
args=()
for t in $root_tests; do args+=(--test "$t"); done
while read -r b; do bins+=("$b"); done < <(cargo test --no-run --message-format=json "${args[@]}" | collect)
if [ -z "${V2VM_TESTS:-}" ]; then
    for p in $crate_tests; do
        while read -r b; do bins+=("$b"); done < <(cargo test --no-run --message-format=json -p "$p" --test real_kernel | collect)
    done
fi
# berth-shim and berth, which the tests run, are built by the above.
echo "v2-vm: ${#bins[@]} test binaries"

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
export BERTH_SKIP_LOG=$results/skipped
export BERTH_TEST_TIME_SCALE=${BERTH_TEST_TIME_SCALE:-10}
: > "$BERTH_SKIP_LOG"
status=0
# The tree is shared at its own path as well: the guest's /tmp is a fresh
# disk, which would hide a checkout (and its test binaries) under /tmp.
for mode in ${V2VM_MODES:-root delegated}; do
    start=$(date +%s)
    set +e
    V2VM_ENV="BERTH_TEST_TIME_SCALE V2VM_BIN_TIMEOUT" V2VM_RW="$results $PWD" V2VM_TMP_DISK=${V2VM_TMP_DISK:-4G} "$here/run.sh" sh "$here/guest-tests.sh" "$mode" "${bins[@]}"
    rc=$?
    set -e
    echo "v2-vm: $mode run: exit $rc in $(( $(date +%s) - start ))s"
    [ "$rc" = 0 ] || status=1
done
if [ -s "$BERTH_SKIP_LOG" ]; then
    echo "v2-vm: skipped tests:"
    sed 's/^/  /' "$BERTH_SKIP_LOG"
fi
exit "$status"
