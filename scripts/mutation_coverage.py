"""pytest plugin of scripts/mutation_check.py: which contract functions each test calls.

Loaded with ``-p mutation_coverage`` (``scripts/`` on ``PYTHONPATH``) and ``TG_MUTATION_COVERAGE=<folder>``.
It wraps ``make_request`` of web3's eth-tester and HTTP providers (every JSON-RPC request of the app and the
tests goes through one of them) and records the 4-byte selector of every ``eth_sendRawTransaction``,
``eth_call`` and ``eth_estimateGas``. Selectors seen while a session- or module-scoped fixture is set up
(the stack is deployed and configured once per session) are kept apart and credited to every test that uses
that fixture. Writes one JSON file per process (xdist workers included): ``{"tests": {nodeid: [selectors]},
"fixtures": {name: [selectors]}, "uses": {nodeid: [fixture names]}}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_current: set[str] | None = None
_tests: dict[str, set[str]] = {}
_fixtures: dict[str, set[str]] = {}
_uses: dict[str, list[str]] = {}


def _selector_of_raw(raw_hex: str) -> str | None:
    raw = bytes.fromhex(raw_hex.removeprefix("0x"))
    if not raw:
        return None
    if raw[0] <= 0x7F:
        from eth_account.typed_transactions.typed_transaction import TypedTransaction
        from hexbytes import HexBytes

        data = TypedTransaction.from_bytes(HexBytes(raw)).as_dict().get("data", b"")
    else:
        import rlp  # type: ignore[import-untyped]

        data = rlp.decode(raw)[5]
    if isinstance(data, str):
        data = bytes.fromhex(data.removeprefix("0x"))
    return "0x" + bytes(data[:4]).hex() if len(data) >= 4 else None


def _record(method: str, params: Any) -> None:
    if _current is None:
        return
    try:
        if method == "eth_sendRawTransaction":
            sel = _selector_of_raw(str(params[0]))
        elif method in ("eth_call", "eth_estimateGas"):
            tx = params[0]
            data = tx.get("data") or tx.get("input") or ""
            if isinstance(data, bytes):
                data = "0x" + data.hex()
            sel = str(data)[:10] if len(str(data)) >= 10 else None
        else:
            return
    except Exception:  # a malformed request is the test's business, not ours
        return
    if sel:
        _current.add(sel.lower())


def _wrap(cls: Any) -> None:
    original = cls.make_request

    def make_request(self: Any, method: Any, params: Any) -> Any:
        _record(str(method), params)
        return original(self, method, params)

    cls.make_request = make_request


def pytest_configure(config: pytest.Config) -> None:
    from web3.providers.eth_tester.main import EthereumTesterProvider
    from web3.providers.rpc.rpc import HTTPProvider

    _wrap(EthereumTesterProvider)
    _wrap(HTTPProvider)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Iterator[None]:
    global _current
    if fixturedef.scope == "function":
        yield
        return
    saved = _current
    _current = _fixtures.setdefault(fixturedef.argname, set())
    try:
        yield
    finally:
        _current = saved


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    global _current
    _current = _tests.setdefault(item.nodeid, set())
    _uses[item.nodeid] = list(getattr(item, "fixturenames", []))
    try:
        yield
    finally:
        _current = None


def pytest_sessionfinish(session: pytest.Session) -> None:
    folder = os.environ.get("TG_MUTATION_COVERAGE")
    if not folder:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"coverage-{worker}.json").write_text(
        json.dumps(
            {
                "tests": {k: sorted(v) for k, v in _tests.items()},
                "fixtures": {k: sorted(v) for k, v in _fixtures.items()},
                "uses": _uses,
            }
        )
    )
