"""The platform settings a new order is checked against, read from the escrow (the record of them).

:func:`limits` gathers what :func:`app.domain.order_rules.funding_violations` needs for one order's token and
tax recipient: the allowlist, the recipient's tax cap, the commission rate, the oracle threshold and how many
oracles count now, the pause flag, and how much of the token can exist: its total supply, or on a dev chain
(where tUSD's faucet mints on request) the room left below ``2^256``.

:func:`public_info` is what any client is told of the platform (``GET /v1/chain``): the EIP-712 domain and
types it signs with (SPEC §4), the escrow, the settlement tokens and the settings new orders get.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from app.chain import eip712
from app.domain.order_rules import PlatformLimits, usable_oracles
from app.services import chain_guard
from app.services.runtime import Runtime


@dataclass(frozen=True)
class _Read:
    """What :func:`limits` read from the chain for one (escrow, token, tax recipient)."""

    config: dict[str, Any]
    token_allowed: bool
    tax_cap: int
    supply: int


_cache: dict[tuple[str, str, str], tuple[float, _Read]] = {}
_cache_lock = threading.Lock()
#: Entries kept at most (one per token and tax recipient in use; a handful in practice).
_CACHE_SIZE = 256


def _read(rt: Runtime, token: str, tax_recipient: str) -> _Read:
    """The chain's answers, reused for ``settings.platform_cache_seconds``: a burst of orders costs the
    node four calls, not four per order. They only pre-check: the funding itself is simulated against the
    chain as it is then, so an answer that old refuses or admits an order early, and never funds one."""
    key = (rt.escrow.address, token, tax_recipient)
    ttl = rt.settings.platform_cache_seconds
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key) if ttl > 0 else None
    if hit is not None and hit[0] > now:
        return hit[1]
    fns = rt.escrow.contract.functions
    erc20 = rt.chain.contract("TestUSD", token)
    read = _Read(
        config=rt.escrow.config(),
        token_allowed=bool(rt.chain.call(fns.isTokenAllowed(token))),
        tax_cap=int(rt.chain.call(fns.taxCap(tax_recipient))),
        supply=int(rt.chain.call(erc20.functions.totalSupply())),
    )
    if ttl > 0:
        with _cache_lock:
            if len(_cache) >= _CACHE_SIZE:
                _cache.clear()
            _cache[key] = (now + ttl, read)
    return read


def forget(rt: Runtime) -> None:
    """Drop what :func:`limits` remembers of this escrow (the next order reads the chain again)."""
    with _cache_lock:
        for key in [k for k in _cache if k[0] == rt.escrow.address]:
            del _cache[key]


def limits(rt: Runtime, token: str, tax_recipient: str, now: int) -> PlatformLimits:
    """The escrow's settings for an order in ``token`` paying tax to ``tax_recipient``, funded at ``now``
    (read at most every ``settings.platform_cache_seconds``)."""
    read = _read(rt, token, tax_recipient)
    config, supply = read.config, read.supply
    return PlatformLimits(
        token_allowed=read.token_allowed,
        commission_bps=int(config["commission_bps"]),
        tax_cap=read.tax_cap,
        threshold=int(config["threshold"]),
        usable_oracles=usable_oracles(
            int(config["active_oracles"]),
            int(config["pending_oracles"]),
            int(config["pending_until"]),
            now,
        ),
        paused=bool(config["paused"]),
        token_supply=(2**256 - 1 - supply) if rt.chain.is_dev_chain else supply,
    )


def public_info(rt: Runtime) -> dict[str, Any]:
    """The chain, escrow, signing domain and types, tokens and platform settings; refused while halted."""
    chain_guard.require(rt)
    config = rt.escrow.config()
    return {
        "chain_id": rt.chain.chain_id,
        "escrow": rt.escrow.address,
        "block_number": rt.chain.block_number(),
        "chain_time": rt.chain.now(rt.settings.head_cache_seconds),
        "dev": rt.is_dev,
        "domain": eip712.domain(rt.chain.chain_id, rt.escrow.address),
        "types": {"EIP712Domain": eip712.EIP712_DOMAIN, **eip712.TYPES},
        "milestones": {"SHIPPED": 1, "DELIVERED": 2},
        "decisions": {"CONFIRM_RECEIPT": 1, "OPEN_DISPUTE": 2},
        "tokens": [
            {"address": t.address, "currency": t.symbol, "decimals": t.decimals} for t in rt.tokens.values()
        ],
        "commission_bps": config["commission_bps"],
        "default_hold_seconds": rt.settings.hold_seconds,
        "relayer": rt.relayer.address,
        "platform_oracle": rt.oracle.address if rt.oracle else None,
    }
