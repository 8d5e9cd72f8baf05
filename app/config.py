"""All configuration, read once from ``TRADEGUARD_*`` environment variables (and an optional ``.env``).

Nothing else in the project reads ``os.environ``: call :func:`get_settings`. Every variable is listed in the
README; :meth:`Settings.describe` prints them for ``tradeguard run --help``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """TradeGuard's settings. Secrets are :class:`SecretStr` so they never show in logs or reprs."""

    model_config = SettingsConfigDict(env_prefix="TRADEGUARD_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    chain: str = Field(
        "local", description="'embedded' (eth-tester in process), 'local' (anvil) or an RPC URL"
    )
    database_url: str = Field("", description="SQLAlchemy URL; default sqlite under state_dir")
    broker_url: str | None = Field(None, description="Celery broker (redis://…); unset = tasks run eagerly")
    admin_api_key: SecretStr | None = Field(None, description="bootstraps the first admin principal")
    hold_seconds: int = Field(259_200, ge=3600, le=90 * 86_400, description="T+N hold (T+3), 1 h..90 d")
    dev: bool | None = Field(None, description="dev routes and faucet; default on for embedded/local chains")
    state_dir: Path = Field(ROOT / "var", description="anvil state, SQLite file, deployment record")
    key_file: Path | None = Field(None, description="JSON file with relayer_key / oracle_key / deployer_key")
    relayer_key: SecretStr | None = None
    oracle_key: SecretStr | None = None
    deployer_key: SecretStr | None = None
    escrow_address: str | None = Field(None, description="deployed escrow (production); dev chains deploy")
    tokens: str = Field("", description="settlement token addresses, comma-separated (production)")
    confirmations: int | None = Field(
        None, ge=0, le=1000, description="indexer depth; default 0 dev, 12 else"
    )
    aftership_secret: SecretStr | None = None
    easypost_secret: SecretStr | None = None
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    #: Worker threads an API process runs its blocking request work on (anyio's default is 40). More threads
    #: than this do not add throughput under the GIL; they lengthen the time each holder of the database's
    #: write lock waits to run again, so every writer queues longer (issue 8's profile).
    api_threads: int = Field(8, ge=1, le=200)
    #: Where an API process runs its reads (authentication, ``GET`` routes): on this many threads of their
    #: own, or, with 0, on the event loop itself. None: 0 on SQLite, 2 on PostgreSQL.
    #: A read of SQLite under WAL neither takes nor waits for a lock: it is CPU under the GIL from end to end,
    #: so a thread adds only its hand-over and, with several, contention. At 32 concurrent GETs an API process
    #: spent 2.6 ms of CPU per GET with reads on 8 threads, 2.2 on one thread and 1.9 on the event loop
    #: (issue 8; bench_get, medians of 4). A read of PostgreSQL waits on the network: never on the loop.
    #: Writes keep the wider budget: they wait on the group commit, off the GIL.
    api_read_threads: int | None = Field(None, ge=0, le=200)
    idempotency_ttl_seconds: int = Field(48 * 3600, ge=24 * 3600)
    webhook_retry_hours: int = Field(72, ge=72)
    sweep_seconds: float = Field(2.0, gt=0, description="how often beat (or the eager sweeper) sweeps")
    #: How many steps lower the sweeps run than the requests (Linux; 0: the same): the background sweeps'
    #: threads and a Celery worker's process (workers/sweepers.py, ``lower_priority``). 10 by default: once a
    #: capture's only write was its store (issue 8), 3 interleaved rounds gave acks/s 335 at 0, 383 at 10 and
    #: 414 at 19 (ack p99 168, 138, 141 ms), capture-to-delivered p99 1151, 1024, 938 ms, orders/s the same.
    #: 10 rather than 19 leaves the sweeps a larger share of a core that requests keep busy for long.
    sweep_nice: int = Field(10, ge=0, le=19)
    finality_depth: int = Field(
        64, ge=1, le=100_000, description="a reorg deeper than this halts the indexer instead of rewinding"
    )
    chain_check_seconds: float = Field(
        3.0, ge=0, description="how long a chain identity check (genesis hash, chain id) is trusted"
    )
    head_cache_seconds: float = Field(
        3.0,
        ge=0,
        description="how long the latest block (chain time, base fee) and the tip are reused (0: never)",
    )
    platform_cache_seconds: float = Field(
        10.0, ge=0, description="how long the escrow's settings read for new orders are reused (0: never)"
    )
    relayer_max_attempts: int = Field(8, ge=1)
    audit_seconds: float = Field(
        300.0, ge=0, description="how often the keeper audits the index against the chain (0: never)"
    )
    replace_after_seconds: float = Field(
        60.0, gt=0, description="a relayer transaction still pending this long is replaced with higher fees"
    )
    max_fee_gwei: float = Field(
        500.0, gt=0, description="replacements never offer more than this per gas (maxFeePerGas, gwei)"
    )
    gas_wallet_min_gas: int = Field(
        2_000_000,
        ge=0,
        description="/readyz answers 503 while the relayer's balance pays for less gas than this",
    )
    fund_batch: int = Field(
        50, ge=1, le=500, description="fund intents per transaction (the contract takes up to 500)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text", description="'json': one JSON object per log line, with the request id (app/logs.py)"
    )
    metrics_token: SecretStr | None = Field(
        None, description="if set, GET /metrics needs 'Authorization: Bearer <token>' (else it is open)"
    )

    @field_validator("chain")
    @classmethod
    def _chain(cls, v: str) -> str:
        if v in ("embedded", "local") or v.startswith(("http://", "https://", "ws://", "wss://")):
            return v
        raise ValueError("TRADEGUARD_CHAIN must be 'embedded', 'local' or a JSON-RPC URL")

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state_dir / 'tradeguard.db'}"

    @property
    def read_threads(self) -> int:
        """:attr:`api_read_threads`, or its default for the database (0: on the event loop)."""
        if self.api_read_threads is None:
            return 0 if self.db_url.startswith("sqlite") else 2
        return self.api_read_threads

    @model_validator(mode="after")
    def _reads_on_the_loop_only_on_sqlite(self) -> Settings:
        if self.api_read_threads == 0 and not self.db_url.startswith("sqlite"):
            raise ValueError("TRADEGUARD_API_READ_THREADS=0 (reads on the event loop) is for SQLite only")
        return self

    @property
    def token_addresses(self) -> list[str]:
        return [t.strip() for t in self.tokens.split(",") if t.strip()]

    @property
    def is_dev_chain_mode(self) -> bool:
        return self.chain in ("embedded", "local")

    @property
    def dev_enabled(self) -> bool:
        return self.is_dev_chain_mode if self.dev is None else self.dev

    @property
    def confirmation_depth(self) -> int:
        if self.confirmations is not None:
            return self.confirmations
        return 0 if self.is_dev_chain_mode else 12

    @property
    def eager(self) -> bool:
        return not self.broker_url

    def secret(self, name: Literal["relayer_key", "oracle_key", "deployer_key"]) -> str | None:
        """A private key from the environment, else from ``key_file``; ``None`` when neither has it."""
        value: SecretStr | None = getattr(self, name)
        if value is not None:
            return value.get_secret_value()
        if self.key_file is None:
            return None
        try:
            data = json.loads(self.key_file.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read key file {self.key_file}: {exc}") from exc
        found = data.get(name) if isinstance(data, dict) else None
        return str(found) if found else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (cached; tests call ``get_settings.cache_clear()`` after changing env)."""
    try:
        return Settings()
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
