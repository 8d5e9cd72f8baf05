"""How values are written in JSON (the API, webhooks, timelines): RFC 3339 UTC times and ``0x`` hex ids."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import overload

#: Unix seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
MIN_RFC3339 = -62_135_596_800
MAX_RFC3339 = 253_402_300_799


@overload
def rfc3339(value: int | datetime) -> str: ...
@overload
def rfc3339(value: None) -> None: ...
def rfc3339(value: int | datetime | None) -> str | None:
    """Unix seconds or an aware datetime as RFC 3339 UTC (``2025-01-02T03:04:05Z``); ``None`` stays None."""
    if value is None:
        return None
    if isinstance(value, int):
        return _unix_rfc3339(value)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=65_536)
def _unix_rfc3339(value: int) -> str:
    """:func:`rfc3339` of Unix seconds, remembered: an order page writes eight times per order, and orders
    share their deadlines' seconds (a fifth of a page's CPU was here, issue 8)."""
    # RFC 3339 has four-digit years: a stored time outside them (only rows older than the funding rules
    # can hold one) is shown at the nearest end rather than failing every read that lists it
    value = min(max(value, MIN_RFC3339), MAX_RFC3339)
    return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")


def hex32(value: bytes | int) -> str:
    """A 32-byte value (an order id, a hash) as lower-case ``0x`` hex."""
    raw = value.to_bytes(32, "big") if isinstance(value, int) else value
    return "0x" + raw.hex()
