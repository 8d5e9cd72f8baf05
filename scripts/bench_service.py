"""Service throughput benchmark: prints JSON.

Runs the service in process on an anvil it starts (SQLite in a temp dir, Celery eager), and times through the
HTTP API: orders created and funded (each relayed and indexed before the next), EPCIS shipping captures
(stored, mapped, attested on chain), and one keeper sweep that releases every order past T+N in a batch.

    .venv/bin/python scripts/bench_service.py [--orders 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select

from app.api.main import create_app
from app.chain.client import ChainClient
from app.client import demo
from app.config import Settings
from app.db.models import Intent
from app.services import keeper, relayer
from app.services.bootstrap import prepare
from app.services.runtime import build_runtime, set_runtime
from workers.celery_app import celery_app, configure

ADMIN_KEY = "tg_admin_benchmark_key_0123456789"


def run(n: int) -> dict[str, Any]:
    with warnings.catch_warnings():  # starlette's note about httpx, printed on import
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    node = ChainClient.start_anvil()
    with tempfile.TemporaryDirectory(prefix="tg-bench-") as tmp:
        settings = Settings(
            chain=str(node.w3.provider.endpoint_uri),  # type: ignore[attr-defined]
            database_url=f"sqlite:///{Path(tmp) / 'bench.db'}",
            state_dir=Path(tmp),
            admin_api_key=SecretStr(ADMIN_KEY),
        )
        rt = build_runtime(settings, chain=node)
        set_runtime(rt)
        configure(celery_app, settings)
        prepare(rt)
        try:
            with TestClient(create_app()) as client:
                dev = rt.dev_accounts
                wallets = demo.Wallets(
                    dev["merchant"], dev["buyer"], dev["arbitrator"], dev["oracle"].address
                )
                d = demo.Demo(client, ADMIN_KEY, wallets, say=lambda _line: None)
                t0 = time.perf_counter()
                orders = [d.create_and_fund(f"B-{i}", 10 * 10**6) for i in range(n)]
                funding = time.perf_counter() - t0
                ssccs = [d.ship(o, 1000 + i) for i, o in enumerate(orders)]
                t0 = time.perf_counter()
                now = d.chain_time()
                for i, sscc in enumerate(ssccs):
                    d.epcis(sscc, "receiving", now, order_ref=f"B-{i}")
                ingest = time.perf_counter() - t0
                delivered = sum(d.order(d.parties.merchant, o["id"])["status"] == "delivered" for o in orders)
                rt.chain.advance_time(settings.hold_seconds + 1)
                t0 = time.perf_counter()
                swept = keeper.sweep(rt)
                relayed = relayer.relay(rt)
                release = time.perf_counter() - t0
                with rt.db() as s:
                    releases = list(s.scalars(select(Intent).where(Intent.kind == "release")))
                txs = {i.tx_hash: i.gas_used for i in releases if i.tx_hash}
        finally:
            set_runtime(None)
            rt.close()
            node.close()
    return {
        "orders": n,
        "create_and_fund_per_s": round(n / funding, 2),
        "create_and_fund_ms_each": round(1000 * funding / n, 1),
        "epcis_capture_to_chain_per_s": round(n / ingest, 2),
        "delivered": delivered,
        "release_sweep": {
            "intents": swept.submitted,
            "transactions": relayed.transactions,
            "seconds": round(release, 3),
            "gas_per_order": round(sum(g or 0 for g in txs.values()) / max(len(releases), 1)),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps(run(args.orders), indent=2))


if __name__ == "__main__":
    main()
