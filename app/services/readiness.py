"""Readiness of this process (``GET /readyz``): the database and the node answer, and the chain is still the
one the database records, with no halt in force (:mod:`app.services.chain_guard`).

The relayer's gas wallet must hold enough for ``settings.gas_wallet_min_gas`` at the node's gas price: an
empty wallet stops every chain action, so it is a readiness failure (``gas_wallet_low``), not a log line.

Each dependency is asked on its own so that the answer names every one that failed; the database is asked in
a read transaction (a probe never takes the write lock), and the guard only once both answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from app.db.session import read_transaction
from app.services import chain_guard
from app.services.chain_guard import Halt
from app.services.runtime import Runtime


@dataclass(frozen=True)
class Readiness:
    """What each check found (``ok …`` or why not), and the halt in force if that is what stops work."""

    checks: dict[str, str]
    halt: Halt | None = None

    @property
    def ready(self) -> bool:
        """Every check answered ``ok``."""
        return all(v.startswith("ok") for v in self.checks.values())


def check(rt: Runtime) -> Readiness:
    """Ask the database, the node, then the chain guard; never raises (a failure is a check's answer)."""
    checks: dict[str, str] = {}
    try:
        with read_transaction(rt.db) as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        checks["chain"] = f"ok (block {rt.chain.block_number()})"
    except Exception as exc:  # any transport error means not ready
        checks["chain"] = f"error: {type(exc).__name__}"
    if not all(v.startswith("ok") for v in checks.values()):
        return Readiness(checks)
    try:
        halt = chain_guard.check(rt)
    except Exception as exc:  # the node or the database went away between the checks
        checks["chain_guard"] = f"error: {type(exc).__name__}"
        return Readiness(checks)
    if halt is not None:
        checks["chain_guard"] = f"halted: {halt.code}"
        return Readiness(checks, halt)
    checks["chain_guard"] = "ok"
    checks["gas_wallet"] = _gas_wallet(rt)
    return Readiness(checks)


def _gas_wallet(rt: Runtime) -> str:
    """``ok`` while the relayer's balance pays for ``settings.gas_wallet_min_gas`` at the node's price."""
    try:
        balance = rt.chain.balance(rt.relayer.address)
        price = rt.chain.gas_price()
    except Exception as exc:  # the node went away between the checks
        return f"error: {type(exc).__name__}"
    need = rt.settings.gas_wallet_min_gas * price
    if balance < need:
        return (
            f"low: {rt.relayer.address} holds {balance} wei, below {need} wei "
            f"({rt.settings.gas_wallet_min_gas} gas at {price} wei)"
        )
    return f"ok ({balance} wei)"
