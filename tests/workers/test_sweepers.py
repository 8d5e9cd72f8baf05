"""The default mode's background sweepers (workers/sweepers.py): a thread per sweep, woken by kicks, backing
off after a failure. The whole service in that mode: tests/api/test_background_mode.py."""

from __future__ import annotations

import os
import threading
import time

import pytest

from workers import sweepers


def test_a_kick_wakes_the_sweep_and_a_failing_sweep_backs_off_and_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sweepers, "FAILURE_PAUSE_SECONDS", 0.01)
    ran = threading.Event()
    calls: list[str] = []

    def flaky() -> bool:
        calls.append("flaky")
        if len(calls) == 1:
            raise RuntimeError("node down")
        ran.set()
        return False

    stop = threading.Event()
    # `every` is an hour: only the start-up pass and kicks can run the sweep within the test
    running = sweepers.Sweepers({"flaky": flaky}, every=3600, stop=stop).start()
    try:
        assert sweepers.running()
        assert sweepers.wake("flaky") and not sweepers.wake("nothing-by-that-name")
        assert ran.wait(30), calls  # the failure was logged and the sweep tried again after its pause
        assert calls == ["flaky", "flaky"]
    finally:
        running.join()
    assert not sweepers.running() and not sweepers.wake("flaky")  # stopped: kicks go back to Celery


def test_a_sweep_that_left_work_runs_again_at_once() -> None:
    done = threading.Event()
    passes: list[int] = []

    def backlog() -> bool:
        passes.append(len(passes))
        if len(passes) == 3:
            done.set()
        return len(passes) < 3  # a page of work each pass, three pages in all

    running = sweepers.Sweepers({"backlog": backlog}, every=3600, stop=threading.Event()).start()
    try:
        assert done.wait(30), passes
    finally:
        running.join()
    assert passes == [0, 1, 2]


def test_two_sets_of_sweepers_refuse_to_run_in_one_process() -> None:
    first = sweepers.Sweepers({"a": lambda: False}, every=3600, stop=threading.Event()).start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            sweepers.Sweepers({"a": lambda: False}, every=3600, stop=threading.Event()).start()
    finally:
        first.join()


def test_a_sweep_waiting_on_something_in_flight_looks_again_after_its_pause_without_a_kick() -> None:
    """The relayer's case: a transaction sent but its receipt not readable yet. Nothing will kick it, so
    the sweep says how soon to look again (a float) instead of sleeping until the next kick."""
    done = threading.Event()
    passes: list[float] = []

    def in_flight() -> bool | float:
        passes.append(time.monotonic())
        if len(passes) == 3:
            done.set()
            return False
        return 0.05

    running = sweepers.Sweepers({"relay": in_flight}, every=3600, stop=threading.Event()).start()
    try:
        assert done.wait(30), passes
    finally:
        running.join()
    assert len(passes) == 3


def _my_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sweepers.THREAD_NICE, reason="a thread's own nice value is Linux's")
@pytest.mark.parametrize("nice", [0, 5, 40])
def test_the_sweeps_threads_run_at_a_lower_priority_and_nothing_else_does(nice: int) -> None:
    """Each sweep's thread lowers its own priority by ``nice`` (capped at 19); the thread that started the
    sweepers (in the service, the one that starts and restarts the API processes) keeps its own."""
    base = _my_nice()
    seen: list[int] = []
    done = threading.Event()

    def probe() -> bool:
        seen.append(_my_nice())
        done.set()
        return False

    running = sweepers.Sweepers({"probe": probe}, every=3600, stop=threading.Event(), nice=nice).start()
    try:
        assert done.wait(30)
    finally:
        running.join()
    assert seen == [min(19, base + nice)]
    assert _my_nice() == base
    # a thread started afterwards by the caller (an API process's spawner) is not lowered either
    later: list[int] = []
    spawner = threading.Thread(target=lambda: later.append(_my_nice()))
    spawner.start()
    spawner.join()
    assert later == [base]


@pytest.mark.skipif(not sweepers.THREAD_NICE, reason="a thread's own nice value is Linux's")
def test_a_sweep_runs_when_its_priority_cannot_be_lowered(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_args: object) -> None:
        raise PermissionError("setpriority: operation not permitted")

    monkeypatch.setattr(sweepers.os, "setpriority", refused)
    ran = threading.Event()

    def step() -> bool:
        ran.set()
        return False

    running = sweepers.Sweepers({"a": step}, every=3600, stop=threading.Event(), nice=10).start()
    try:
        assert ran.wait(30)
    finally:
        running.join()
