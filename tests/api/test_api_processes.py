"""``tradeguard run --workers N``: N API processes on one socket, the sweeps in the parent (no broker), the
processes' kicks forwarded to it; a process that dies is replaced while the others keep answering."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app import cli
from app.chain.anvil import AnvilProcess
from app.chain.client import ChainClient
from app.client import demo
from app.services.runtime import DEV_ROLES

pytestmark = [pytest.mark.anvil, pytest.mark.slow, pytest.mark.sqlite_only]  # its own SQLite either way

ROOT = Path(__file__).resolve().parents[2]


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


def _api_processes(parent: int) -> set[int]:
    """The pids of ``parent``'s ``app.cli serve`` children."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"serve" in cmdline:
            found.add(int(entry.name))
    return found


@pytest.fixture
def node() -> Iterator[AnvilProcess]:
    anvil = AnvilProcess()
    anvil.start()
    try:
        yield anvil
    finally:
        anvil.stop()


def test_two_api_processes_settle_the_demo_on_kicks_alone_and_a_killed_one_is_replaced(
    node: AnvilProcess, tmp_path: Path
) -> None:
    admin_key = "tg_admin_" + secrets.token_urlsafe(24)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.update(
        TRADEGUARD_CHAIN=node.url,
        TRADEGUARD_STATE_DIR=str(tmp_path),
        TRADEGUARD_ADMIN_API_KEY=admin_key,
        TRADEGUARD_PORT=str(port),
        # no periodic sweep within the test: only the processes' forwarded kicks move the orders
        TRADEGUARD_SWEEP_SECONDS="3600",
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
        # "ready" is printed once an API process answers: a client with a short timeout is served at once
        _until(lambda: b"ready; Ctrl-C" in (tmp_path / "server.log").read_bytes(), 90, "the ready line")
        assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        _until(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200, 90, "ready")
        assert len(_api_processes(proc.pid)) == 2

        accounts = ChainClient.rpc(node.url).dev_accounts(10)
        wallets = demo.Wallets(
            merchant=accounts[DEV_ROLES["merchant"]],
            buyer=accounts[DEV_ROLES["buyer"]],
            arbitrator=accounts[DEV_ROLES["arbitrator"]],
            oracle_address=accounts[DEV_ROLES["oracle"]].address,
        )
        with httpx.Client(base_url=url, timeout=60) as client:
            try:
                result = demo.run(client, admin_key, wallets, say=lambda _line: None)
            except demo.DemoError as exc:
                log.flush()
                raise AssertionError(f"{exc}\n--- server log ---\n{_tail(tmp_path)}") from exc
        assert result["happy"]["status"] == "released"
        assert result["happy"]["split"]["seller_net"] == str(197_500_000)
        assert result["dispute"]["status"] == "resolved"
        assert result["timeout"]["status"] == "refunded"

        victim = min(_api_processes(proc.pid))
        os.kill(victim, signal.SIGKILL)
        _until(
            lambda: len(_api_processes(proc.pid)) == 2 and victim not in _api_processes(proc.pid),
            60,
            "a new API process",
        )
        for _ in range(20):  # whichever process takes the connection answers
            assert httpx.get(f"{url}/v1/chain", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "server.log").read_text()[-3000:]
    assert not _api_processes(proc.pid)


def test_workers_above_one_are_refused_on_the_in_process_chain(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.update(TRADEGUARD_CHAIN="embedded", TRADEGUARD_STATE_DIR=str(tmp_path))
    for argv, message in (
        (["--workers", "2"], "not 'embedded'"),
        (["--workers", "0"], "at least 1"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "run", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=60,
        )
        err = done.stderr.decode()
        assert done.returncode == 1 and message in err and "Traceback" not in err, err


@pytest.mark.parametrize(("cores", "on_a_node"), [(1, 1), (2, 2), (3, 3), (4, 4), (16, 4)])
def test_without_workers_run_serves_one_api_process_per_core_up_to_the_cap(
    monkeypatch: pytest.MonkeyPatch, cores: int, on_a_node: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert cli.default_api_processes("local") == on_a_node == min(cores, cli.DEFAULT_API_PROCESSES_CAP)
    assert cli.default_api_processes("http://127.0.0.1:8545") == on_a_node
    assert cli.default_api_processes("embedded") == 1  # served in process: the chain is in it


def _tail(tmp_path: Path) -> str:
    return (tmp_path / "server.log").read_text(errors="replace")[-6000:]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
