"""The process's wiring: settings, database, chain client, deployed escrow and the service's own keys.

One :class:`Runtime` per process (:func:`get_runtime`); the API, the Celery tasks and the CLI all use it.
On a development chain (``embedded`` or ``local``) the runtime deploys the escrow and tUSD itself the first
time and records the deployment in the database; on any other chain it attaches to the escrow at
``TRADEGUARD_ESCROW_ADDRESS``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.chain.client import ChainClient
from app.chain.escrow import Escrow, deploy_stack
from app.config import Settings, get_settings
from app.db.migrate import upgrade
from app.db.models import KeyValue
from app.db.session import make_engine, make_session_factory, transaction
from app.errors import ConfigError
from app.services.chain_halt import GuardState

log = logging.getLogger(__name__)

LOCAL_ANVIL_PORT = 8545
#: Dev-chain account roles (index into the chain's well-known dev accounts).
DEV_ROLES = {
    "deployer": 0,
    "treasury": 1,
    "relayer": 2,
    "oracle": 3,
    "arbitrator": 4,
    "customs": 5,
    "merchant": 6,
    "buyer": 7,
    "buyer2": 8,
    "regulator": 9,
}
DEFAULT_TAX_CAP_BPS = 5000


@dataclass(frozen=True)
class TokenInfo:
    """A settlement token: address, symbol (the API's ``currency``), decimals and name (its EIP-2612
    domain's name); read once, they never change."""

    address: str
    symbol: str
    decimals: int
    name: str = ""


@dataclass
class Runtime:
    """Everything a service needs to talk to the database and the chain."""

    settings: Settings
    engine: Engine
    db: sessionmaker[Session]
    chain: ChainClient
    escrow: Escrow
    relayer: LocalAccount
    oracle: LocalAccount | None
    tokens: dict[str, TokenInfo]
    deployment_block: int
    dev_accounts: dict[str, LocalAccount] = field(default_factory=dict)
    #: On the in-process chain (eth-tester is single-threaded) requests and the eager sweeper take turns.
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The chain guard's cached view (:mod:`app.services.chain_guard`).
    guard: GuardState = field(default_factory=GuardState)

    @property
    def is_dev(self) -> bool:
        """Whether the dev routes (faucet, clock) are on: asked for and on a dev chain."""
        return self.settings.dev_enabled and self.chain.is_dev_chain

    def token_by_symbol(self, symbol: str) -> TokenInfo | None:
        for info in self.tokens.values():
            if info.symbol == symbol:
                return info
        return None

    def close(self) -> None:
        self.chain.close()
        self.engine.dispose()


def _open_chain(settings: Settings) -> ChainClient:
    if settings.chain == "embedded":
        return ChainClient.embedded()
    if settings.chain == "local":
        return ChainClient.rpc(f"http://127.0.0.1:{LOCAL_ANVIL_PORT}", timeout=60)
    return ChainClient.rpc(settings.chain, timeout=60)


def start_local_anvil(settings: Settings) -> ChainClient:
    """Start the anvil the local mode owns, its state kept under ``state_dir``: saved atomically every second
    (and on a clean stop) with a backup and the dev clock beside it, loaded on the next start; restarted from
    it if it dies (:class:`~app.chain.anvil.AnvilProcess`). A corrupt state file is a
    :class:`~app.errors.CorruptChainState`, never a silent fresh chain."""
    state = Path(settings.state_dir) / "anvil-state.json"
    return ChainClient.start_anvil(state_file=state, port=LOCAL_ANVIL_PORT)


def _kv_get(db: sessionmaker[Session], key: str) -> dict[str, Any] | None:
    with transaction(db) as s:
        row = s.get(KeyValue, key)
        return dict(row.value) if row else None


def _kv_put(db: sessionmaker[Session], key: str, value: dict[str, Any]) -> None:
    with transaction(db) as s:
        row = s.get(KeyValue, key)
        if row is None:
            s.add(KeyValue(key=key, value=value))
        else:
            row.value = value


def _has_code(chain: ChainClient, address: str) -> bool:
    return len(chain.w3.eth.get_code(to_checksum_address(address))) > 0


def _key_account(settings: Settings, name: Any, fallback: LocalAccount | None) -> LocalAccount | None:
    key = settings.secret(name)
    if key:
        try:
            account: LocalAccount = Account.from_key(key)
            return account
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"TRADEGUARD_{str(name).upper()} is not a valid private key") from exc
    return fallback


def _token_info(chain: ChainClient, address: str) -> TokenInfo:
    token = chain.contract("TestUSD", address)  # any ERC-20 with symbol()/decimals() reads the same way
    return TokenInfo(
        to_checksum_address(address),
        str(chain.call(token.functions.symbol())),
        int(chain.call(token.functions.decimals())),
        str(chain.call(token.functions.name())),
    )


def build_runtime(
    settings: Settings | None = None,
    chain: ChainClient | None = None,
    deployment: dict[str, Any] | None = None,
) -> Runtime:
    """Open the database (migrated to head), the chain, and the escrow (deployed on a dev chain if new).

    ``deployment`` seeds a new database with an existing deployment record (tests deploy once per session).
    """
    settings = settings or get_settings()
    engine = make_engine(settings.db_url)
    upgrade(engine)
    db = make_session_factory(engine)
    chain = chain or _open_chain(settings)
    if settings.dev is True and not chain.is_dev_chain:
        raise ConfigError(f"TRADEGUARD_DEV is refused on chain id {chain.chain_id}: not a development chain")
    # defaults that depend on the chain itself, not on how it was named (an anvil URL is a dev chain too)
    defaults: dict[str, Any] = {}
    if settings.confirmations is None:
        defaults["confirmations"] = 0 if chain.is_dev_chain else 12
    if settings.dev is None:
        defaults["dev"] = chain.is_dev_chain
    settings = settings.model_copy(update=defaults)
    dev = {}
    if chain.is_dev_chain:
        accounts = chain.dev_accounts(10)
        dev = {role: accounts[i] for role, i in DEV_ROLES.items()}
    record = _kv_get(db, "deployment")
    if record is None and deployment is not None:
        _kv_put(db, "deployment", deployment)
        record = deployment
    genesis = "0x" + bytes(chain.w3.eth.get_block(0)["hash"]).hex()
    if record is not None and (record.get("chain_id") != chain.chain_id or record.get("genesis") != genesis):
        raise ConfigError(
            f"the database {settings.db_url} belongs to another chain (chain id {record.get('chain_id')}, "
            f"genesis {record.get('genesis')}); point TRADEGUARD_DATABASE_URL elsewhere or remove it"
        )
    if record is not None and not _has_code(chain, record["escrow"]):
        raise ConfigError(
            f"escrow {record['escrow']} recorded in the database has no code on this chain (was the dev "
            f"chain's state under {settings.state_dir} lost?); remove {settings.state_dir} to start over"
        )
    if record is None:
        record = _first_deployment(settings, chain, dev, genesis)
        _kv_put(db, "deployment", record)
    escrow = Escrow(chain, chain.contract("TradeGuardEscrow", record["escrow"]))
    # the deployment's tokens (tUSD on a dev chain) and any configured ones (TRADEGUARD_TOKENS)
    addresses = dict.fromkeys(
        str(to_checksum_address(t)) for t in [*record.get("tokens", []), *settings.token_addresses]
    )
    tokens = {a: _token_info(chain, a) for a in addresses}
    relayer = _key_account(settings, "relayer_key", dev.get("relayer"))
    if relayer is None:
        raise ConfigError("no relayer key: set TRADEGUARD_RELAYER_KEY or TRADEGUARD_KEY_FILE")
    oracle = _key_account(settings, "oracle_key", dev.get("oracle"))
    return Runtime(settings, engine, db, chain, escrow, relayer, oracle, tokens, int(record["block"]), dev)


def _first_deployment(
    settings: Settings, chain: ChainClient, dev: dict[str, LocalAccount], genesis: str
) -> dict[str, Any]:
    if not chain.is_dev_chain:
        if not settings.escrow_address:
            raise ConfigError("TRADEGUARD_ESCROW_ADDRESS is required on a chain that is not a dev chain")
        if not _has_code(chain, settings.escrow_address):
            raise ConfigError(f"no contract at TRADEGUARD_ESCROW_ADDRESS {settings.escrow_address}")
        escrow = chain.contract("TradeGuardEscrow", settings.escrow_address)
        return {
            "chain_id": chain.chain_id,
            "genesis": genesis,
            "escrow": str(escrow.address),
            "tokens": [str(to_checksum_address(t)) for t in settings.token_addresses],
            "block": chain.block_number(),
        }
    deployer = _key_account(settings, "deployer_key", dev["deployer"])
    oracle = _key_account(settings, "oracle_key", dev["oracle"])
    assert deployer is not None and oracle is not None
    log.info("deploying the escrow stack on dev chain %s", chain.chain_id)
    dep = deploy_stack(
        chain,
        admin=deployer,
        treasury=dev["treasury"].address,
        oracles=[oracle.address],
        arbitrators=[dev["arbitrator"].address],
        regulators=[dev["regulator"].address],
        tax_recipients={dev["customs"].address: DEFAULT_TAX_CAP_BPS},
    )
    return {
        "chain_id": chain.chain_id,
        "genesis": genesis,
        "escrow": dep.escrow.address,
        "tokens": [str(dep.token.address)],
        "registry_library": dep.registry_library,
        "block": dep.block,
    }


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process's runtime, built on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = build_runtime()
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install (or clear) the process's runtime: the CLI and tests build one explicitly."""
    global _runtime
    with _runtime_lock:
        _runtime = runtime


def load_runtime_if_any() -> Runtime | None:
    return _runtime


__all__ = ["Runtime", "TokenInfo", "build_runtime", "get_runtime", "set_runtime", "start_local_anvil"]
