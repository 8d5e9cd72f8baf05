"""Signatures on the webhooks TradeGuard sends to merchants (SPEC §6).

``TradeGuard-Signature: t=<unix>,v1=<hex>`` where ``hex`` is HMAC-SHA256(secret, ``"<t>." + body``). The
timestamp is signed with the body so a captured delivery cannot be replayed outside the tolerance window;
several ``v1`` entries may be sent while a secret is rotated, and any one matching is enough.
"""

from __future__ import annotations

import hmac

SIGNATURE_HEADER = "TradeGuard-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """The ``TradeGuard-Signature`` value for ``body`` sent at unix time ``timestamp``."""
    if not secret:
        raise ValueError("the webhook secret is empty")
    if timestamp < 0:
        raise ValueError("timestamp must be a unix time")
    return f"t={timestamp},v1={_mac(secret, body, timestamp)}"


def verify_webhook(
    secret: str, body: bytes, header: str | None, now: int, tolerance: int = DEFAULT_TOLERANCE_SECONDS
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` at a time within ``tolerance`` seconds of ``now``.

    Never raises on bad input: a missing, malformed, stale or non-matching header is simply ``False``.
    """
    if not secret or not header:
        return False
    timestamp: int | None = None
    candidates: list[bytes] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not (value.isascii() and value.isdigit()) or len(value) > 19:
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value.lower().encode("utf-8"))
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance:
        return False
    expected = _mac(secret, body, timestamp).encode("ascii")
    # Compare against every candidate (no early exit) so timing does not tell which entry matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    return matched


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.digest(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, "sha256").hex()
