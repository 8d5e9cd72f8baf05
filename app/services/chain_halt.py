"""What stops chain work (:class:`Halt`), and one process's cached view of it (:class:`GuardState`, which
the runtime holds); the checks themselves are :mod:`app.services.chain_guard`'s."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from app.errors import ChainHalted, ChainMismatch


@dataclass(frozen=True)
class Halt:
    """Why chain work is stopped: ``code`` (``chain_mismatch``, ``deep_reorg``), a sentence, the facts."""

    code: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def error(self) -> ChainHalted:
        """A fresh exception for this halt (one per raise, so tracebacks do not pile up)."""
        if self.code == "chain_mismatch":
            return ChainMismatch(self.reason, **self.details)
        return ChainHalted(self.code, self.reason, **self.details)


@dataclass
class GuardState:
    """One process's cached view: when the chain was last checked, and what was wrong then."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    checked_at: float | None = None
    halt: Halt | None = None
    expected: tuple[int, str] | None = None


__all__ = ["GuardState", "Halt"]
