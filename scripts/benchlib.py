"""Shared pieces of the service benchmark (scripts/bench_service.py): real server processes, a JSON-RPC
counting proxy in front of anvil, and statistics.

A stack is an anvil on a free port (``AnvilProcess``), the counting proxy in front of it, and
``tradeguard run`` on another free port with its own temporary state directory, whose ``TRADEGUARD_CHAIN``
is the proxy's URL (an anvil URL is a dev chain: the runtime deploys the escrow, turns the dev routes on and
indexes at depth 0).
The ``pg`` configuration adds a fresh PostgreSQL schema (dropped after), a Redis database of its own (flushed
before and after; the machine's Redis is never stopped) and a second Celery worker beside the worker and beat
that ``tradeguard run`` starts itself when ``TRADEGUARD_BROKER_URL`` is set.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_URL = os.environ.get("TRADEGUARD_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: Away from 0 (a developer's own service) and from 10-15 (the test suite's databases).
REDIS_URL = os.environ.get("TRADEGUARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------------------------- RPC proxy


def serve_rpc_proxy(upstream: str, port: int) -> None:
    """Forward JSON-RPC POSTs to ``upstream`` and count them by method (a batch counts each of its calls);
    ``GET /__counts`` answers the counts, ``POST /__reset`` clears them. Runs until killed."""
    parts = urlsplit(upstream)
    host, up_port = parts.hostname or "127.0.0.1", parts.port or 80
    lock = threading.Lock()
    counts: Counter[str] = Counter()
    local = threading.local()

    def count(body: bytes) -> None:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        with lock:
            for call in payload if isinstance(payload, list) else [payload]:
                counts[str(call.get("method") if isinstance(call, dict) else None)] += 1

    def forward(body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):  # a kept-alive connection the node closed is opened again once
            conn: http.client.HTTPConnection | None = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(host, up_port, timeout=120)
            try:
                conn.request("POST", "/", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in separate writes: with Nagle on, the client's delayed ACK holds the body
        # back ~40 ms per call
        disable_nagle_algorithm = True

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            with lock:
                self._answer(200, json.dumps(dict(counts)).encode())

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/__reset":
                with lock:
                    counts.clear()
                self._answer(200, b"{}")
                return
            count(body)
            self._answer(*forward(body))

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


class RpcCounter:
    """The counting proxy (:func:`serve_rpc_proxy`) in a process of its own, so that the benchmark's client
    threads never delay the server's JSON-RPC calls by holding this process's GIL."""

    def __init__(self, upstream: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = urlsplit(self.url).port
        argv = [sys.executable, __file__, "rpc-proxy", upstream, str(port)]
        self._proc = subprocess.Popen(argv, start_new_session=True)
        self._http = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                self._http.get("/__counts")
                return
            except httpx.HTTPError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the RPC counting proxy did not start") from None
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stop(self) -> None:
        self._http.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def reset(self) -> None:
        self._http.post("/__reset", content=b"{}").raise_for_status()

    def snapshot(self) -> dict[str, int]:
        counts: dict[str, int] = self._http.get("/__counts").json()
        return counts


# ------------------------------------------------------------------------------------------------- servers


@dataclass
class Stack:
    """A running configuration: the server's URL and admin key, the anvil behind the counting proxy."""

    name: str
    url: str
    admin_key: str
    anvil_url: str
    rpc: RpcCounter
    db_url: str
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    node_pid: int | None = None

    def server_pid(self) -> int:
        return self.procs[0].pid


def _env(
    state: Path, port: int, chain: str, db_url: str, admin_key: str, broker: str | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.update(
        TRADEGUARD_HOST="127.0.0.1",
        TRADEGUARD_PORT=str(port),
        TRADEGUARD_CHAIN=chain,
        TRADEGUARD_STATE_DIR=str(state),
        TRADEGUARD_DATABASE_URL=db_url,
        TRADEGUARD_ADMIN_API_KEY=admin_key,
        TRADEGUARD_LOG_LEVEL="WARNING",
    )
    if broker:
        env["TRADEGUARD_BROKER_URL"] = broker
    # A/B runs of a setting: BENCH_TRADEGUARD_X=v in the benchmark's environment is the server's TRADEGUARD_X
    env.update({k[len("BENCH_") :]: v for k, v in os.environ.items() if k.startswith("BENCH_TRADEGUARD_")})
    return env


def _spawn(argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:  # cwd: no developer .env is read; own session: its children go with it
        return subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the service's clean shutdown), then SIGKILL of its whole session after a deadline."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        # wait for the exit without reaping it (WNOWAIT): while the leader is unreaped its pid cannot be
        # reused, so the killpg below can only reach this server's own session
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                break
            time.sleep(0.1)
    try:  # children left behind (the worker and beat that `tradeguard run` starts with a broker)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tradeguard run exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"tradeguard run not ready after {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def _database(name: str, pg: bool, state: Path) -> Iterator[str]:
    if not pg:
        yield f"sqlite:///{state / 'bench.db'}"
        return
    from sqlalchemy import create_engine, text

    schema = f"bench_{secrets.token_hex(4)}"
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@contextmanager
def _redis(use: bool) -> Iterator[str | None]:
    if not use:
        yield None
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()


@contextmanager
def start_stack(
    name: str, *, pg: bool, workers: int = 2, source: Path | None = None, api_workers: int | None = None
) -> Iterator[Stack]:
    """Start one configuration (``pg``: PostgreSQL + Redis + ``workers`` Celery workers + beat); ``source``: a
    directory whose ``app``/``workers`` packages the server processes import instead of the work tree's;
    ``api_workers``: API processes (``tradeguard run --workers``; None: ``run``'s default)."""
    from app.chain.anvil import AnvilProcess

    admin_key = "tg_admin_bench_" + secrets.token_urlsafe(18)
    with tempfile.TemporaryDirectory(prefix=f"tg-bench-{name}-") as tmp:
        work = Path(tmp)
        state = work / "state"
        state.mkdir()
        node = AnvilProcess()
        node.start()
        rpc = RpcCounter(node.url)
        try:
            with _database(name, pg, state) as db_url, _redis(pg) as broker:
                port = free_port()
                env = _env(state, port, rpc.url, db_url, admin_key, broker)
                if source is not None:
                    env["PYTHONPATH"] = str(source)
                log = work / "server.log"
                stack = Stack(name, f"http://127.0.0.1:{port}", admin_key, node.url, rpc, db_url, work)
                stack.node_pid = node.pid
                argv = [str(BIN / "tradeguard"), "run"]
                if api_workers is not None:
                    argv += ["--workers", str(api_workers)]
                stack.procs.append(_spawn(argv, env, work, log))
                try:
                    _wait_ready(stack.procs[0], stack.url, log)
                    # `tradeguard run` starts one worker and beat itself when a broker is set
                    for i in range(2, workers + 1 if broker else 0):
                        argv = [str(BIN / "tradeguard"), "worker", "-n", f"bench{i}@%h"]
                        stack.procs.append(_spawn(argv, env, work, work / f"worker{i}.log"))
                    yield stack
                finally:
                    for proc in reversed(stack.procs):
                        _stop(proc)
        finally:
            rpc.stop()
            node.stop()


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command line, CPU seconds so far: user + system) of every readable process."""
    table: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(rest[1]), cmdline or name, (int(rest[11]) + int(rest[12])) / _TICKS)
    return table


def cpu_seconds(
    roots: Sequence[int], node: int | None, proxy: int | None, *, shared: bool
) -> dict[str, float]:
    """CPU seconds used so far, by who used them: the service's processes (``roots`` and their descendants:
    ``api`` for API processes, ``workers`` for Celery workers, ``beat``, ``service`` for ``tradeguard run``
    itself, which in local mode is the whole service), the ``node`` and the ``rpc_proxy`` counting its calls
    (by process id),
    ``postgres`` and ``redis`` (``shared``: the machine's servers, which the pg configuration uses) and the
    load ``client`` (this process). Read from /proc: a phase's figure is the difference of two readings
    (processes that ended in between are not counted)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cmd, _cpu) in table.items():
        children.setdefault(ppid, []).append(pid)
    service: set[int] = set()
    todo = [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        if pid not in service:
            service.add(pid)
            todo.extend(children.get(pid, []))
    used: dict[str, float] = {}
    for pid, (_ppid, cmd, cpu) in table.items():
        if pid == os.getpid():
            who = "client"
        elif pid in service:
            who = (
                "api" if " serve " in cmd else
                "workers" if " worker" in cmd else
                "beat" if " beat" in cmd else
                "service"
            )  # fmt: skip
        elif pid == proxy:
            who = "rpc_proxy"
        elif pid == node:
            who = "node"
        elif shared and cmd.startswith("postgres"):
            who = "postgres"
        elif shared and (cmd.startswith("redis-server") or cmd.startswith("/usr/bin/redis-server")):
            who = "redis"
        else:
            continue
        used[who] = used.get(who, 0.0) + cpu
    return used


def cpu_ms_per(before: dict[str, float], after: dict[str, float], units: int) -> dict[str, float | None]:
    """Milliseconds of CPU per unit (order, ack) between two :func:`cpu_seconds` readings, by user (every
    user of the second reading, 0 for one that used less than a clock tick meanwhile) and in ``total``."""
    if units <= 0:
        return {"total": None}
    spent = {k: max(after[k] - before.get(k, 0.0), 0.0) for k in after}
    per: dict[str, float | None] = {k: round(1000 * v / units, 2) for k, v in sorted(spent.items())}
    per["total"] = round(1000 * sum(spent.values()) / units, 2)
    return per


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


@contextmanager
def source_tree(commit: str | None) -> Iterator[Path | None]:
    """``commit``'s service code (``git archive``: the work tree and the index are not touched) in a temporary
    directory, for the servers to import; None: the work tree as it is."""
    if commit is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="tg-bench-src-") as tmp:
        archive = subprocess.run(
            ["git", "archive", commit, "app", "workers", "contracts"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        # the artifacts' staleness check reads the OpenZeppelin sources they were built from
        (Path(tmp) / "node_modules").symlink_to(ROOT / "node_modules")
        yield Path(tmp)


def code_identity(commit: str | None) -> dict[str, Any]:
    """Which service code a run measured: the archived commit, or HEAD and the work tree's changes to it."""
    if commit is not None:
        return {"source": git("rev-parse", "--short", commit).strip() + " (git archive)"}
    changed = git("status", "--porcelain", "--", "app", "workers", "contracts").splitlines()
    return {"source": "work tree", "head": git("rev-parse", "--short", "HEAD").strip(), "changed": changed}


def server_log_tail(stack: Stack, chars: int = 2000) -> str:
    logs = sorted(stack.workdir.glob("*.log"))
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in logs)


# --------------------------------------------------------------------------------------------------- stats


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100), nearest-rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def p50_p99(values: Sequence[float]) -> dict[str, float | None]:
    return {"p50": _round(percentile(values, 50)), "p99": _round(percentile(values, 99))}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """Median of the runs with min and max beside it (runs without the figure are left out)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None}
    return {
        "median": _round(statistics.median(present)),
        "min": _round(min(present)),
        "max": _round(max(present)),
    }


def aggregate(runs: Sequence[Any]) -> Any:
    """Runs of the same shape folded leaf by leaf: numbers to :func:`spread`, dicts recursively."""
    present = [r for r in runs if r is not None]
    if not present:
        return spread([])
    first = present[0]
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for r in present for k in r))
        return {k: aggregate([r.get(k) for r in runs if isinstance(r, dict)]) for k in keys}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return spread(runs)
    return first


if __name__ == "__main__":
    if sys.argv[1:2] != ["rpc-proxy"] or len(sys.argv) != 4:
        raise SystemExit("usage: benchlib.py rpc-proxy UPSTREAM_URL PORT")
    serve_rpc_proxy(sys.argv[2], int(sys.argv[3]))
