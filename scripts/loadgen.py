"""A lean closed-loop HTTP/1.1 load client (GETs, or POSTs of prepared bodies), in a process of its own.

The benchmarks' other phases drive the server with threads of ``httpx`` clients: right for POSTs that sign,
build documents and wait, wrong for a read bar at 32 clients on a 2-core machine. There, 32 Python threads
contend for one interpreter lock on the cores the server needs: the harness spent 0.8-1 ms of CPU per GET, and
a GET of ``/healthz`` (no database, no authentication) measured p99 60-160 ms through it, above the 50 ms bar
before the server did anything. This client keeps one keep-alive connection per simulated client, each
sending its next request when the answer to the last has been read in full (a closed loop, as before), on one
event loop: a few tens of microseconds of CPU per request.

Latency is measured per request from the moment it is written to the moment the last byte of the answer's
body is read. Only complete answers with the expected status and a ``Content-Length`` body count; anything
else is counted as failed (never dropped silently).

Used as a module (:func:`run`: it starts ``python loadgen.py`` and feeds it the plan on stdin) or directly:
``python scripts/loadgen.py < plan.json`` prints the result as JSON.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._try_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed: {exc}"))

    def _try_complete(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length, close = None, False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection":
                close = value.strip().lower() == "close"
        if length is None:
            self.waiter.set_exception(ValueError(f"no Content-Length in the answer: {head[0]!r}"))
            return
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        if close:  # the server ends this connection: the next request opens another
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self.waiter.set_result((int(head[0].split(" ", 2)[1]), body))

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


async def _client(
    host: str, port: int, requests: Sequence[bytes], expect: int, latencies: list[float], failures: list[str]
) -> None:
    loop = asyncio.get_running_loop()
    conn: _Connection | None = None
    for request in requests:
        try:
            if conn is None or conn.closed:
                _, conn = await loop.create_connection(_Connection, host, port)
            t0 = time.perf_counter()
            status, _body = await conn.exchange(request)
            seconds = time.perf_counter() - t0
        except (OSError, ValueError) as exc:
            failures.append(type(exc).__name__)
            conn = None
            continue
        if status == expect:
            latencies.append(1000 * seconds)
        else:
            failures.append(f"status {status}")
    if conn is not None and conn.transport is not None:
        conn.transport.close()


async def _main(plan: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(plan["url"])
    host, port = url.hostname or "127.0.0.1", url.port or 80
    headers = "".join(f"{k}: {v}\r\n" for k, v in plan.get("headers", {}).items())
    method = plan.get("method", "GET")
    fresh = plan.get("fresh_header")

    def request(path: str, body: str | None) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}"
        if fresh:  # a value of its own per request, as a client's Idempotency-Key
            head += f"{fresh}: {uuid.uuid4().hex}\r\n"
        if body is None:
            return f"{head}\r\n".encode()
        data = body.encode()
        return f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data

    bodies = plan.get("bodies") or [[None] * len(paths) for paths in plan["paths"]]
    per_client = [
        [request(path, body) for path, body in zip(paths, client_bodies, strict=True)]
        for paths, client_bodies in zip(plan["paths"], bodies, strict=True)
    ]
    latencies: list[float] = []
    failures: list[str] = []
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(
        *(_client(host, port, reqs, plan.get("expect", 200), latencies, failures) for reqs in per_client)
    )
    return {
        "latencies_ms": latencies,
        "failed": len(failures),
        "failures": dict(Counter(failures)),
        "elapsed_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
    }


def run(
    url: str,
    paths: Sequence[Sequence[str]],
    headers: dict[str, str],
    expect: int = 200,
    *,
    method: str = "GET",
    bodies: Sequence[Sequence[str]] | None = None,
    fresh_header: str | None = None,
) -> dict[str, Any]:
    """``method`` ``paths[c]`` in order on connection ``c`` (one per client, all at once) against ``url``,
    from a process of its own; ``bodies[c][i]`` (text, sent as UTF-8 with its ``Content-Length``) is the
    body of ``paths[c][i]``, none without ``bodies``; ``fresh_header`` (``Idempotency-Key``) is sent with
    a new random value on every request. Returns ``latencies_ms`` of the answers with status
    ``expect``, the ``failed`` count and the ``failures`` by kind (``status 503``, an exception's name),
    ``elapsed_s`` and its own ``cpu_s``."""
    plan: dict[str, Any] = {
        "url": url,
        "paths": [list(p) for p in paths],
        "headers": headers,
        "expect": expect,
        "method": method,
    }
    if bodies is not None:
        plan["bodies"] = [list(b) for b in bodies]
    if fresh_header is not None:
        plan["fresh_header"] = fresh_header
    done = subprocess.run(
        [sys.executable, __file__], input=json.dumps(plan).encode(), capture_output=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


if __name__ == "__main__":
    spec = json.load(sys.stdin)
    try:
        import uvloop  # the server's own event loop; plain asyncio works too
    except ImportError:
        json.dump(asyncio.run(_main(spec)), sys.stdout)
    else:
        json.dump(uvloop.run(_main(spec)), sys.stdout)
