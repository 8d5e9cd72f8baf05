"""One listening socket served by several API processes (``tradeguard run --workers N``), which share its
connections out evenly (:class:`TurnTakingServer`)."""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import select
import socket
import struct
from typing import Any

import uvicorn

log = logging.getLogger("tradeguard.serving")

#: Seconds a process stops taking connections after ``accept`` failed for want of resources (descriptors,
#: memory), as asyncio's own servers do: the connection waits in the backlog for a process that has room.
PAUSE_AFTER_FAILED_ACCEPT = 1.0


#: How long a process that has more connections than another leaves a new one to the others, and how many
#: times in a row, before it takes it anyway (the others may be busy, or hung).
DECLINE_PAUSE = 0.002
MAX_DECLINES = 5
#: How often a process publishes its connection count (closed connections included) between connections.
PUBLISH_EVERY = 0.1


class Loads:
    """The open connections of each API process, in memory the processes share (a ``memfd`` the parent made
    and passes to each): one 64-bit count per process slot, written by that process only."""

    def __init__(self, fd: int, slots: int | None) -> None:
        self.fd = fd
        size = os.fstat(fd).st_size
        self.slots = size // 8 if slots is None else slots
        self.map = mmap.mmap(fd, 8 * self.slots)

    @classmethod
    def create(cls, slots: int) -> Loads:
        fd = os.memfd_create("tradeguard-loads")  # passed to the API processes (pass_fds)
        os.ftruncate(fd, 8 * slots)
        return cls(fd, slots)

    def set(self, slot: int, count: int) -> None:
        struct.pack_into("q", self.map, 8 * slot, count)

    def get(self, slot: int) -> int:
        count: int = struct.unpack_from("q", self.map, 8 * slot)[0]
        return count

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)

    def fewest_elsewhere(self, slot: int) -> int:
        """The fewest connections another process has (none: a very large number)."""
        return min((self.get(i) for i in range(self.slots) if i != slot), default=1 << 62)


class TurnTakingServer(uvicorn.Server):
    """A uvicorn server that takes the connections of a listening socket it shares with the service's other
    API processes one per turn of its event loop, and leaves a new one to another process that has fewer
    open connections (:class:`Loads`) for a few turns (:data:`MAX_DECLINES`) before it takes it anyway.

    Measured with two processes and 32 keep-alive clients (issue 8):
    - asyncio's own server accepts every connection waiting when its socket wakes it, so the process that
      woke first took a whole burst: 32/0, 23/9 and 19/13 in three runs;
    - the kernel's SO_REUSEPORT hash (a listener per process), used before: 10/21 in some runs, and the busier
      process's ack p99 was 269 ms against 88 ms at 16/16;
    - one a turn without the counts: a burst 13/19 to 15/17, but connections opened one after another went
      to whichever process woke first (7/25 in the benchmark);
    - with the counts: 16/16 both ways.

    The socket stays the parent's: a process that exits leaves the connections not yet taken in the
    backlog, for the others."""

    def __init__(
        self, config: uvicorn.Config, listener: socket.socket, loads: Loads | None = None, slot: int = 0
    ) -> None:
        super().__init__(config)
        self.listener = listener
        self.loads, self.slot = loads, slot
        self._connecting: set[asyncio.Task[Any]] = set()
        self._declined = 0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's start-up, and no server of asyncio's own
        if self.should_exit:
            return
        self.listener.setblocking(False)
        loop = asyncio.get_running_loop()
        self._listen(loop)
        if self.loads is not None:
            self._publish(loop)

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

    def _open(self) -> int:
        return len(self.server_state.connections) + len(self._connecting)

    def _publish(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.loads is not None
        self.loads.set(self.slot, self._open())
        if not self.should_exit:
            loop.call_later(PUBLISH_EVERY, self._publish, loop)

    def _take_one(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.loads is not None:
            mine = self._open()
            self.loads.set(self.slot, mine)
            if mine > self.loads.fewest_elsewhere(self.slot) and self._declined < MAX_DECLINES:
                # another process has fewer: leave this one to it a moment
                self._declined += 1
                loop.remove_reader(self.listener.fileno())
                loop.call_later(DECLINE_PAUSE, self._after_declining, loop)
                return
        self._declined = 0
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
        if self.loads is not None:
            self.loads.set(self.slot, self._open())

    def _after_declining(self, loop: asyncio.AbstractEventLoop) -> None:
        """Listen again after leaving a connection to the others; if one of them took it, the next
        connection starts a new count of turns left to them."""
        if not select.select([self.listener], [], [], 0)[0]:
            self._declined = 0
        self._listen(loop)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        self._connecting.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.info("a connection closed before it was served: %s", exc)


__all__ = ["Loads", "TurnTakingServer"]
