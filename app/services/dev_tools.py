"""Dev chains only: mint test tokens and move the chain clock (``/v1/dev/...``, and the demo).

Both refuse to run while chain work is halted (:func:`app.services.chain_guard.require`). Whether the dev
routes are on at all (``rt.is_dev``) is for the caller to check first: off, they do not exist (404).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import InvalidInput
from app.services import chain_guard
from app.services.runtime import Runtime


def faucet(rt: Runtime, currency: str, address: str, amount: int) -> str:
    """Mint ``amount`` base units of the test token ``currency`` to ``address``; the transaction hash.

    An unknown currency is a 422 ``unknown_currency``; a revert (e.g. the zero address) is the token's error.
    """
    chain_guard.require(rt)
    token = rt.token_by_symbol(currency)
    if token is None:
        raise InvalidInput("unknown_currency", f"no token {currency!r}")
    contract = rt.chain.contract("TestUSD", token.address)
    deployer = rt.dev_accounts["deployer"]
    with _one_sender_at_a_time(rt):
        receipt = rt.chain.send(contract.functions.faucet(address, amount), deployer)
    return "0x" + bytes(receipt["transactionHash"]).hex()


@contextmanager
def _one_sender_at_a_time(rt: Runtime) -> Iterator[None]:
    """Hold the state directory's faucet lock: one faucet send at a time across this host's API processes.

    The deployer's nonce is counted in each process; sending at once, two processes pick the same one. The
    node refuses the second (retried), or, when both mint the same amount to the same address, takes the
    second as the first resent ("already known") and one mint is lost. Under the load test's setup the
    retries also left nonce gaps that stalled a send until its receipt wait ran out. A dev tool that waits
    for its receipt anyway can take turns."""
    rt.settings.state_dir.mkdir(parents=True, exist_ok=True)
    with open(rt.settings.state_dir / "faucet.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def advance_time(rt: Runtime, seconds: int) -> int:
    """Move the chain clock ``seconds`` forward; the new chain time (the caller wakes the keeper)."""
    chain_guard.require(rt)
    return rt.chain.advance_time(seconds)
