"""The listening socket an API process of ``tradeguard run`` inherits: taken as the TCP socket it is, so that
asyncio turns Nagle's algorithm off on its connections (uvicorn's ``fd=`` takes it for a Unix socket, and a
client's next request on a kept-alive connection then waited out the peer's delayed ACK); and ``run``'s wait
for a process that answers on it before it says ready."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from app.cli import inherited_socket
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
    from app.cli import _ApiProcesses

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
