"""The runtime migrates the database, records the deployment and refuses a database of another chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.chain.client import ChainClient
from app.errors import ConfigError
from app.services.runtime import Runtime, build_runtime
from tests.service_fixtures import make_settings


def test_runtime_knows_the_escrow_and_tusd(runtime: Runtime) -> None:
    assert runtime.chain.is_dev_chain
    assert runtime.is_dev
    [token] = runtime.tokens.values()
    assert (token.symbol, token.decimals) == ("tUSD", 6)
    assert runtime.token_by_symbol("tUSD") == token
    assert runtime.oracle is not None and runtime.relayer.address != runtime.oracle.address


def test_refuses_a_database_of_another_chain(runtime: Runtime, tmp_path: Path) -> None:
    other = ChainClient.embedded()
    try:
        with pytest.raises(ConfigError, match="belongs to another chain"):
            build_runtime(make_settings(runtime.settings.db_url, tmp_path), chain=other)
    finally:
        other.close()


def test_migrations_match_the_models(runtime: Runtime) -> None:
    from app.db.migrate import check

    check(runtime.engine)  # raises if a model changed without a migration
