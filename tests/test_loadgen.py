"""The benchmarks' lean load client (scripts/loadgen.py) against a small HTTP/1.1 server: every answer is
counted as a latency or as a failure by kind, connections are kept alive, and a closed one is reopened."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import loadgen  # noqa: E402


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the answer says otherwise
    connections: set[tuple[str, int]] = set()
    auth: list[str | None] = []
    posted: list[tuple[str, str | None, bytes]] = []
    keys: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).connections.add(self.client_address)
        type(self).auth.append(self.headers.get("Authorization"))
        status = {"/ok": 200, "/busy": 503}.get(self.path.split("?")[0], 404)
        body = b'{"ok": true}' if status == 200 else b'{"code": "nope"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.path.endswith("?close"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        type(self).connections.add(self.client_address)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posted.append((self.path, self.headers.get("Content-Type"), body))
        type(self).keys.append(self.headers.get("Idempotency-Key"))
        answer = b'{"stored": true}'
        self.send_response(202 if body else 400)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.connections, _Handler.auth, _Handler.posted, _Handler.keys = set(), [], [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_each_answer_is_a_latency_or_a_failure_by_kind(server: str) -> None:
    plans = [["/ok"] * 5 + ["/busy"], ["/ok", "/missing", "/ok"]]
    done = loadgen.run(server, plans, {"Authorization": "Bearer k"})
    assert len(done["latencies_ms"]) == 7 and all(ms > 0 for ms in done["latencies_ms"])
    assert done["failed"] == 2
    assert done["failures"] == {"status 503": 1, "status 404": 1}
    assert done["elapsed_s"] > 0 and done["cpu_s"] >= 0
    assert _Handler.auth == ["Bearer k"] * 9
    # one keep-alive connection per client
    assert len(_Handler.connections) == 2


def test_a_connection_the_server_closes_is_reopened(server: str) -> None:
    done = loadgen.run(server, [["/ok?close", "/ok?close", "/ok"]], {})
    assert len(done["latencies_ms"]) == 3 and done["failed"] == 0
    assert len(_Handler.connections) == 3


def test_an_unreachable_server_counts_as_failures(server: str) -> None:
    dead = "http://127.0.0.1:9"  # discard port: nothing listens on loopback here
    done = loadgen.run(dead, [["/ok", "/ok"]], {})
    assert done["latencies_ms"] == [] and done["failed"] == 2
    assert done["failures"] == {"ConnectionRefusedError": 2}


def test_posts_send_each_body_whole_on_keep_alive_connections(server: str) -> None:
    bodies = [['{"n": 1}', '{"text": "caf\u00e9"}'], ["", '{"n": 3}']]
    done = loadgen.run(
        server,
        [["/capture", "/capture"], ["/capture", "/capture"]],
        {"Content-Type": "application/ld+json"},
        202,
        method="POST",
        bodies=bodies,
        fresh_header="Idempotency-Key",
    )
    assert len(done["latencies_ms"]) == 3 and done["failures"] == {"status 400": 1}
    # a new key on every request
    assert len(set(_Handler.keys)) == 4 and all(k and len(k) == 32 for k in _Handler.keys)
    assert sorted(body for _, _, body in _Handler.posted) == sorted(
        b.encode() for client in bodies for b in client
    )
    assert {(path, ctype) for path, ctype, _ in _Handler.posted} == {("/capture", "application/ld+json")}
    assert len(_Handler.connections) == 2
