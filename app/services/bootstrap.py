"""Start-up chores: the admin from ``TRADEGUARD_ADMIN_API_KEY``, default corridors and demo principals on
dev chains."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.db.models import Principal
from app.db.session import transaction
from app.services import principals
from app.services.runtime import Runtime
from app.services.trade import corridors

#: Demo principals of a dev chain: role → dev account role (see ``runtime.DEV_ROLES``).
DEMO = {"merchant": "merchant", "buyer": "buyer", "oracle": "oracle", "arbitrator": "arbitrator"}


def prepare(rt: Runtime) -> None:
    """Idempotent: bootstrap the admin key, and on a dev chain open default tax corridors."""
    with transaction(rt.db) as s:
        if rt.settings.admin_api_key is not None:
            principals.bootstrap_admin(s, rt.settings.admin_api_key.get_secret_value())
        if rt.chain.is_dev_chain and not corridors.load(s) and "customs" in rt.dev_accounts:
            customs = rt.dev_accounts["customs"].address
            corridors.store(
                s,
                [
                    {"country": "*", "category": "*", "tax_bps": 0, "recipient": customs},
                    {"country": "DE", "category": "*", "tax_bps": 1900, "recipient": customs},
                    {"country": "US", "category": "*", "tax_bps": 800, "recipient": customs},
                    {"country": "CN", "category": "*", "tax_bps": 1300, "recipient": customs},
                ],
            )


@dataclass(frozen=True)
class DemoKey:
    role: str
    address: str | None
    api_key: str


def seed_demo(rt: Runtime) -> list[DemoKey]:
    """Dev chains: one principal per role on the well-known dev accounts, each with a fresh API key.

    Keys are stored hashed, so they cannot be shown again: every call revokes the old demo keys and prints
    new ones.
    """
    out = []
    with transaction(rt.db) as s:
        admin = s.scalar(select(Principal).where(Principal.role == "admin", Principal.name == "demo admin"))
        if admin is None:
            admin = principals.create_principal(s, "admin", None, "demo admin").principal
        principals.revoke_keys(s, admin)
        out.append(DemoKey("admin", None, principals.issue_key(s, admin)))
        for role, account in DEMO.items():
            address = rt.dev_accounts[account].address
            p = principals.find_by_role_address(s, role, address)
            if p is None:
                p = principals.create_principal(s, role, address, f"demo {role}").principal
            principals.revoke_keys(s, p)
            out.append(DemoKey(role, address, principals.issue_key(s, p)))
    return out
