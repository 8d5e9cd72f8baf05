"""The listening socket an API process of ``tradeguard run`` inherits: taken as the TCP socket it is, so that
asyncio turns Nagle's algorithm off on its connections (uvicorn's ``fd=`` takes it for a Unix socket, and a
client's next request on a kept-alive connection then waited out the peer's delayed ACK); ``run``'s wait
for a process that answers on it before it says ready; and, with several processes on Linux, a listening
socket of each process's own that the kernel spreads the connections over."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from app.cli import SPREAD_BY_KERNEL, _ApiProcesses, inherited_socket, spread_listener
from app.errors import TradeGuardError


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


@pytest.mark.skipif(not SPREAD_BY_KERNEL, reason="SO_REUSEPORT spreads connections on Linux only")
def test_the_kernel_spreads_connections_over_each_processs_own_listener() -> None:
    """``run --workers 2`` on Linux: the parent holds the port bound with SO_REUSEPORT and does not listen;
    each API process listens on a socket of its own in that group (:func:`spread_listener`), and the
    kernel gives each of them a share of the connections."""
    stop = threading.Event()
    api = _ApiProcesses(cast(Any, SimpleNamespace(host="127.0.0.1", port=0, eager=False)), 2, stop)
    assert api.spread
    address = api.sock.getsockname()
    with socket.socket() as probe:  # nothing listens yet: refused at once, not left in a backlog
        with pytest.raises(ConnectionRefusedError):
            probe.connect(address)
    listeners = [spread_listener(socket.socket(fileno=os.dup(api.sock.fileno()))) for _ in range(2)]
    clients = []
    try:
        for listener in listeners:
            assert listener.getsockname() == address
            listener.setblocking(False)
        for _ in range(64):
            client = socket.create_connection(address)
            clients.append(client)
        accepted = [0, 0]
        deadline = time.monotonic() + 10
        while sum(accepted) < 64 and time.monotonic() < deadline:
            for i, listener in enumerate(listeners):
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.close()
                accepted[i] += 1
        assert sum(accepted) == 64
        assert min(accepted) >= 8, accepted  # a hash, not one winner (binomial: below 8 of 64 is < 1e-6)
    finally:
        for c in clients:
            c.close()
        for listener in listeners:
            listener.close()
        api.sock.close()


@pytest.mark.skipif(not SPREAD_BY_KERNEL, reason="SO_REUSEPORT spreads connections on Linux only")
def test_spread_processes_bind_a_host_name_as_the_shared_socket_did() -> None:
    """IPv4, as ``socket.create_server`` binds by default: ``localhost`` is 127.0.0.1, not ::1."""
    api = _ApiProcesses(
        cast(Any, SimpleNamespace(host="localhost", port=0, eager=False)), 2, threading.Event()
    )
    try:
        assert api.spread and api.sock.family == socket.AF_INET
        assert api.sock.getsockname()[0] == "127.0.0.1"
    finally:
        api.sock.close()


@pytest.mark.skipif(not SPREAD_BY_KERNEL, reason="SO_REUSEPORT spreads connections on Linux only")
def test_a_port_another_service_listens_on_is_refused() -> None:
    """A second ``run --workers 2`` on the port of a running one fails as a shared socket's bind did, instead
    of joining the first one's SO_REUSEPORT group and taking a share of its connections."""
    first = _ApiProcesses(
        cast(Any, SimpleNamespace(host="127.0.0.1", port=0, eager=False)), 2, threading.Event()
    )
    listener = spread_listener(socket.socket(fileno=os.dup(first.sock.fileno())))  # its API process
    port = first.sock.getsockname()[1]
    try:
        with pytest.raises(OSError) as refused:
            _ApiProcesses(
                cast(Any, SimpleNamespace(host="127.0.0.1", port=port, eager=False)), 2, threading.Event()
            )
        assert refused.value.errno == errno.EADDRINUSE
    finally:
        listener.close()
        first.sock.close()


def test_one_api_process_listens_on_the_parents_socket() -> None:
    """With one process nothing is spread: the parent's listening socket keeps the connections that arrive
    while that process restarts in its backlog."""
    api = _processes(threading.Event())
    try:
        assert not api.spread
        with socket.create_connection(api.sock.getsockname(), timeout=5):
            pass  # accepted into the backlog, though no process serves yet
    finally:
        api.sock.close()
