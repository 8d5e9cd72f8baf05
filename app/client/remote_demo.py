"""``tradeguard demo --url URL``: the demo's three orders, driven through the HTTP API of a service that is
already running (``make run``), as the demo principals that ``tradeguard run`` printed.

``tradeguard run`` writes those keys, on dev chains only, to ``<state dir>/demo-keys.json`` (mode 0600; the
keys are new on every start and the accounts are the dev chain's well-known ones). Using the very principals
the newcomer signs in with means the orders show up in their console: a merchant sees only its own orders.
The wallets are the dev chain's public demo accounts, matched by address.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from app.chain.client import ChainClient
from app.chain.devchain import ANVIL_MNEMONIC
from app.client.demo import Demo, DemoError, Parties, Wallets
from app.client.wallet import NodeWallet

KEYS_FILE = "demo-keys.json"
ROLES = ("admin", "merchant", "buyer", "oracle", "arbitrator")


class RemoteDemo(Demo):
    """The demo with given principals (the running service's demo keys) instead of new ones."""

    def __init__(
        self, client: httpx.Client, parties: Parties, wallets: Wallets, say: Callable[[str], None]
    ) -> None:
        self._given = parties
        super().__init__(client, parties.admin, wallets, say)

    def _principals(self) -> Parties:
        return self._given


def write_keys(path: Path, keys: list[Any]) -> None:
    """Keep the demo keys ``tradeguard run`` printed for ``demo --url`` (owner-only file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k.role: {"address": k.address, "api_key": k.api_key} for k in keys}
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps(data, indent=2))


def _dev_accounts() -> dict[str, LocalAccount]:
    """The well-known dev accounts of anvil and of the embedded chain, by lower-case address."""
    Account.enable_unaudited_hdwallet_features()
    found = [Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(10)]
    try:
        from eth_tester.backends.pyevm.main import get_default_account_keys

        found += [Account.from_key(k.to_bytes()) for k in get_default_account_keys(quantity=10)]
    except ImportError:  # eth-tester is optional for a client
        pass
    return {a.address.lower(): a for a in found}


def load(keys_file: Path) -> tuple[Parties, Wallets]:
    """The demo principals' keys and the wallets of their addresses."""
    try:
        data = json.loads(keys_file.read_text())
    except (OSError, ValueError) as exc:
        raise DemoError(
            f"cannot read the demo keys at {keys_file} ({exc}): start the service with `tradeguard run` "
            "(on a dev chain it writes them there), or pass --keys"
        ) from exc
    missing = [r for r in ROLES if r not in data]
    if missing:
        raise DemoError(f"{keys_file} lacks keys for {', '.join(missing)}")
    accounts = _dev_accounts()

    def wallet(role: str) -> LocalAccount:
        address = str(data[role].get("address") or "").lower()
        if address not in accounts:
            raise DemoError(f"the demo {role} {address} is not a well-known dev account")
        return accounts[address]

    parties = Parties(**{r: str(data[r]["api_key"]) for r in ROLES})
    wallets = Wallets(
        wallet("merchant"), wallet("buyer"), wallet("arbitrator"), str(data["oracle"]["address"])
    )
    return parties, wallets


def _wallet(rpc: str | None, chain_id: int, say: Callable[[str], None]) -> NodeWallet | None:
    """The parties' own wallets on the node at ``rpc``, if it answers for the service's chain."""
    if not rpc:
        return None
    try:
        chain = ChainClient.rpc(rpc, timeout=10)
        if chain.chain_id == chain_id:
            return NodeWallet(chain)
        say(f"(the node at {rpc} serves chain {chain.chain_id}, not {chain_id}: no wallet scenario)")
    except Exception as exc:  # no node there: the demo runs without the wallet scenario
        say(f"(no node at {rpc}: {type(exc).__name__}; the wallet scenario is skipped, see --rpc)")
    return None


def run(
    url: str, keys_file: Path, say: Callable[[str], None] = print, rpc: str | None = None
) -> dict[str, Any]:
    """The scenarios against the service at ``url`` (the fourth through the parties' own wallets on the node
    at ``rpc``); the final orders and the settlement table."""
    parties, wallets = load(keys_file)
    with httpx.Client(base_url=url.rstrip("/"), timeout=120) as client:
        chain = client.get("/v1/chain")
        if chain.status_code != 200 or not chain.json().get("dev"):
            raise DemoError(
                f"{url} is not a TradeGuard service on a dev chain (GET /v1/chain → {chain.status_code})"
            )
        demo = RemoteDemo(client, parties, wallets, say)
        results = {"happy": demo.happy_path(), "dispute": demo.dispute(), "timeout": demo.ship_timeout()}
        wallet = _wallet(rpc, int(chain.json()["chain_id"]), say)
        if wallet is not None:
            results["refund"] = demo.seller_refund_and_withdrawal(wallet)
        table = demo.settlement_table()
    say("\nsettlement table (merchant view, GET /v1/settlements)\n" + table)
    say(f"\nsign in at {url.rstrip('/')}/console/ with the keys `tradeguard run` printed to see these orders")
    return {**results, "table": table}
