"""The listening socket an API process of ``tradeguard run`` inherits: taken as the TCP socket it is, so that
asyncio turns Nagle's algorithm off on its connections (uvicorn's ``fd=`` takes it for a Unix socket, and a
client's next request on a kept-alive connection then waited out the peer's delayed ACK); ``run``'s wait
for a process that answers on it before it says ready; and the processes sharing it, each taking one
connection a turn of its event loop, so that a burst of clients is shared out between them."""

from __future__ import annotations

import asyncio
import errno
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import uvicorn

from app.cli import _ApiProcesses, inherited_socket
from app.errors import TradeGuardError
from app.serving import MAX_DECLINES, Loads, TurnTakingServer


def _nodelay_of_accepted(listener: socket.socket) -> int:
    """TCP_NODELAY of a connection an asyncio server on ``listener`` accepts."""
    seen: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        host, port = listener.getsockname()[:2]
        _reader, writer = await asyncio.open_connection(host, port)
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert seen, "no connection was accepted"
    return seen[0]


def test_the_inherited_listener_is_tcp_and_its_connections_send_at_once() -> None:
    parent = socket.create_server(("127.0.0.1", 0))
    fd = os.dup(parent.fileno())  # what the API process receives
    parent.close()
    listener = inherited_socket(fd)
    assert listener.family == socket.AF_INET and listener.type == socket.SOCK_STREAM
    assert _nodelay_of_accepted(listener) != 0


def test_a_listener_taken_for_a_unix_socket_would_keep_nagle_on() -> None:
    """The premise: what uvicorn's ``fd=`` did (``socket.fromfd(fd, AF_UNIX, ...)``)."""
    parent = socket.create_server(("127.0.0.1", 0))
    listener = socket.fromfd(parent.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
    parent.close()
    try:
        listener.getsockname()
        assert _nodelay_of_accepted(listener) == 0
    finally:
        listener.close()


def _processes(stop: threading.Event) -> Any:
    return _ApiProcesses(
        cast(Any, SimpleNamespace(host="127.0.0.1", port=0, eager=False)), 1, stop
    )  # a listening socket no process serves


def test_waiting_for_an_api_process_names_why_none_answered() -> None:
    api = _processes(threading.Event())
    try:
        with pytest.raises(TradeGuardError, match=r"no API process answered .* \(last: TimeoutError"):
            api.wait_serving(timeout=0.1)  # the connection waits in the backlog; the request times out
    finally:
        api.sock.close()


def test_waiting_for_an_api_process_ends_when_the_service_stops() -> None:
    stop = threading.Event()
    api = _processes(stop)
    threading.Timer(0.3, stop.set).start()
    try:
        started = time.monotonic()
        assert api.wait_serving(timeout=60) is False
        assert time.monotonic() - started < 10  # the stop, not the 60 s deadline, ended it
    finally:
        api.sock.close()


def test_the_api_processes_share_the_parents_listening_socket() -> None:
    """The parent's listening socket keeps the connections that arrive while a process restarts in its
    backlog."""
    api = _processes(threading.Event())
    try:
        with socket.create_connection(api.sock.getsockname(), timeout=5):
            pass  # accepted into the backlog, though no process serves yet
    finally:
        api.sock.close()


async def _pid_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with the serving process's pid."""
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def test_a_process_takes_one_waiting_connection_a_turn() -> None:
    """Three connections wait; one turn takes one, and the others stay in the backlog for the other
    processes (asyncio's own server took every waiting connection at once)."""
    listener = socket.create_server(("127.0.0.1", 0))
    clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
    config = uvicorn.Config(_pid_app, log_level="warning", lifespan="off")
    config.load()
    server = TurnTakingServer(config, listener)
    server.lifespan = config.lifespan_class(config)

    async def turn() -> int:
        listener.setblocking(False)
        server._take_one(asyncio.get_running_loop())
        for _ in range(100):
            if server.server_state.connections:
                break
            await asyncio.sleep(0.01)
        taken = len(server.server_state.connections)
        for connection in list(server.server_state.connections):
            connection.shutdown()
        return taken

    try:
        assert asyncio.run(turn()) == 1
        left = 0
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                break
            conn.close()
            left += 1
        assert left == 2
    finally:
        for c in clients:
            c.close()
        listener.close()


def _burst(port: int, clients: int) -> list[int]:
    """``clients`` keep-alive connections opened at once, one GET each: how many each process served."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=20) for _ in range(clients)]
    served: list[bytes] = []
    start = threading.Barrier(clients)

    def one(conn: http.client.HTTPConnection) -> None:
        start.wait()
        conn.request("GET", "/")
        served.append(conn.getresponse().read())

    threads = [threading.Thread(target=one, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    return sorted(Counter(served).values())


def _sequential(port: int, clients: int) -> list[int]:
    """``clients`` keep-alive connections opened one after another, one GET each: how many each process
    served."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=20) for _ in range(clients)]
    served = []
    for conn in conns:
        conn.request("GET", "/")
        served.append(conn.getresponse().read())
    for conn in conns:
        conn.close()
    return sorted(Counter(served).values())


def _no_connections_left(loads: Loads, timeout: float = 30.0) -> None:
    """Wait until both processes have published that the clients' closed connections are gone (each
    publishes its count every 0.1 s), so that the next clients start from 0/0."""
    deadline = time.monotonic() + timeout
    while loads.get(0) or loads.get(1):
        assert time.monotonic() < deadline, f"connections still counted: {loads.get(0)}, {loads.get(1)}"
        time.sleep(0.01)  # a poll of the shared counts, bounded by the deadline


def test_two_processes_share_out_their_connections_evenly() -> None:
    """Two processes serving one socket with their counts shared (as ``run --workers 2``): 32 keep-alive
    clients, connecting at once or one after another, are split evenly. Without the counts
    the one-a-turn rule alone split a burst 13/19 to 15/17 and connections opened one after another up to
    7/25; asyncio's own server gave 32/0 and the kernel's SO_REUSEPORT hash 10/21."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=2048)
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    loads = Loads.create(2)
    child = (
        "import socket, sys, uvicorn; from app.serving import Loads, TurnTakingServer; "
        "from tests.api.test_serve_socket import _pid_app; "
        "TurnTakingServer(uvicorn.Config(_pid_app, log_level='warning', lifespan='off'), "
        "socket.socket(fileno=int(sys.argv[1])), Loads(int(sys.argv[2]), None), int(sys.argv[3])).run()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child, str(listener.fileno()), str(loads.fd), str(slot)],
            pass_fds=[listener.fileno(), loads.fd],
            cwd=Path(__file__).resolve().parents[2],
        )
        for slot in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        # until both processes have started serving (each try waits for its answers: no spinning)
        while len(_sequential(port, 4)) < 2:
            assert time.monotonic() < deadline, "the two processes did not both serve"
        _no_connections_left(loads)
        burst = _burst(port, 32)
        _no_connections_left(loads)
        one_by_one = _sequential(port, 32)
        # 16/16 or 15/17 here; 14/18 allowed for a process the machine did not run for the few turns a new
        # connection is left to it (without the counts one after another gave up to 6/34)
        assert len(burst) == 2 and sum(burst) == 32 and min(burst) >= 14, burst
        assert len(one_by_one) == 2 and sum(one_by_one) == 32 and min(one_by_one) >= 14, one_by_one
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
        listener.close()
        os.close(loads.fd)


def test_a_process_with_more_connections_leaves_a_new_one_to_another_a_few_turns() -> None:
    """The other process has fewer connections: the new one is left waiting a few turns, then taken (the
    other may be busy, or hung)."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    loads = Loads.create(2)
    config = uvicorn.Config(_pid_app, log_level="warning", lifespan="off")
    config.load()
    server = TurnTakingServer(config, listener, loads, 0)
    server.lifespan = config.lifespan_class(config)
    server._connecting.add(cast(Any, object()))  # one connection of its own already; the other has none

    async def turns() -> list[int]:
        listener.setblocking(False)
        loop = asyncio.get_running_loop()
        taken = []
        for _ in range(MAX_DECLINES + 1):
            server._take_one(loop)
            taken.append(len(server.server_state.connections) + len(server._connecting) - 1)
        for _ in range(100):
            if server.server_state.connections:
                break
            await asyncio.sleep(0.01)
        for connection in list(server.server_state.connections):
            connection.shutdown()
        loop.remove_reader(listener.fileno())
        return taken

    try:
        assert asyncio.run(turns()) == [0] * MAX_DECLINES + [1]
        assert loads.get(0) == 2
        # a connection left to the others and taken by one of them: the next starts a new count
        other = socket.create_connection(listener.getsockname())

        async def taken_elsewhere() -> int:
            loop = asyncio.get_running_loop()
            server._declined = 0
            server._take_one(loop)  # declines it
            conn, _ = listener.accept()  # another process takes it
            conn.close()
            declined = server._declined
            server._after_declining(loop)
            loop.remove_reader(listener.fileno())
            return declined * 10 + server._declined

        assert asyncio.run(taken_elsewhere()) == 10
        other.close()
    finally:
        client.close()
        listener.close()
        os.close(loads.fd)


def test_a_port_another_service_listens_on_is_refused() -> None:
    """A second ``run --workers 2`` on the port of a running one fails to bind, instead of sharing its
    connections."""
    first = _processes(threading.Event())
    port = first.sock.getsockname()[1]
    try:
        with pytest.raises(OSError) as refused:
            _ApiProcesses(
                cast(Any, SimpleNamespace(host="127.0.0.1", port=port, eager=False)), 2, threading.Event()
            )
        assert refused.value.errno == errno.EADDRINUSE
    finally:
        first.sock.close()
