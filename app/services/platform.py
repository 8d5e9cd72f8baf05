"""The platform settings a new order is checked against, read from the escrow (the record of them).

:func:`limits` gathers what :func:`app.domain.order_rules.funding_violations` needs for one order's token and
tax recipient: the allowlist, the recipient's tax cap, the commission rate, the oracle threshold and how many
oracles count now, the pause flag, and how much of the token can exist: its total supply, or on a dev chain
(where tUSD's faucet mints on request) the room left below ``2^256``.
"""

from __future__ import annotations

from app.domain.order_rules import PlatformLimits, usable_oracles
from app.services.runtime import Runtime


def limits(rt: Runtime, token: str, tax_recipient: str, now: int) -> PlatformLimits:
    """The escrow's settings for an order in ``token`` paying tax to ``tax_recipient``, funded at ``now``."""
    fns = rt.escrow.contract.functions
    config = rt.escrow.config()
    erc20 = rt.chain.contract("TestUSD", token)
    supply = int(rt.chain.call(erc20.functions.totalSupply()))
    return PlatformLimits(
        token_allowed=bool(rt.chain.call(fns.isTokenAllowed(token))),
        commission_bps=int(config["commission_bps"]),
        tax_cap=int(rt.chain.call(fns.taxCap(tax_recipient))),
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
