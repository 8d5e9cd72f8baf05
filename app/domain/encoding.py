"""How values are written in JSON (the API, webhooks, timelines): RFC 3339 UTC times and ``0x`` hex ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def rfc3339(value: int | datetime) -> str: ...
@overload
def rfc3339(value: None) -> None: ...
def rfc3339(value: int | datetime | None) -> str | None:
    """Unix seconds or an aware datetime as RFC 3339 UTC (``2025-01-02T03:04:05Z``); ``None`` stays None."""
    if value is None:
        return None
    at = datetime.fromtimestamp(value, UTC) if isinstance(value, int) else value.astimezone(UTC)
    return at.isoformat().replace("+00:00", "Z")


def hex32(value: bytes | int) -> str:
    """A 32-byte value (an order id, a hash) as lower-case ``0x`` hex."""
    raw = value.to_bytes(32, "big") if isinstance(value, int) else value
    return "0x" + raw.hex()
