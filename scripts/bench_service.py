"""Service throughput benchmark (issue 8, item 8): real server processes, concurrent HTTP clients, JSON out.

For each configuration, each run starts a fresh stack (scripts/benchlib.py): anvil on a free port behind a
JSON-RPC counting proxy, and ``tradeguard run`` on a free port with its own temporary state directory.

- ``local``: the default local mode: SQLite, no broker (tasks run eagerly, in process).
- ``pg``: PostgreSQL (a fresh schema, dropped after) + Redis (database 7, flushed before and after) + 2 Celery
  workers (the one ``tradeguard run`` starts with a broker, and one more) + beat (``tradeguard run``'s too).

A run, in order (every measured request over loopback HTTP; scripts/benchload.py, scripts/benchchain.py):

1. setup: merchant, oracle and buyer principals through the admin API; each buyer wallet gets tokens.
2. the chain is brought to the first ``--chain-orders`` figure (100) with orders funded directly on chain in
   batches; ``rpc_calls_per_order`` there = JSON-RPC calls of the server and workers while one client creates
   and funds ``--rpc-window`` orders one after another, each waited for until it shows funded, / those orders.
3. ``orders_per_s``: ``--clients`` (32) clients create and fund ``--orders`` orders, each client with
   ``--buyers-per-client`` buyer wallets (a buyer's next order waits for its previous one to show funded: a
   permit nonce funds one order); first create to the last order seen funded through the API, i.e. funded on
   chain and indexed. Create and fund (POST funding, to its 202) latency p50/p99.
4. ``epcis_ack_per_s``: a shipment is registered per funded order, then ``--clients`` clients post one EPCIS
   shipping capture per order; time to the 202. Then every order is waited for until shipped (not timed).
   The clients (``--ack-client``): scripts/loadgen.py (``lean``, the default, as in 6), or threads of this
   process (``threads``, the harness before it).
5. ``capture_to_delivered_ms``: receiving captures offered at ``--rate`` per second (open loop) for
   ``--events`` shipped orders; time from each capture's 202 to the order first seen delivered (a watcher
   pages through the delivered orders every 50 ms).
6. the chain is brought to the last ``--chain-orders`` figure (10,000) the same way; the service's indexer
   projects each of those orders into its database (they are the benchmark merchant's), so the database then
   holds that many orders with their chain events: nothing is inserted into the database directly.
   ``trail_query_ms``: ``--clients`` clients GET /v1/orders/{id} of random orders, ``--trail-requests`` each.
   Then ``rpc_calls_per_order`` at that figure, as in 2.

Each figure is the median of ``--runs`` runs with min and max beside it. Errors (unexpected statuses,
timeouts) are counted by phase and route, summed over the runs, never raised.

    .venv/bin/python scripts/bench_service.py                       # the issue's measures (long)
    .venv/bin/python scripts/bench_service.py --quick --configs local
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchchain import bulk_fund, rpc_window  # noqa: E402
from benchlib import (  # noqa: E402
    aggregate,
    code_identity,
    cpu_ms_per,
    cpu_seconds,
    server_log_tail,
    source_tree,
    start_stack,
)
from benchload import Bench  # noqa: E402

CONFIGS = ("local", "pg")
QUICK = {
    "runs": 1,
    "clients": 4,
    "orders": 8,
    "rate": 20.0,
    "events": 6,
    "chain_orders": "20,60",
    "rpc_window": 3,
    "trail_requests": 10,
}


def run_once(
    config: str, args: argparse.Namespace, run_no: int, source: Path | None
) -> tuple[dict[str, Any], Counter[str]]:
    """One run of one configuration on a fresh stack: its figures and its errors."""
    t_start = time.perf_counter()
    first, last = args.chain_orders
    api = args.api_workers_pg if config == "pg" else args.api_workers_local
    with start_stack(config, pg=config == "pg", workers=2, source=source, api_workers=api) as stack:
        bench = Bench(stack, tag=f"{config}{run_no}")
        try:
            buyers = args.clients * args.buyers_per_client + 1
            per_buyer = -(-args.orders // (args.clients * args.buyers_per_client)) + args.rpc_window
            bench.setup(buyers, per_buyer)
            steps: dict[str, float] = {"setup_s": time.perf_counter() - t_start}
            bulk_first = bulk_fund(bench, first - args.rpc_window)
            rpc_first = rpc_window(bench, args.rpc_window)
            t = time.perf_counter()
            who = ([p.pid for p in stack.procs], stack.node_pid, stack.rpc.pid)
            lock0, cpu0 = bench.write_lock(), cpu_seconds(*who, shared=config == "pg")
            gc0 = bench.gc_full()
            orders = bench.orders_phase(args.orders, args.clients, args.buyers_per_client, args.cart_size)
            lock1, cpu1 = bench.write_lock(), cpu_seconds(*who, shared=config == "pg")
            steps["orders_s"] = time.perf_counter() - t
            t = time.perf_counter()
            ssccs = bench.ship_all(orders["ids"])
            lock2, cpu2 = bench.write_lock(), cpu_seconds(*who, shared=config == "pg")
            acks = bench.epcis_ack_phase(ssccs, args.clients, args.ack_client)
            lock3, cpu3 = bench.write_lock(), cpu_seconds(*who, shared=config == "pg")
            cpu3["client"] = cpu3.get("client", 0.0) + acks["client_cpu_s"]  # a lean client's own process
            steps["epcis_s"] = time.perf_counter() - t
            t = time.perf_counter()
            delivered = bench.delivered_phase(ssccs, acks["shipped"], args.rate, args.events)
            steps["delivered_s"] = time.perf_counter() - t
            t = time.perf_counter()
            bulk_last = bulk_fund(bench, last - args.rpc_window)
            steps["bulk_s"] = time.perf_counter() - t
            t = time.perf_counter()
            pool = orders["ids"] + bulk_first["ids"] + bulk_last["ids"]
            gc4 = bench.gc_full()  # scraped outside the CPU figures' span
            cpu4 = cpu_seconds(*who, shared=config == "pg")
            trail = bench.trail_phase(pool, args.clients, args.trail_requests)
            cpu5 = cpu_seconds(*who, shared=config == "pg")
            # the load client of this phase is a process of its own, ended by now: it reported its CPU
            cpu5["client"] = cpu5.get("client", 0.0) + trail["client_cpu_s"]
            gc5 = bench.gc_full()
            steps["trail_s"] = time.perf_counter() - t
            rpc_last = rpc_window(bench, args.rpc_window)
        except Exception:
            print(server_log_tail(stack), file=sys.stderr)
            raise
    steps["total_s"] = time.perf_counter() - t_start
    figures = {
        "orders_per_s": orders["orders_per_s"],
        "create_ms": orders["create_ms"],
        "fund_ms": orders["fund_ms"],
        "epcis_ack_per_s": acks["epcis_ack_per_s"],
        "epcis_ack_ms": acks["ack_ms"],
        "capture_to_delivered_ms": delivered["capture_to_delivered_ms"],
        "trail_query_ms": trail["trail_query_ms"],
        "rpc_calls_per_order": {
            f"at_{first}": rpc_first["calls_per_order"],
            f"at_{last}": rpc_last["calls_per_order"],
        },
        "rpc_methods_per_order": {
            f"at_{first}": rpc_first["methods_per_order"],
            f"at_{last}": rpc_last["methods_per_order"],
        },
        # who held the database's write lock, per order in the orders phase and per ack in the EPCIS phase
        # (scraped from the server's /metrics; sweeps included: they share the lock)
        "db_write_lock": {
            "orders_phase_per_order": bench.write_lock_per(lock0, lock1, orders["funded"]),
            "epcis_phase_per_ack": bench.write_lock_per(lock2, lock3, acks["acked"]),
        },
        # CPU spent by every process of the run (service, node, database, broker, load client), per order in
        # the orders phase, per ack in the EPCIS phase (which includes shipping them all) and per GET in the
        # trail phase: on 2 cores the figures above are bounded by these, and these move far less from run to
        # run
        "cpu_ms": {
            "orders_phase_per_order": cpu_ms_per(cpu0, cpu1, orders["funded"]),
            "epcis_phase_per_ack": cpu_ms_per(cpu2, cpu3, acks["acked"]),
            "trail_phase_per_get": cpu_ms_per(cpu4, cpu5, trail["requests"]),
        },
        # full garbage collections of the server's processes (each holds its process: every request in
        # flight on an API process waits), from /metrics: in the trail phase, and from the orders phase on
        "gc_full_collections": {
            "trail_phase": bench.gc_full_between(gc4, gc5),
            "run": bench.gc_full_between(gc0, gc5),
        },
        "counts": {
            "orders_funded": orders["funded"],
            "epcis_acked": acks["acked"],
            "epcis_all_shipped_after_s": acks["all_shipped_after_s"],
            "delivered_offered_per_s": delivered["offered_per_s"],
            "delivered_events": delivered["events"],
            "delivered_seen": delivered["delivered"],
            "trail_orders_in_pool": trail["orders_queried"],
            "trail_requests": trail["requests"],
            "trail_requests_per_s": trail["per_s"],
            "rpc_window_orders": rpc_last["orders"],
            "bulk_funded": bulk_first["funded"] + bulk_last["funded"],
            "bulk_sent_s": bulk_last.get("sent_s"),
            "bulk_indexed_after_s": bulk_last.get("indexed_after_s"),
        },
        "seconds": {k: round(v, 1) for k, v in steps.items()},
    }
    return figures, bench.errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: local,pg")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--api-workers-local",
        type=int,
        help="API processes in the local config (run --workers N; default: what `tradeguard run` starts)",
    )
    parser.add_argument("--api-workers-pg", type=int, default=2, help="API processes in the pg config")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--orders", type=int, default=320, help="orders created and funded by the clients")
    parser.add_argument("--buyers-per-client", type=int, default=2)
    parser.add_argument(
        "--cart-size",
        type=int,
        default=1,
        help="orders a buyer funds at once as a cart (/v1/carts: one permit, one request); 1: one by one",
    )
    parser.add_argument("--rate", type=float, default=50.0, help="receiving captures offered per second")
    parser.add_argument("--events", type=int, default=200, help="receiving captures offered (<= orders)")
    parser.add_argument(
        "--chain-orders",
        default="100,10000",
        help="orders on chain for the RPC counts; the last is the trail's",
    )
    parser.add_argument("--rpc-window", type=int, default=20, help="orders funded one by one per RPC count")
    parser.add_argument("--trail-requests", type=int, default=100, help="GETs per client")
    parser.add_argument(
        "--ack-client",
        choices=("lean", "threads"),
        default="lean",
        help="the EPCIS ack phase's clients: scripts/loadgen.py (lean) or threads of this process",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke check")
    parser.add_argument(
        "--source",
        metavar="COMMIT",
        help="run the servers on this commit's app/ and workers/ (git archive to a temporary directory), "
        "e.g. the code before a change while the work tree moves on; default: the work tree",
    )
    if parser.parse_args(argv).quick:  # the quick sizes are defaults: explicit flags still win
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if unknown := set(args.configs) - set(CONFIGS):
        parser.error(f"unknown configs: {sorted(unknown)}")
    args.chain_orders = sorted(int(x) for x in args.chain_orders.split(","))
    if len(args.chain_orders) != 2 or args.chain_orders[0] <= args.rpc_window:
        parser.error("--chain-orders takes two figures, the first above --rpc-window")
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the stacks' context managers: servers stopped, schema dropped


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "parameters": {k: v for k, v in vars(args).items() if k != "quick"},
        "notes": [
            "each figure: median of the runs with min and max; latencies in ms",
            "the orders for trail_query_ms are funded on chain in batches (contract fund, 200 a transaction) "
            "and indexed by the service itself; the measured GETs go over HTTP to the server",
            "rpc counts: every JSON-RPC call of the server and its workers through a counting proxy in front "
            "of anvil while one client funds --rpc-window orders one by one (background sweeps included)",
            "pg: 2 Celery workers = the one `tradeguard run` starts with a broker + one more; its beat; "
            "--api-workers-pg API processes (`tradeguard run --workers N`)",
            "anvil is started by the benchmark (free port, behind the proxy) and given to the server as a "
            "JSON-RPC URL: local mode otherwise (SQLite, no broker, the sweeps on background threads of the "
            "server; API processes: --api-workers-local if given, else `tradeguard run`'s default, one per "
            "CPU core up to 4)",
        ],
        "configs": {},
    }
    result["code"] = []
    for config in args.configs:
        runs: list[dict[str, Any]] = []
        errors: Counter[str] = Counter()
        for run_no in range(args.runs):
            with source_tree(args.source) as source:
                result["code"].append({"config": config, "run": run_no + 1, **code_identity(args.source)})
                figures, errs = run_once(config, args, run_no, source)
            runs.append(figures)
            errors.update(errs)
            print(
                f"{config} run {run_no + 1}/{args.runs}: {json.dumps(figures)}", file=sys.stderr, flush=True
            )
        summary = aggregate(runs)
        summary["errors"] = {"total": sum(errors.values()), **dict(sorted(errors.items()))}
        result["configs"][config] = summary
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
