#!/usr/bin/env python3
"""berth isolator plugin "pool": a long-lived plugin, no SDK, stdlib only.

Gives each container slots from a fixed pool (like GPUs on a host) and a
scratch directory mounted at /tmp/scratch with a quota it watches. Speaks
berth's plugin protocol version 1 (docs/plugin-protocol.md): newline-
delimited JSON-RPC 2.0 on stdin/stdout; logs go to stderr.

Its resource section: {"pool": {"slots": 2, "quota_bytes": 1048576}}
  slots        how many slots (1 .. pool size, default 1)
  quota_bytes  the most the container may write to /tmp/scratch (0: no limit)
  hang         test hook: never answer this container's prepare
Its settings ([isolators.pool] in the agent's config): size = 4

State (survives agent and plugin restarts) in $BERTH_PLUGIN_STATE_DIR:
  assignments/<id>.json  the slots of a container
  scratch/<id>/          its scratch directory
  events.log             one JSON line per recover, gc and cleanup
"""

import json
import os
import shutil
import sys
import threading
import time

VERSION = 1
NAME = os.environ.get("BERTH_PLUGIN_NAME", "pool")
STATE = os.environ.get("BERTH_PLUGIN_STATE_DIR", "/var/lib/berth/plugins/pool")
# Test hook: the protocol versions this build claims to speak.
SPEAKS = [int(v) for v in os.environ.get("POOL_PROTOCOL", str(VERSION)).split(",")]

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "slots": {"type": "integer", "minimum": 1},
        "quota_bytes": {"type": "integer", "minimum": 0},
        "hang": {"type": "boolean"},
    },
}

out_lock = threading.Lock()
state_lock = threading.Lock()
size = 4
assignments = {}  # id -> {"slots": [...], "quota_bytes": n}
watched = {}  # id -> True while watched and not yet reported


class Invalid(Exception):
    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


class Conflict(Exception):
    pass


def send(message):
    line = json.dumps(message, separators=(",", ":")) + "\n"
    with out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def log_event(event):
    with open(os.path.join(STATE, "events.log"), "a") as f:
        f.write(json.dumps(event) + "\n")


def assignment_path(cid):
    return os.path.join(STATE, "assignments", cid + ".json")


def scratch_dir(cid):
    return os.path.join(STATE, "scratch", cid)


def section(config):
    """The container's pool section, checked; errors name the field."""
    s = config.get("resources", {}).get(NAME, {})
    for key in s:
        if key not in SCHEMA["properties"]:
            raise Invalid(f"resources.{NAME}", f"unknown field {key!r}")
    slots = s.get("slots", 1)
    if not isinstance(slots, int) or isinstance(slots, bool) or not 1 <= slots <= size:
        raise Invalid(f"resources.{NAME}.slots", f"must be an integer from 1 to {size}, got {slots!r}")
    quota = s.get("quota_bytes", 0)
    if not isinstance(quota, int) or isinstance(quota, bool) or quota < 0:
        raise Invalid(f"resources.{NAME}.quota_bytes", f"must be a non-negative integer, got {quota!r}")
    hang = s.get("hang", False)
    if not isinstance(hang, bool):
        raise Invalid(f"resources.{NAME}.hang", "must be a boolean")
    return {"slots": slots, "quota_bytes": quota, "hang": hang}


def used_bytes(cid):
    total = 0
    for root, _dirs, files in os.walk(scratch_dir(cid)):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def reap(cid):
    """Frees everything held for a container; unknown ids are fine."""
    assignments.pop(cid, None)
    watched.pop(cid, None)
    for path in (assignment_path(cid),):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    shutil.rmtree(scratch_dir(cid), ignore_errors=True)


def on_disk():
    try:
        return [n[: -len(".json")] for n in os.listdir(os.path.join(STATE, "assignments")) if n.endswith(".json")]
    except FileNotFoundError:
        return []


def handshake(p):
    global size
    offered = p.get("versions", [])
    common = [v for v in offered if v in SPEAKS]
    if not common:
        raise RpcError(-32010, f"pool speaks protocol versions {SPEAKS}, berth offered {offered}")
    settings = p.get("settings") or {}
    size = int(settings.get("size", 4))
    for d in ("assignments", "scratch"):
        os.makedirs(os.path.join(STATE, d), exist_ok=True)
    return {
        "version": max(common),
        "name": NAME,
        "plugin_version": "0.1.0",
        "section": {"name": NAME, "schema": SCHEMA},
        "supports": {"pool_size": size},
    }


def recover(p):
    known = {c["config"]["id"]: c for c in p.get("containers", [])}
    reaped = []
    with state_lock:
        for cid in on_disk():
            if cid in known:
                with open(assignment_path(cid)) as f:
                    assignments[cid] = json.load(f)
            else:
                reap(cid)
                reaped.append(cid)
        for cid in p.get("orphans", []):
            if cid not in known:
                reap(cid)
    log_event({"event": "recover", "containers": sorted(known), "orphans": p.get("orphans", []),
               "replay": p.get("replay", False), "reaped": reaped})
    return {}


def prepare(p):
    cid = p["id"]
    s = section(p["config"])
    if s["hang"]:
        return None  # test hook: never answer
    with state_lock:
        if cid in assignments:
            a = assignments[cid]
        else:
            taken = {slot for a in assignments.values() for slot in a["slots"]}
            free = []
            for slot in range(size):
                if slot not in taken:
                    free.append(slot)
                    if len(free) == s["slots"]:
                        break
            if len(free) < s["slots"]:
                raise Conflict(f"{s['slots']} pool slots asked for, {size - len(taken)} free")
            a = {"slots": free, "quota_bytes": s["quota_bytes"]}
            os.makedirs(scratch_dir(cid), exist_ok=True)
            tmp = assignment_path(cid) + ".tmp"
            with open(tmp, "w") as f:
                json.dump(a, f)
            os.rename(tmp, assignment_path(cid))
            assignments[cid] = a
    return {
        "env": {"POOL_SLOTS": ",".join(str(s) for s in a["slots"])},
        "mounts": [{"destination": "/tmp/scratch", "source": scratch_dir(cid), "type": "bind",
                    "options": ["rbind", "rw"]}],
    }


def over_quota(cid):
    a = assignments.get(cid)
    if not a or not a["quota_bytes"]:
        return None
    used = used_bytes(cid)
    if used > a["quota_bytes"]:
        return {"resource": "scratch", "message": f"scratch quota {a['quota_bytes']} bytes exceeded: {used} bytes used"}
    return None


def watcher():
    while True:
        time.sleep(0.1)
        with state_lock:
            ids = [cid for cid, on in watched.items() if on]
        for cid in ids:
            limitation = over_quota(cid)
            if limitation and watched.get(cid):
                watched[cid] = False
                send({"jsonrpc": "2.0", "method": "limitation", "params": dict(limitation, id=cid)})


def watch(p):
    watched[p["id"]] = True
    return {}


def usage(p):
    cid = p["id"]
    a = assignments.get(cid)
    if a is None:
        raise RpcError(-32005, f"unknown container {cid}", {"id": cid})
    return {"slots": len(a["slots"]), "scratch_bytes": used_bytes(cid), "quota_bytes": a["quota_bytes"]}


def status(p):
    a = assignments.get(p["id"], {})
    return {"slots": a.get("slots", [])}


def exit_limitation(p):
    return {"limitation": over_quota(p["id"])}


def cleanup(p):
    with state_lock:
        reap(p["id"])
    log_event({"event": "cleanup", "id": p["id"]})
    return {}


def gc(p):
    live = set(p.get("live", []))
    with state_lock:
        reaped = [cid for cid in on_disk() if cid not in live]
        for cid in reaped:
            reap(cid)
    if reaped:
        log_event({"event": "gc", "reaped": reaped})
    return {"reaped": reaped}


class RpcError(Exception):
    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code, self.data = code, data


METHODS = {
    "handshake": handshake, "recover": recover, "validate": lambda p: (section(p["config"]), {})[1],
    "prepare": prepare, "isolate": lambda p: {}, "watch": watch,
    "update": lambda p: (section({"resources": p["resources"]}), {})[1],
    "usage": usage, "status": status, "exit_limitation": exit_limitation, "cleanup": cleanup, "gc": gc,
}


def main():
    threading.Thread(target=watcher, daemon=True).start()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        rid, method = request.get("id"), request.get("method")
        try:
            if method not in METHODS:
                raise RpcError(-32601, f"no method {method}")
            result = METHODS[method](request.get("params") or {})
            if result is None:
                continue
            send({"jsonrpc": "2.0", "id": rid, "result": result})
        except Invalid as e:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32001, "message": str(e), "data": {"field": e.field}}})
        except Conflict as e:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32002, "message": str(e)}})
        except RpcError as e:
            error = {"code": e.code, "message": str(e)}
            if e.data is not None:
                error["data"] = e.data
            send({"jsonrpc": "2.0", "id": rid, "error": error})
        except Exception as e:  # noqa: BLE001 -- a bug answers, it does not kill the plugin
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32000, "message": f"{type(e).__name__}: {e}"}})


if __name__ == "__main__":
    main()
