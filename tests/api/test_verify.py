"""``tradeguard verify``: rebuilt from the logs alone it agrees with the chain and the service on 100+ orders
in every final state, and it reports a database row changed behind the service's back, an evidence file
corrupted in the service's database and one corrupted on disk; the command itself runs against a node by URL
and never imports the database layer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.chain.anvil import AnvilProcess
from app.chain.client import ChainClient
from app.client import demo, verify
from app.client.demo import Wallets
from app.db.models import Evidence, Order
from app.db.session import transaction
from app.domain.ids import content_hash
from app.domain.order_state import Milestone, Status
from app.services.index import indexer
from app.services.runtime import Runtime
from tests.api.conftest import Keys
from tests.chain.conftest import anvil_binary, deploy_test_stack
from tests.factories import HOLD, Actors, OrderFactory

ROOT = Path(__file__).resolve().parents[2]
FINAL = {Status.RELEASED: 40, Status.REFUNDED: 32, Status.RESOLVED: 30}
OPEN = (Status.FUNDED, Status.SHIPPED, Status.DELIVERED, Status.DISPUTED)


def _factory(rt: Runtime) -> OrderFactory:
    """Orders on the service's escrow, sold by the service's merchant (so its indexer projects them)."""
    d = rt.dev_accounts
    actors = Actors(
        admin=d["deployer"], treasury=d["treasury"], buyer=d["buyer"], seller=d["merchant"],
        oracle1=d["oracle"], oracle2=d["oracle"], oracle3=d["oracle"], arbitrator=d["arbitrator"],
        regulator=d["regulator"], tax=d["customs"], relayer=d["relayer"], stranger=d["buyer2"],
        buyer2=d["buyer2"], seller2=d["treasury"],
    )  # fmt: skip
    token = rt.chain.contract("TestUSD", next(iter(rt.tokens)))
    return OrderFactory(rt.chain, rt.escrow, token, actors, int(rt.escrow.config()["commission_bps"]))


def _bulk(factory: OrderFactory) -> list[str]:
    """102 orders in the three final states and one in each open state, funded 50 a transaction and
    attested and released in batches; returns the disputed ones (their buyer anchored an evidence hash)."""
    esc, relayer, a = factory.escrow, factory.actors.relayer, factory.actors
    auths = [factory.auth() for _ in range(sum(FINAL.values()) + len(OPEN))]
    for i in range(0, len(auths), 50):
        factory.fund_batch(auths[i : i + 50])
    orders = [esc.orders[x.order_id] for x in auths]
    released, rest = orders[: FINAL[Status.RELEASED]], orders[FINAL[Status.RELEASED] :]
    refunded, rest = rest[: FINAL[Status.REFUNDED]], rest[FINAL[Status.REFUNDED] :]
    resolved, (_funded, shipped, delivered, disputed) = rest[: FINAL[Status.RESOLVED]], rest[-4:]
    for milestone, group in (
        (Milestone.SHIPPED, [*released, shipped, delivered]),
        (Milestone.DELIVERED, [*released, delivered]),
    ):
        items = [(factory.current(o), [factory.attestation(factory.current(o), milestone)]) for o in group]
        esc.attest(items, relayer)
    for o in refunded:
        esc.refund_by_seller(factory.current(o), a.seller)
    for o in [*resolved, disputed]:
        factory.dispute(factory.current(o))
    for o in resolved:
        esc.rule(factory.current(o), a.arbitrator, 3_333, content_hash(b"ruling"))
    factory.chain.advance_time(HOLD + 60)
    esc.release([factory.current(o) for o in released], relayer)
    return ["0x" + o.order_id.hex() for o in [*resolved, disputed]]


def _audit(rt: Runtime, client: TestClient, admin: str, evidence: Path | None = None) -> dict[str, Any]:
    head = rt.chain.block_number()
    events = rt.chain.get_events(rt.escrow.address, rt.deployment_block, head)
    audit = verify.Audit(
        rt.chain.chain_id,
        rt.escrow.address,
        rt.deployment_block,
        head,
        verify.rebuild(events, rt.escrow.address),
    )
    verify.conservation(audit, rt.chain)
    if evidence is not None:
        verify.evidence_dir(audit, evidence)
    client.headers["Authorization"] = f"Bearer {admin}"
    verify.compare_api(audit, client)
    return audit.report()


@pytest.mark.slow
def test_verify_agrees_on_every_final_state_then_reports_each_tampering(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime, tmp_path: Path
) -> None:
    played = demo.run(client, keys.admin, wallets, say=lambda _line: None)  # real evidence files via the API
    disputed = _bulk(_factory(runtime))
    indexer.sync(runtime)
    evidence = tmp_path / "evidence"
    for oid in disputed[:3]:  # the factory's disputes anchor SHA-256("buyer evidence")
        (evidence / oid).mkdir(parents=True)
        (evidence / oid / "buyer.txt").write_bytes(b"buyer evidence")

    report = _audit(runtime, client, keys.admin, evidence)

    assert report["ok"], report["findings"]
    assert report["orders"] >= 100 + len(OPEN)
    for status, count in FINAL.items():
        assert report["by_status"][status.name.lower()] >= count
    assert report["checked"]["token_balances"] == 1 and report["checked"]["credits"] >= 4
    assert report["checked"]["api_orders"] == report["orders"]
    assert report["checked"]["evidence_files"] == 3 and report["checked"]["api_evidence_files"] >= 2

    # tampering: a released order turned refunded in the database, an evidence file's bytes changed in the
    # database, and one corrupted on disk
    released = next(o for o in (played["happy"],) if o["status"] == "released")["id"]
    with transaction(runtime.db) as s:
        row = s.get(Order, released)
        assert row is not None
        row.status = "refunded"
        stored = s.scalars(select(Evidence).where(Evidence.order_id == played["dispute"]["id"])).first()
        assert stored is not None
        stored.data = b"not what was anchored"
        tampered_evidence = stored.id
    corrupted = evidence / disputed[0] / "buyer.txt"
    corrupted.write_bytes(b"buyer evidence, edited")

    report = _audit(runtime, client, keys.admin, evidence)

    assert not report["ok"]
    found = {(f["check"], f.get("order_id"), f.get("evidence_id")) for f in report["findings"]}
    assert found == {
        ("api_status", released, None),
        ("api_evidence", played["dispute"]["id"], tampered_evidence),
        ("evidence_file", disputed[0], None),
    }, report["findings"]
    assert "0x" + content_hash(b"buyer evidence, edited").hex() in json.dumps(report["findings"])


@pytest.mark.sqlite_only  # a node and the command only
def test_the_command_audits_a_node_by_url_and_never_imports_the_database_layer(tmp_path: Path) -> None:
    anvil_binary()
    node = AnvilProcess()
    node.start()
    try:
        chain = ChainClient.rpc(node.url)
        actors = Actors.from_accounts(chain.dev_accounts(len(Actors.__dataclass_fields__)))
        dep = deploy_test_stack(chain, actors)
        factory = OrderFactory(chain, dep.escrow, dep.token, actors)
        for status in (Status.RELEASED, Status.REFUNDED, Status.RESOLVED, Status.FUNDED):
            factory.in_status(status)
        # in a fresh interpreter: the audit's whole import closure holds no database module
        probe = (
            "import sys, app.client.verify as v, app.cli; "
            "bad = sorted(m for m in sys.modules if m.startswith(('app.db', 'app.services', 'sqlalchemy'))); "
            "print(bad)"
        )
        imported = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
        assert imported.stdout.strip() == "[]", imported.stdout + imported.stderr
        cmd = [sys.executable, "-m", "app.cli", "verify", "--rpc", node.url, "--escrow", dep.escrow.address]
        done = subprocess.run(
            [*cmd, "--from-block", str(dep.block)], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["ok"] and report["orders"] == 4
        assert report["by_status"] == {"funded": 1, "refunded": 1, "released": 1, "resolved": 1}

        wrong = subprocess.run([*cmd[:-1], actors.stranger.address], cwd=ROOT, capture_output=True, text=True)
        assert wrong.returncode == 1 and "no contract at" in wrong.stderr and "Traceback" not in wrong.stderr
    finally:
        node.stop()
