"""The service benchmark (scripts/bench_service.py) end to end at tiny sizes, so that it cannot rot: a real
``tradeguard run`` (local mode) on its own anvil, every figure present in the JSON with sane values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.anvil, pytest.mark.slow, pytest.mark.sqlite_only]

SPREAD = {"median", "min", "max"}


def _spread(value: Any, *, positive: bool = True) -> float:
    assert isinstance(value, dict) and set(value) == SPREAD, value
    assert value["min"] <= value["median"] <= value["max"], value
    if positive:
        assert value["min"] > 0, value
    return float(value["median"])


def _p50_p99(value: Any) -> None:
    assert set(value) == {"p50", "p99"}, value
    assert 0 <= _spread(value["p50"], positive=False) <= _spread(value["p99"], positive=False)


def test_bench_service_quick_prints_every_figure() -> None:
    argv = [
        sys.executable,
        str(ROOT / "scripts/bench_service.py"),
        "--quick",
        "--configs",
        "local",
        "--clients",
        "2",
        "--buyers-per-client",
        "1",
        "--orders",
        "4",
        "--events",
        "3",
        "--chain-orders",
        "8,24",
        "--rpc-window",
        "2",
        "--trail-requests",
        "5",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert set(result["configs"]) == {"local"}
    local = result["configs"]["local"]

    assert local["errors"] == {"total": 0}, local["errors"]
    assert _spread(local["orders_per_s"]) > 0
    assert _spread(local["epcis_ack_per_s"]) > 0
    for latency in ("create_ms", "fund_ms", "epcis_ack_ms", "capture_to_delivered_ms", "trail_query_ms"):
        _p50_p99(local[latency])
    assert set(local["rpc_calls_per_order"]) == {"at_8", "at_24"}
    for at, calls in local["rpc_calls_per_order"].items():
        per_order = _spread(calls)
        methods = local["rpc_methods_per_order"][at]
        assert {"eth_sendRawTransaction", "eth_getTransactionReceipt"} <= set(methods), methods
        assert sum(_spread(m) for m in methods.values()) == pytest.approx(per_order, rel=0.05)
    # local mode: the service is the one `tradeguard run` process, beside the node, the proxy and the client
    for phase in ("orders_phase_per_order", "epcis_phase_per_ack"):
        cpu = {k: _spread(v, positive=False) for k, v in local["cpu_ms"][phase].items()}
        assert {"service", "node", "rpc_proxy", "client", "total"} <= set(cpu), cpu
        assert cpu["service"] > 0 and cpu["total"] == pytest.approx(sum(cpu.values()) - cpu["total"], abs=0.1)
    # the GETs: the API processes (one process, "service", on one core) and the client; the node is not asked
    cpu = {k: _spread(v, positive=False) for k, v in local["cpu_ms"]["trail_phase_per_get"].items()}
    assert cpu.get("api", 0) + cpu.get("service", 0) > 0 and cpu["client"] > 0, cpu
    assert cpu["total"] == pytest.approx(sum(cpu.values()) - cpu["total"], abs=0.1)
    # the server's processes count their full garbage collections (app.heap: each settles its start-up heap
    # with one, before the run, so a short run may see none)
    for span in ("trail_phase", "run"):
        gc_full = {k: _spread(v, positive=False) for k, v in local["gc_full_collections"][span].items()}
        assert set(gc_full) == {"count", "ms_total", "ms_mean"} and gc_full["count"] >= 0, gc_full
    counts = {k: v["median"] for k, v in local["counts"].items()}
    assert counts["orders_funded"] == 4
    assert counts["epcis_acked"] == 4
    assert counts["delivered_events"] == counts["delivered_seen"] == 3
    assert counts["rpc_window_orders"] == 2
    # the trail queries cover the orders funded directly on chain and indexed by the service
    assert counts["trail_orders_in_pool"] >= 20
    assert counts["trail_requests"] == 2 * 5
    assert result["parameters"]["runs"] == 1
