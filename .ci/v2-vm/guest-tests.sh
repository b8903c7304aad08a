#!/bin/sh
# Runs inside the VM (see run.sh): guest-tests.sh MODE TEST_BINARY...
#
# MODE root: each test binary runs in the root cgroup.
# MODE delegated: each runs as the single process of a cgroup like a systemd
#   service with Delegate=yes (/system.slice/berth-N.service, the controllers
#   enabled in /system.slice), a new one for every binary; the driver
#   (this shell) stays in the root cgroup. Afterwards every ancestor of the
#   service cgroup must still be of cgroup.type "domain".
# Prints one line per binary with its duration; exits 1 if any failed.
set -u
mode=$1; shift
cg=/sys/fs/cgroup
slice=$cg/system.slice
failed=""
n=0
# The 50-container restart test takes minutes under emulation (two to five):
# it runs on the host only, to keep this job near 10 minutes.
args="--test-threads=2 --skip fifty_running_containers_survive_an_agent_restart"
check_domain() {
  for d in "$slice" "$service"; do
    t=$(cat "$d/cgroup.type" 2>/dev/null || echo missing)
    if [ "$t" != domain ]; then
      echo "v2-vm: $d has cgroup.type '$t', not domain"
      return 1
    fi
  done
}
for bin in "$@"; do
  name=$(basename "$bin" | sed 's/-[0-9a-f]*$//')
  start=$(date +%s)
  n=$((n+1))
  service=$slice/berth-$n.service
  if [ "$mode" = delegated ]; then
    mkdir -p "$service"
    echo "+cpu +cpuset +io +memory +pids" > "$slice/cgroup.subtree_control" || exit 1
    # shellcheck disable=SC2016
    sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$service" \
      "$bin" $args
  else
    "$bin" $args
  fi
  rc=$?
  echo "v2-vm: $mode $name: exit $rc in $(( $(date +%s) - start ))s"
  [ "$rc" = 0 ] || failed="$failed $name"
  if [ "$mode" = delegated ]; then
    check_domain || failed="$failed $name(cgroup.type)"
  fi
done
if [ -n "$failed" ]; then
  echo "v2-vm: $mode: FAILED:$failed"
  exit 1
fi
echo "v2-vm: $mode: all passed"
