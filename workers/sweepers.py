"""The default mode's workers: one thread per sweep in the service's own process (no broker).

``tradeguard run`` without ``TRADEGUARD_BROKER_URL`` starts these, so an HTTP request only validates, stores
and answers: its ``kick`` wakes the sweep's thread instead of running the sweep inside the request. Each
thread runs its sweep when woken or every ``sweep_seconds``; a sweep that reports more work (the relayer
sent or settled transactions, the inbox processed a full page) runs again at once. The sweeps run at the
same time as each other, as Celery workers would: the relayer sends while the indexer reads and the inbox
signs. On the in-process chain (eth-tester is single-threaded) they take turns with requests on the
runtime's lock.

Without an active :class:`Sweepers` (the test suite, and anything that calls the tasks directly) ``kick``
keeps Celery's eager behaviour: the sweep runs in the caller.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext

log = logging.getLogger(__name__)

#: A sweep: runs once, returns whether it should run again at once (True: it left work behind), after a
#: pause of that many seconds (a float: something to look at again soon, such as a transaction not mined
#: yet), or only when woken or every ``every`` seconds (False).
Step = Callable[[], bool | float]

#: Pause after a failed sweep before the next try, doubled per failure in a row up to the cap (a node or a
#: database that is down is not hammered; the database is the record, so nothing is lost meanwhile).
FAILURE_PAUSE_SECONDS = 1.0
FAILURE_PAUSE_CAP_SECONDS = 30.0

_active: Sweepers | None = None
_active_guard = threading.Lock()
#: In an API process of ``tradeguard run --workers N`` (no broker): the pipe to the parent that runs the
#: sweepers; a kick is the sweep's name and a newline on it.
_forward_fd: int | None = None


class Sweepers:
    """Threads that run the sweeps in this process until ``stop`` is set."""

    def __init__(
        self,
        steps: Mapping[str, Step],
        every: float,
        stop: threading.Event,
        lock: threading.Lock | None = None,
        nice: int = 0,
    ) -> None:
        self.steps = dict(steps)
        self.every = every
        self.stop = stop
        self.lock = lock
        self.nice = nice
        self.wakes = {name: threading.Event() for name in self.steps}
        self.threads: list[threading.Thread] = []
        #: completed runs per sweep (tests and the benchmark read them)
        self.runs = dict.fromkeys(self.steps, 0)

    def wake(self, name: str) -> bool:
        """Run sweep ``name`` soon; False if this set has no such sweep."""
        event = self.wakes.get(name)
        if event is None:
            return False
        event.set()
        return True

    def start(self) -> Sweepers:
        global _active
        with _active_guard:
            if _active is not None and not _active.stop.is_set():
                raise RuntimeError("background sweepers are already running in this process")
            _active = self
        for name in self.steps:
            thread = threading.Thread(target=self._loop, args=(name,), name=f"sweep-{name}", daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def join(self, timeout: float = 30.0) -> None:
        """Stop the threads and wait for the sweeps in progress to end."""
        global _active
        self.stop.set()
        for event in self.wakes.values():
            event.set()
        for thread in self.threads:
            thread.join(timeout)
        with _active_guard:
            if _active is self:
                _active = None

    def _loop(self, name: str) -> None:
        wake, step = self.wakes[name], self.steps[name]
        lower_priority(self.nice)
        # every sweep runs once at start: work stored before a restart is picked up at once
        again: bool | float = True
        failures = 0
        while not self.stop.is_set():
            if again is not True:
                wake.wait(self.every if again is False else float(again))
                if self.stop.is_set():
                    return
            wake.clear()
            try:
                with self._turn():
                    again = step()
                failures = 0
            except Exception as exc:  # the next sweep retries; the database is the record
                failures += 1
                pause = min(FAILURE_PAUSE_SECONDS * 2 ** (failures - 1), FAILURE_PAUSE_CAP_SECONDS)
                log.warning("%s sweep failed (%s: %s); again in %.0f s", name, type(exc).__name__, exc, pause)
                again = True  # after the pause: the work it failed on is still there
                self.stop.wait(pause)
            self.runs[name] += 1

    @contextmanager
    def _turn(self) -> Iterator[None]:
        with self.lock if self.lock is not None else nullcontext():
            yield


#: Linux schedules each thread by a nice value of its own (``setpriority`` of its thread id); elsewhere that
#: call would lower the whole process, requests included.
THREAD_NICE = sys.platform.startswith("linux")


def lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority by ``nice`` steps (at most to 19), on Linux; else nothing.

    The sweeps' threads take it (``TRADEGUARD_SWEEP_NICE``, 10 by default): when the cores are busy the
    kernel gives them to the API processes first, and the sweeps catch up in the time left. Measured on a
    burst of 320 captures from 32 clients (issue 8, bench_service, interleaved), nice 10 against 0:
    - captures without an Idempotency-Key: acks/s up (513-522 against 394-478; medians of 3 pairs, 511
      against 460), their p99 within the runs' scatter;
    - captures with one, as clients send them: no gain (acks/s 239 and 239 against 268 and 235; p99 209
      and 194 against 183 and 193 ms), capture-to-delivered p99 higher (480 and 404 against 325 and 338 ms).
    A lowered thread that holds the database's write lock also keeps the requests waiting for that lock
    longer (priority inversion). That was while each capture waited for a second write, its kept answer;
    once a capture's only write is its store (3 rounds, 0 / 10 / 19): acks/s 335 / 383 / 414, ack p99
    168 / 138 / 141 ms, capture-to-delivered p99 1151 / 1024 / 938 ms. Hence 10 by default."""
    if nice <= 0 or not THREAD_NICE:
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # a sandbox that forbids it: the sweep still runs, at the requests' priority
        log.warning("cannot lower this thread's priority (%s); it runs at the priority it has", exc)


def wake(name: str) -> bool:
    """Wake sweep ``name`` of this process's running sweepers, or of the parent's (:func:`forward_to`);
    False when neither exists."""
    with _active_guard:
        current = _active if _active is not None and not _active.stop.is_set() else None
        forward = _forward_fd
    if current is not None:
        return current.wake(name)
    if forward is not None:
        try:
            os.write(forward, name.encode() + b"\n")
        except BlockingIOError:  # a full pipe: the sweeps have plenty of kicks to read already
            pass
        except OSError as exc:  # the parent is gone: its successor sweeps every ``sweep_seconds`` anyway
            log.warning("kick %s: %s", name, exc)
        return True
    return False


def forward_to(fd: int | None) -> None:
    """Send this process's kicks to the sweepers of another process over the pipe ``fd`` (non-blocking:
    a request never waits on it); None stops forwarding."""
    global _forward_fd
    if fd is not None:
        os.set_blocking(fd, False)
    with _active_guard:
        _forward_fd = fd


def listen(fd: int, stop: threading.Event) -> threading.Thread:
    """Wake this process's sweepers for every kick read from the pipe ``fd`` until ``stop`` (or EOF)."""

    def loop() -> None:
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            pending = b""
            while not stop.is_set():
                chunk = pipe.read(4096)
                if not chunk:
                    return
                pending += chunk
                *names, pending = pending.split(b"\n")
                for name in set(names):
                    wake(name.decode(errors="replace"))

    thread = threading.Thread(target=loop, name="sweep-kicks", daemon=True)
    thread.start()
    return thread


def running() -> bool:
    with _active_guard:
        return _active is not None and not _active.stop.is_set()


__all__ = ["lower_priority", "Step", "Sweepers", "forward_to", "listen", "running", "wake"]
