"""Exactly once under SIGKILL: relayer processes on a real node (anvil) are killed mid-pass, again and again.

The test process deploys the stack on anvil and queues funding intents; relayer subprocesses loop over
``relay`` and are killed with SIGKILL each time the database shows progress, wherever they happen to be (in a
commit, between the commit and the broadcast, waiting for a receipt). A last pass in the test process then
finishes. Every intent must be confirmed, every order funded, and the relayer's nonce on chain must have
moved exactly once per distinct recorded transaction: nothing was lost and nothing was sent twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app.chain.anvil import AnvilProcess
from app.chain.client import ChainClient
from app.db.models import Intent
from app.db.session import transaction
from app.errors import ChainUnavailable
from app.services.outbox.relayer import CONFIRMED, relay, submit
from app.services.runtime import Runtime, build_runtime
from tests.service_fixtures import make_settings
from tests.services.test_relayer_support import Svc

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

ORDERS = 12
KILLS = 4
ROOT = Path(__file__).resolve().parents[2]
LOOP = """
import sys
from app.config import Settings
from app.services.outbox.relayer import relay
from app.services.runtime import build_runtime
rt = build_runtime(Settings(chain=sys.argv[1], database_url=sys.argv[2], state_dir=sys.argv[3], dev=True))
print("ready", flush=True)
while True:
    relay(rt, limit=3, wait_seconds=0.5)
"""


@pytest.fixture
def anvil_runtime(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    try:
        AnvilProcess.binary()
    except ChainUnavailable as exc:
        pytest.skip(f"anvil binary missing: {exc}")
    chain = ChainClient.start_anvil()
    try:
        rt = build_runtime(make_settings(db_url, tmp_path, chain="local"), chain)
        try:
            yield rt
        finally:
            rt.engine.dispose()
    finally:
        chain.close()


def progress(rt: Runtime) -> int:
    with transaction(rt.db) as s:
        return sum(1 for st in s.scalars(select(Intent.status)) if st != "pending")


def test_relayers_killed_mid_pass_relay_everything_exactly_once(
    anvil_runtime: Runtime, tmp_path: Path
) -> None:
    rt = anvil_runtime
    svc = Svc(rt)
    auths = [svc.auth(amount=1_000_000 + i, valid_until=rt.chain.now() + 86_400) for i in range(ORDERS)]
    total = sum(a.amount for a in auths)
    svc.mint(svc["buyer"].address, total)
    rt.chain.send(svc.token.functions.approve(rt.escrow.address, total), svc["buyer"])
    with transaction(rt.db) as s:
        for a in auths:
            submit(s, "fund", svc.fund_payload(a, permit=False))
    start = rt.chain.nonce(rt.relayer.address)
    url = str(getattr(rt.chain.w3.provider, "endpoint_uri", ""))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    kills = 0
    for _ in range(KILLS):
        seen = progress(rt)
        if seen == ORDERS:
            break
        proc = subprocess.Popen(
            [sys.executable, "-c", LOOP, url, rt.settings.db_url, str(tmp_path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            deadline = time.monotonic() + 60
            while progress(rt) == seen and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)  # poll the database with a deadline, then kill wherever it is
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1

    deadline = time.monotonic() + 60
    while progress(rt) < ORDERS or any(i.status != CONFIRMED for i in svc.intents()):
        assert time.monotonic() < deadline, [(i.status, i.error) for i in svc.intents()]
        relay(rt, wait_seconds=1)

    intents = svc.intents()
    assert kills >= 1 and [i.status for i in intents] == [CONFIRMED] * ORDERS
    for a in auths:
        order = rt.escrow.load_order(a.order_id)
        assert order is not None and order.terms.amount == a.amount
    assert rt.chain.nonce(rt.relayer.address) - start == len({i.tx_hash for i in intents})
