#!/bin/sh
# berth isolator plugin "stamp", exec mode: berth runs `stamp.sh METHOD`
# with one JSON-RPC 2.0 request on stdin and reads one reply from stdout
# (docs/plugin-protocol.md). No jq, no SDK: POSIX sh and sed.
#
# Its resource section: {"stamp": {"label": "blue"}} -- the label (lowercase
# letters, digits and -, at most 32) reaches the container as STAMP_LABEL.
# Every method it does not know answers {} (nothing to do).
#
# Cgroup settings: the operator may give it STAMP_LINUX_RESOURCES (in the
# plugin's `[plugins.env]`), a runtime-spec linux.resources fragment such as
# {"pids":{"limit":64}}, which it returns from every prepare for berth to
# validate and apply (docs/plugin-protocol.md).
set -eu
method="$1"
request=$(cat)
id=$(printf '%s' "$request" | sed -n 's/^{"jsonrpc":"2.0","id":\([0-9]*\),.*/\1/p')
state="${BERTH_PLUGIN_STATE_DIR:-/tmp}"

reply() { printf '{"jsonrpc":"2.0","id":%s,"result":%s}\n' "$id" "$1"; }
fail() { printf '{"jsonrpc":"2.0","id":%s,"error":{"code":%s,"message":"%s","data":{"field":"%s"}}}\n' "$id" "$1" "$2" "$3"; }

# The label, if the request has one (berth writes compact JSON).
label=$(printf '%s' "$request" | sed -n 's/.*"stamp":{"label":"\([^"]*\)"}.*/\1/p')
if printf '%s' "$request" | grep -q '"stamp":{' && [ -z "$label" ]; then
    label='(not a string)'
fi
check() {
    case "$label" in
        *[!a-z0-9-]*) fail -32001 "label must be lowercase letters, digits and -" resources.stamp.label; exit 0 ;;
    esac
    if [ ${#label} -gt 32 ]; then
        fail -32001 "label longer than 32" resources.stamp.label; exit 0
    fi
}

case "$method" in
handshake)
    case "$request" in
        *'"versions":[1'*|*',1]'*|*',1,'*) ;;
        *) printf '{"jsonrpc":"2.0","id":%s,"error":{"code":-32010,"message":"stamp speaks protocol version 1"}}\n' "$id"; exit 0 ;;
    esac
    reply '{"version":1,"name":"stamp","plugin_version":"0.1.0","section":{"name":"stamp","schema":{"type":"object","properties":{"label":{"type":"string","pattern":"^[a-z0-9-]{0,32}$"}},"additionalProperties":false}}}'
    ;;
validate|update)
    check
    reply '{}'
    ;;
prepare)
    check
    [ "$label" = hang ] && sleep 3600
    echo prepared >> "$state/calls"
    resources="${STAMP_LINUX_RESOURCES:-}"
    [ -n "$resources" ] || resources='{}'
    reply "{\"env\":{\"STAMP_LABEL\":\"$label\"},\"linux_resources\":$resources}"
    ;;
cleanup)
    # Test hook: a file slow-cleanup in the state dir holds every cleanup
    # for its number of seconds.
    if [ -f "$state/slow-cleanup" ]; then sleep "$(cat "$state/slow-cleanup")"; fi
    reply '{}'
    ;;
usage)
    calls=$(cat "$state/calls" 2>/dev/null | wc -l)
    reply "{\"prepares\":$calls}"
    ;;
*)
    reply '{}'
    ;;
esac
