"""The agent's HTTP API over its unix socket, for the benchmarks' python.

The scripts run their python with PYTHONPATH set to benches/ (see
`bench_python` in lib.sh) and import from here.
"""
import http.client
import json
import socket


class UnixHTTP(http.client.HTTPConnection):
    """An HTTP/1.1 connection to the agent's unix socket."""

    def __init__(self, path, timeout=120):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


def call(sock, method, path, body=None, timeout=120):
    """One request on a new connection: the answer's bytes. A status of 300
    or more raises RuntimeError with the start of the answer."""
    conn = UnixHTTP(sock, timeout)
    headers = {"content-type": "application/json"} if body is not None else {}
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
    return data


def call_json(sock, method, path, body=None, timeout=120):
    """`call`, the answer parsed as JSON (None when empty)."""
    data = call(sock, method, path, body, timeout)
    return json.loads(data) if data else None
