"""Tax corridors: (destination country, goods category) → tax bps and the tax recipient (platform config).

Kept in the ``kv`` table under ``corridors``; the most specific match wins (``*`` is a wildcard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import is_address, to_checksum_address
from sqlalchemy.orm import Session

from app.db.models import KeyValue
from app.db.session import read_transaction, transaction
from app.errors import InvalidInput
from app.services.runtime import Runtime

KEY = "corridors"
MAX_TAX_BPS = 5000


@dataclass(frozen=True)
class Corridor:
    """One corridor row."""

    country: str
    category: str
    tax_bps: int
    recipient: str

    def as_json(self) -> dict[str, Any]:
        return {
            "country": self.country,
            "category": self.category,
            "tax_bps": self.tax_bps,
            "recipient": self.recipient,
        }


def _parse(item: dict[str, Any]) -> Corridor:
    country = str(item.get("country", "")).upper()
    category = str(item.get("category", "")).lower()
    bps = item.get("tax_bps")
    recipient = str(item.get("recipient", ""))
    if not (country == "*" or (len(country) == 2 and country.isalpha())):
        raise InvalidInput("invalid_corridor", f"country must be ISO 3166 alpha-2 or '*', got {country!r}")
    if not category or len(category) > 40:
        raise InvalidInput("invalid_corridor", "category must be 1-40 characters or '*'")
    if not isinstance(bps, int) or isinstance(bps, bool) or not 0 <= bps <= MAX_TAX_BPS:
        raise InvalidInput("invalid_corridor", f"tax_bps must be an integer 0..{MAX_TAX_BPS}")
    if not is_address(recipient):
        raise InvalidInput("invalid_corridor", f"recipient {recipient!r} is not an address")
    return Corridor(country, category, bps, to_checksum_address(recipient))


def load(session: Session) -> list[Corridor]:
    row = session.get(KeyValue, KEY)
    return [_parse(item) for item in (row.value.get("items", []) if row else [])]


def store(session: Session, items: list[dict[str, Any]]) -> list[Corridor]:
    """Replace the corridor table (validated first; nothing changes on error)."""
    parsed = [_parse(item) for item in items]
    seen = {(c.country, c.category) for c in parsed}
    if len(seen) != len(parsed):
        raise InvalidInput("invalid_corridor", "each (country, category) may appear once")
    row = session.get(KeyValue, KEY)
    value = {"items": [c.as_json() for c in parsed]}
    if row is None:
        session.add(KeyValue(key=KEY, value=value))
    else:
        row.value = value
    return parsed


def current(rt: Runtime) -> list[Corridor]:
    """The corridor table as stored now (read transaction)."""
    with read_transaction(rt.db) as s:
        return load(s)


def replace_all(rt: Runtime, items: list[dict[str, Any]]) -> list[Corridor]:
    """:func:`store` in a write transaction of its own. Open orders keep the terms their buyers signed."""
    with transaction(rt.db) as s:
        return store(s, items)


def resolve(session: Session, country: str, category: str) -> Corridor:
    """The corridor for an order; no match is a 422 (the platform has not opened that corridor)."""
    country, category = country.upper(), category.lower()
    best: tuple[int, Corridor] | None = None
    for c in load(session):
        if c.country not in (country, "*") or c.category not in (category, "*"):
            continue
        score = (c.country != "*") * 2 + (c.category != "*")
        if best is None or score > best[0]:
            best = (score, c)
    if best is None:
        raise InvalidInput(
            "no_corridor",
            f"no tax corridor is configured for destination {country} and category {category}",
            errors=[{"field": "destination_country", "message": "corridor not configured"}],
        )
    return best[1]
