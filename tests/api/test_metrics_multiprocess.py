"""``/metrics`` under ``tradeguard run --workers 2``: prometheus-client's multiprocess mode, so a scrape of
either API process counts the requests both served, and the parent's sweeps.

Which process serves a connection is whichever takes it first from the socket they share (each takes one a
turn of its event loop). The test sends 40 requests, each on a new connection, so that both processes serve
some.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from app.chain.anvil import AnvilProcess
from tests.api.test_api_processes import ROOT, _api_processes, _free_port, _until

pytestmark = [pytest.mark.anvil, pytest.mark.slow, pytest.mark.sqlite_only]

#: the route the test counts: one nothing else asks (``run`` probes ``/healthz`` itself, and a probe that
#: timed out while a process was starting may still be served, and counted, later)
ROUTE = "/v1/chain"
COUNTED = f'tradeguard_http_request_duration_seconds_count{{method="GET",route="{ROUTE}",status="200"}}'


@pytest.fixture
def node() -> Iterator[AnvilProcess]:
    anvil = AnvilProcess()
    anvil.start()
    try:
        yield anvil
    finally:
        anvil.stop()


def _sample(text: str, series: str) -> float | None:
    """The value of one exact series in a Prometheus text exposition (None when absent)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def _served_by(metrics_dir: Path, pid: int) -> float:
    """How many GET :data:`ROUTE` the process ``pid`` counted, from its own file only."""
    files = [str(f) for f in metrics_dir.glob(f"histogram_{pid}.db")]
    for metric in MultiProcessCollector.merge(files):
        for s in metric.samples:
            if s.name.endswith("_count") and s.labels.get("route") == ROUTE:
                return s.value
    return 0.0


def _full_collections(metrics_dir: Path, pid: int) -> float:
    """How many full garbage collections the process ``pid`` counted (app.heap), from its own file only."""
    files = [str(f) for f in metrics_dir.glob(f"histogram_{pid}.db")]
    for metric in MultiProcessCollector.merge(files):
        for s in metric.samples:
            if s.name == "tradeguard_gc_full_collection_seconds_count":
                return s.value
    return 0.0


def _get(url: str, times: int) -> None:
    for _ in range(times):  # a new connection each time: the accepting process is the one that serves it
        assert httpx.get(f"{url}{ROUTE}", timeout=10).status_code == 200


def test_metrics_of_two_api_processes_count_the_requests_of_both_and_the_parents_sweeps(
    node: AnvilProcess, tmp_path: Path
) -> None:
    port = _free_port()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        TMPDIR=str(tmp),  # where `run` makes its metrics directory
        TRADEGUARD_CHAIN=node.url,
        TRADEGUARD_STATE_DIR=str(tmp_path),
        TRADEGUARD_ADMIN_API_KEY="tg_admin_" + secrets.token_urlsafe(24),
        TRADEGUARD_PORT=str(port),
    )
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200, 90, "ready")
        (metrics_dir,) = tmp.glob("tradeguard-metrics-*")
        first, second = sorted(_api_processes(proc.pid))
        _until(lambda: b"ready; Ctrl-C" in (tmp_path / "server.log").read_bytes(), 90, "the ready line")
        before = {pid: _served_by(metrics_dir, pid) for pid in (first, second)}
        # every process froze its start-up heap (app.heap) with one full collection, which it counted; an
        # API process does so before it serves, and the other one may have answered readyz alone so far
        for pid in (proc.pid, first, second):
            _until(lambda pid=pid: _full_collections(metrics_dir, pid) >= 1, 60, f"{pid} settled its heap")

        _get(url, 40)
        # a request is counted after its answer is sent: wait for the last one
        _until(
            lambda: sum(_served_by(metrics_dir, p) for p in (first, second)) == sum(before.values()) + 40,
            30,
            "40 counted",
        )
        for pid in (first, second):
            assert _served_by(metrics_dir, pid) > before[pid], "one process took no connection"
        served = sum(before.values()) + 40
        scrapes = [httpx.get(f"{url}/metrics", timeout=30) for _ in range(4)]
        for scrape in scrapes:  # whichever process answers, it counts the requests of both
            assert scrape.status_code == 200
            assert _sample(scrape.text, COUNTED) == served, scrape.text
            # the parent's background sweeps, written to the same directory
            assert (
                _sample(scrape.text, 'tradeguard_sweep_duration_seconds_count{outcome="done",sweep="index"}')
                or 0
            ) >= 1
            assert _sample(scrape.text, 'tradeguard_sweep_last_success_timestamp_seconds{sweep="relay"}')
            # one request (this scrape) in progress, summed over the live processes
            assert _sample(scrape.text, "tradeguard_http_requests_in_progress") == 1
        assert (metrics_dir / f"histogram_{proc.pid}.db").exists()  # the parent's own file (sweeps)

        # a killed API process: its live gauge leaves, its counts stay
        os.kill(first, signal.SIGKILL)
        _until(lambda: not (metrics_dir / f"gauge_livesum_{first}.db").exists(), 60, "the dead one dropped")
        _until(lambda: len(_api_processes(proc.pid)) == 2, 60, "a new API process")
        text = httpx.get(f"{url}/metrics", timeout=30).text
        assert _sample(text, COUNTED) == served
        assert re.search(r"^tradeguard_http_requests_in_progress 1\.0$", text, re.M), text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "server.log").read_text()[-3000:]
    assert not list(tmp.glob("tradeguard-metrics-*")), "run removes its metrics directory"
