"""Merchant webhook endpoints: registration, listing and the delivery log, always for the endpoint's owner.

Delivery itself is :mod:`app.services.outbox.webhooks`; this module is what a merchant manages. A URL is
checked before anything is stored (scheme and host always; off a dev chain also where its host resolves, so no
endpoint can aim the service at an internal address), and that check, which may ask DNS, runs before the
write transaction opens. The signing secret is returned once, at registration, and never shown again.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.db import pagination
from app.db.models import Principal, WebhookEndpoint
from app.db.session import read_transaction, transaction
from app.errors import InvalidInput, NotFound
from app.services.outbox.webhooks import delivery_log, private_address_refusal, url_refusal
from app.services.runtime import Runtime


@dataclass(frozen=True)
class Registered:
    """A new endpoint and its signing secret (to be shown to the merchant this once)."""

    endpoint: WebhookEndpoint
    secret: str


def public(ep: WebhookEndpoint) -> dict[str, Any]:
    """An endpoint as the API shows it (never its secret)."""
    return {
        "id": ep.id,
        "url": ep.url,
        "event_types": list(ep.event_types.get("types", [])),
        "enabled": ep.enabled,
        "created_at": ep.created_at,
    }


def register(rt: Runtime, owner: Principal, url: str, event_types: Iterable[str]) -> Registered:
    """Store an endpoint for ``owner`` with a fresh signing secret; a refused URL is a 422 ``invalid_url``."""
    refusal = url_refusal(url) or (None if rt.is_dev else private_address_refusal(url))
    if refusal is not None:
        raise InvalidInput("invalid_url", refusal, errors=[{"field": "url", "message": refusal}])
    secret = "whsec_" + secrets.token_urlsafe(32)
    with transaction(rt.db) as s:
        ep = WebhookEndpoint(
            principal_id=owner.id,
            url=url,
            secret=secret,
            event_types={"types": sorted(set(event_types))},
        )
        s.add(ep)
        s.flush()
    return Registered(ep, secret)


def owned_by(rt: Runtime, owner: Principal) -> list[WebhookEndpoint]:
    """Every endpoint ``owner`` registered."""
    with read_transaction(rt.db) as s:
        return list(s.scalars(select(WebhookEndpoint).where(WebhookEndpoint.principal_id == owner.id)))


def page(rt: Runtime, owner: Principal, limit: int, cursor: str | None) -> dict[str, Any]:
    """One page of ``owner``'s endpoints, newest first, and the ``next_cursor`` that continues."""
    query = pagination.after(
        select(WebhookEndpoint).where(WebhookEndpoint.principal_id == owner.id),
        WebhookEndpoint.created_at,
        WebhookEndpoint.id,
        cursor,
    ).limit(limit + 1)
    with read_transaction(rt.db) as s:
        rows, next_cursor = pagination.page(list(s.scalars(query)), limit)
        return {"items": [public(ep) for ep in rows], "next_cursor": next_cursor}


def deliveries(
    rt: Runtime, owner: Principal, endpoint_id: str, limit: int, cursor: str | None
) -> dict[str, Any]:
    """One page of an endpoint's delivery log (:func:`~app.services.outbox.webhooks.delivery_log`); another
    principal's endpoint is a 404, as an unknown one."""
    with read_transaction(rt.db) as s:
        ep = s.get(WebhookEndpoint, endpoint_id)
        if ep is None or ep.principal_id != owner.id:
            raise NotFound("webhook endpoint", endpoint_id)
        return delivery_log(s, ep.id, limit, cursor)
