"""One listening socket served by several API processes (``tradeguard run --workers N``), each taking its
connections one at a time (:class:`TurnTakingServer`)."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import uvicorn

log = logging.getLogger("tradeguard.serving")

#: Seconds a process stops taking connections after ``accept`` failed for want of resources (descriptors,
#: memory), as asyncio's own servers do: the connection waits in the backlog for a process that has room.
PAUSE_AFTER_FAILED_ACCEPT = 1.0


class TurnTakingServer(uvicorn.Server):
    """A uvicorn server that takes the connections of a listening socket it shares with the service's other
    API processes one per turn of its event loop.

    asyncio's own server accepts every connection waiting when its socket wakes it (up to the backlog), so
    the process that woke first took a whole burst of keep-alive clients: 32/0, 23/9 and 19/13 between two
    processes in three runs (issue 8), and the busier process ran out of its core while the other idled.
    Taking one, then going back to its loop, every process that is free takes the next: a burst is shared
    out in turn, and a process busy with its requests takes fewer new ones. The kernel's SO_REUSEPORT hash
    that replaced it split 32 clients 10/21 in some runs (ack p99 269 ms against 88 ms at 16/16).

    The socket stays the parent's: a process that exits leaves the connections not yet taken in the
    backlog, for the others."""

    def __init__(self, config: uvicorn.Config, listener: socket.socket) -> None:
        super().__init__(config)
        self.listener = listener
        self._connecting: set[asyncio.Task[Any]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's start-up, and no server of asyncio's own
        if self.should_exit:
            return
        self.listener.setblocking(False)
        self._listen(asyncio.get_running_loop())

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().remove_reader(self.listener.fileno())  # stop taking connections first
        await super().shutdown(sockets=sockets)

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.should_exit:
            loop.add_reader(self.listener.fileno(), self._take_one, loop)

    def _protocol(self) -> asyncio.Protocol:
        """A connection's HTTP protocol, made as uvicorn's own servers make it."""
        config = self.config
        protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return protocol

    def _take_one(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another process took it, or the client gave up
        except OSError as exc:  # out of descriptors or memory: leave the backlog to the others a while
            log.warning("accepting a connection failed (%s); pausing %.0f s", exc, PAUSE_AFTER_FAILED_ACCEPT)
            loop.remove_reader(self.listener.fileno())
            loop.call_later(PAUSE_AFTER_FAILED_ACCEPT, self._listen, loop)
            return
        conn.setblocking(False)
        task = loop.create_task(loop.connect_accepted_socket(self._protocol, conn))
        self._connecting.add(task)
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        self._connecting.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.info("a connection closed before it was served: %s", exc)


__all__ = ["TurnTakingServer"]
