"""Fixtures for service, API and worker tests: a migrated database per test, a runtime on the session chain.

The database is SQLite in ``tmp_path`` by default; with ``TRADEGUARD_TEST_DB=postgresql`` each test gets its
own schema in the PostgreSQL database at ``TRADEGUARD_TEST_PG_URL`` (default 127.0.0.1:5432/test), dropped
afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app.chain.client import ChainClient
from app.config import Settings
from app.services.runtime import Runtime, build_runtime

PG_URL = os.environ.get("TRADEGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def test_db_backend() -> str:
    return os.environ.get("TRADEGUARD_TEST_DB", "sqlite")


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test."""
    if test_db_backend() != "postgresql":
        yield f"sqlite:///{tmp_path / 'tradeguard.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def make_settings(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "chain": "embedded",
        "database_url": db_url,
        "state_dir": tmp_path,
        "dev": True,
        "admin_api_key": "tg_admin_test_key_0123456789abcdef",
        "aftership_secret": "aftership-test-secret",
        "easypost_secret": "easypost-test-secret",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def service_deployment(chain: ChainClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Deploy the service's stack once on the session chain; each test seeds its database with the record."""
    tmp = tmp_path_factory.mktemp("deploy")
    settings = make_settings(f"sqlite:///{tmp / 'seed.db'}", tmp)
    rt = build_runtime(settings, chain=chain)
    with rt.db() as s:
        from app.db.models import KeyValue

        row = s.get(KeyValue, "deployment")
        assert row is not None
        record = dict(row.value)
    rt.engine.dispose()
    return record


@pytest.fixture
def runtime(
    chain: ChainClient, service_deployment: dict[str, Any], db_url: str, tmp_path: Path
) -> Iterator[Runtime]:
    """A runtime on a fresh database and the session chain, reverted to the deployed stack afterwards."""
    snap = chain.snapshot()
    rt = build_runtime(make_settings(db_url, tmp_path), chain=chain, deployment=service_deployment)
    try:
        yield rt
    finally:
        rt.engine.dispose()
        chain.revert(snap)
