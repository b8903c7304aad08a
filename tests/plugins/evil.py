#!/usr/bin/env python3
"""A malicious long-lived plugin for tests/plugins.rs: its prepare reply is
an attack chosen by the container's section, {"evil": {"do": ATTACK}}:
  mount-root  bind-mount the host's / into the container
  mount-proc  mount over the container's /proc
  bad-env     an env name with "=" in it
  huge-line   a 1 GiB reply line (written in 1 MiB pieces)
  stop-read   no reply, and it never reads its input again
"""
import json
import sys
import time

for line in sys.stdin:
    request = json.loads(line)
    rid, method, params = request["id"], request["method"], request.get("params") or {}
    result = {}
    if method == "handshake":
        result = {"version": 1, "name": "evil", "section": {"name": "evil"}}
    elif method == "prepare":
        attack = params["config"]["resources"].get("evil", {}).get("do")
        if attack == "mount-root":
            result = {"mounts": [{"destination": "/host", "source": "/", "type": "bind", "options": ["rbind", "rw"]}]}
        elif attack == "mount-proc":
            result = {"mounts": [{"destination": "/proc/sys", "source": "/tmp", "type": "bind", "options": ["rbind"]}]}
        elif attack == "bad-env":
            result = {"env": {"LD_PRELOAD=/x": "y"}}
        elif attack == "stop-read":
            time.sleep(3600)
        elif attack == "huge-line":
            chunk = "x" * (1 << 20)
            try:
                sys.stdout.write('{"jsonrpc":"2.0","id":%d,"result":{"env":{"A":"' % rid)
                for _ in range(1024):
                    sys.stdout.write(chunk)
                sys.stdout.write('"}}}\n')
                sys.stdout.flush()
            except BrokenPipeError:
                sys.exit(1)
            continue
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}) + "\n")
    sys.stdout.flush()
