"""Where a ``GET /v1/orders/{id}`` goes (issue 8's trail bar): its server CPU, and the floor under it.

Each run starts a fresh local stack (scripts/benchlib.py: anvil, ``tradeguard run`` with SQLite, one API
process), funds ``--orders`` orders directly on chain and waits until the service has indexed them, then
``--clients`` concurrent HTTP clients (``--client``: scripts/loadgen.py by default, one connection each):

- ``order``: GET /v1/orders/{id} of random orders, ``--requests`` each: GETs/s, p50/p99 ms, and CPU (user +
  system, all threads) per GET of the API process that serves them (``api_cpu_ms_per_get``) and of the
  parent's sweeps meanwhile (``service_cpu_ms_per_get``);
- ``healthz``: GET /healthz the same number of times: no database and no authentication, so its p99 is the
  floor this client harness and one API process reach on this machine.

Also the in-process cost of the two service calls a GET makes (authentication and the order detail), on a copy
of the stack's database, one thread and ``--threads`` threads. Linux only (/proc). Each figure: median of
``--runs`` with min and max. Prints JSON.

    PATH=$PWD/node_modules/.bin:$PWD/node_modules/@foundry-rs/anvil-linux-amd64/bin:$PATH \\
        .venv/bin/python scripts/bench_get.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import loadgen  # noqa: E402
from benchchain import bulk_fund  # noqa: E402
from benchlib import aggregate, code_identity, cpu_seconds, p50_p99, source_tree, start_stack  # noqa: E402
from benchload import Bench  # noqa: E402

from app.db.session import make_engine, make_session_factory  # noqa: E402
from app.services import principals  # noqa: E402
from app.services.trade import order_views  # noqa: E402


def server_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds so far of ``tradeguard run`` (``pid``) and its descendants, by who: ``api`` (the API
    process, which serves the GETs) and ``service`` (the parent's sweeps)."""
    return cpu_seconds([pid], None, None, shared=False)


def load(
    url: str, key: str, paths: Callable[[random.Random], str], clients: int, per: int, client: str = "lean"
) -> dict[str, Any]:
    """``clients`` concurrent clients GET ``paths(rng)`` ``per`` times each; rate, latency, non-200 count and
    the load client's CPU per GET. ``client``: ``lean`` (scripts/loadgen.py: one event loop in a process of
    its own, one connection per client) or ``threads`` (one thread with an ``httpx`` client each, in this
    process: what the benchmarks used before; its CPU is not measured)."""
    if client == "lean":
        plans = [[paths(rng) for _ in range(per)] for rng in (random.Random(c) for c in range(clients))]
        done = loadgen.run(url, plans, {"Authorization": f"Bearer {key}"})
        lat = done["latencies_ms"]
        return {
            "per_s": round(len(lat) / done["elapsed_s"], 1),
            "ms": p50_p99(lat),
            "failed": done["failed"],
            "client_cpu_ms_per_get": round(1000 * done["cpu_s"] / max(len(lat), 1), 3),
        }
    latencies: list[float] = []
    failed = [0]
    lock = threading.Lock()

    def client(c: int) -> None:
        rng = random.Random(c)
        with httpx.Client(base_url=url, timeout=60) as http:
            for _ in range(per):
                t0 = time.perf_counter()
                try:
                    ok = http.get(paths(rng), headers={"Authorization": f"Bearer {key}"}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                seconds = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(1000 * seconds)
                    else:
                        failed[0] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {"per_s": round(len(latencies) / elapsed, 1), "ms": p50_p99(latencies), "failed": failed[0]}


def in_process(db_path: Path, ids: list[str], key: str, threads: int, calls: int) -> dict[str, Any]:
    """Milliseconds of CPU per (authentication + order detail) pair on a copy of the database: one thread,
    then ``threads`` threads in this one process."""
    with tempfile.TemporaryDirectory(prefix="tg-bench-get-") as tmp:
        copy = Path(tmp) / "copy.db"
        for suffix in ("", "-wal"):
            if Path(f"{db_path}{suffix}").exists():
                shutil.copy(f"{db_path}{suffix}", f"{copy}{suffix}")
        engine = make_engine(f"sqlite:///{copy}")
        rt: Any = SimpleNamespace(db=make_session_factory(engine))
        viewer = principals.resolve(rt.db, key)

        def pairs(seed: int, n: int) -> None:
            rng = random.Random(seed)
            for _ in range(n):
                principals.resolve(rt.db, key)
                order_views.detail(rt, viewer, rng.choice(ids))

        pairs(0, 100)  # warm: compiled statements, page cache
        out: dict[str, Any] = {}
        for label, n_threads in (("one_thread", 1), (f"{threads}_threads", threads)):
            per = calls // n_threads
            workers = [threading.Thread(target=pairs, args=(i, per)) for i in range(n_threads)]
            c0 = time.process_time()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            out[label] = {"cpu_ms_per_get": round(1000 * (time.process_time() - c0) / (per * n_threads), 3)}
        t0 = time.perf_counter()
        auth_n = 500
        for _ in range(auth_n):
            principals.resolve(rt.db, key)
        out["one_thread"]["authenticate_ms"] = round(1000 * (time.perf_counter() - t0) / auth_n, 3)
        engine.dispose()
    return out


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    with source_tree(args.source) as source, start_stack("local", pg=False, source=source) as stack:
        bench = Bench(stack, tag="get")
        bench.setup(2, 2)
        ids = bulk_fund(bench, args.orders)["ids"]
        if not ids:
            raise RuntimeError("no orders were funded")
        pid = stack.server_pid()
        key = bench.merchant_key
        load(stack.url, key, lambda r: f"/v1/orders/{r.choice(ids)}", args.clients, 5, args.client)  # warm
        c0 = server_cpu_seconds(pid)
        order = load(
            stack.url, key, lambda r: f"/v1/orders/{r.choice(ids)}", args.clients, args.requests, args.client
        )
        served = args.clients * args.requests - order["failed"]
        c1 = server_cpu_seconds(pid)
        # the API process serves them (the sweeps' CPU beside it: what else ran on the machine meanwhile)
        for who in ("api", "service"):
            spent = c1.get(who, 0.0) - c0.get(who, 0.0)
            order[f"{who}_cpu_ms_per_get"] = round(1000 * spent / max(served, 1), 2)
        health = load(stack.url, key, lambda r: "/healthz", args.clients, args.requests, args.client)
        db = next((stack.workdir / "state").glob("*.db"))
        service = in_process(db, ids, key, args.threads, args.calls)
    return {"orders_on_chain": len(ids), "order": order, "healthz": health, "service_in_process": service}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--orders", type=int, default=10_000, help="orders funded on chain and indexed")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=100, help="GETs per client")
    parser.add_argument(
        "--client",
        choices=("lean", "threads"),
        default="lean",
        help="load client: scripts/loadgen.py (lean) or one httpx client per thread, as before (threads)",
    )
    parser.add_argument("--source", help="this commit's service code (git archive), not the work tree")
    parser.add_argument("--threads", type=int, default=8, help="threads of the in-process measurement")
    parser.add_argument("--calls", type=int, default=2000, help="authentication + detail pairs in process")
    args = parser.parse_args()
    runs = [run_once(args) for _ in range(args.runs)]
    for i, r in enumerate(runs, 1):
        print(f"run {i}/{args.runs}: {json.dumps(r)}", file=sys.stderr)
    print(
        json.dumps(
            {
                "command": "bench_get.py " + " ".join(sys.argv[1:]),
                "parameters": vars(args),
                "code": code_identity(args.source),
                "note": "each figure: median of the runs with min and max; latencies in ms; one API process",
                "result": aggregate(runs),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
