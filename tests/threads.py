"""Running test code on several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence


def run_threads(targets: Sequence[Callable[[], None]], timeout: float = 60) -> list[BaseException]:
    """Run each target on a thread of its own, all started before any is waited for; the exceptions they
    raised (the test says what it expects of them). A thread running after ``timeout`` fails the test."""
    errors: list[BaseException] = []
    lock = threading.Lock()

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), f"a thread still runs after {timeout} s"
    return errors
