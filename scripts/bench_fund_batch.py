"""Orders funded per second by the relayer: ``--orders`` allowance-funded ``fund`` intents are filed, then
relayer passes (``relayer.relay``, its default limit) run until every intent is settled. Each ``--batch``
value is a fresh chain and database with ``fund_batch`` set to it: 1 is one order a transaction (the relayer
before batched funding), 50 the default. Prints one JSON object per line.

    PATH=$PWD/node_modules/.bin:$PWD/node_modules/@foundry-rs/anvil-linux-amd64/bin:$PATH \\
        .venv/bin/python scripts/bench_fund_batch.py --chain anvil --orders 100 --batch 1 50
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

from app.chain.client import ChainClient  # noqa: E402
from app.chain.escrow import ZERO_ADDRESS, OrderAuthorization  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db.models import Intent  # noqa: E402
from app.db.session import transaction  # noqa: E402
from app.domain.ids import order_id  # noqa: E402
from app.services.outbox.relayer import CONFIRMED, PENDING, SENT, relay, submit  # noqa: E402
from app.services.runtime import Runtime, build_runtime  # noqa: E402

AMOUNT = 1_000_000
DAY = 86_400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _file_intents(rt: Runtime, n: int) -> None:
    buyer, merchant, deployer = (rt.dev_accounts[r] for r in ("buyer", "merchant", "deployer"))
    token = rt.chain.contract("TestUSD", next(iter(rt.tokens)))
    rt.chain.send(token.functions.faucet(buyer.address, n * AMOUNT), deployer)
    rt.chain.send(token.functions.approve(rt.escrow.address, n * AMOUNT), buyer)
    now, bps = rt.chain.now(), int(rt.escrow.config()["commission_bps"])
    with transaction(rt.db) as s:
        for i in range(n):
            auth = OrderAuthorization(
                order_id(merchant.address, f"BENCH-{i}"), buyer.address, merchant.address,
                str(token.address), AMOUNT, bps, 0, ZERO_ADDRESS,
                now + 5 * DAY, now + 30 * DAY, 3 * DAY, now + DAY,
            )  # fmt: skip
            sig = rt.escrow.sign_authorization(buyer.key, auth)
            msg = {k: "0x" + v.hex() if isinstance(v, bytes) else v for k, v in auth.message().items()}
            msg["amount"] = str(auth.amount)
            submit(s, "fund", {"authorization": msg, "signature": "0x" + sig.hex(), "permit": None})


def _count(rt: Runtime, *statuses: str) -> int:
    with transaction(rt.db) as s:
        return int(s.scalar(select(func.count()).select_from(Intent).where(Intent.status.in_(statuses))) or 0)


def run(chain_kind: str, orders: int, batch: int) -> dict[str, Any]:
    """One measurement on a fresh chain and database."""
    with tempfile.TemporaryDirectory() as tmp:
        if chain_kind == "anvil":
            chain = ChainClient.start_anvil(port=_free_port())
            name = str(chain.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
        else:
            chain, name = ChainClient.embedded(), "embedded"
        try:
            settings = Settings(
                chain=name, database_url=f"sqlite:///{tmp}/tg.db", state_dir=Path(tmp), dev=True,
                fund_batch=batch,
            )  # fmt: skip
            rt = build_runtime(settings, chain=chain)
            _file_intents(rt, orders)
            passes = transactions = 0
            start = time.perf_counter()
            while _count(rt, PENDING, SENT) and passes < 10 * orders:
                report = relay(rt)
                passes, transactions = passes + 1, transactions + report.transactions
            elapsed = time.perf_counter() - start
            confirmed = _count(rt, CONFIRMED)
            with transaction(rt.db) as s:
                mined = select(Intent.tx_hash, Intent.gas_used).where(Intent.status == CONFIRMED)
                gas = dict(s.execute(mined).all())
            rt.engine.dispose()
        finally:
            chain.close()
    return {
        "chain": chain_kind,
        "fund_batch": batch,
        "orders": orders,
        "confirmed": confirmed,
        "transactions": transactions,
        "relay_passes": passes,
        "seconds": round(elapsed, 3),
        "orders_per_s": round(confirmed / elapsed, 1),
        "gas_per_order": round(sum(int(g or 0) for g in gas.values()) / max(confirmed, 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", choices=("embedded", "anvil"), default="embedded")
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 50])
    args = parser.parse_args()
    for batch in args.batch:
        print(json.dumps(run(args.chain, args.orders, batch)), flush=True)


if __name__ == "__main__":
    main()
