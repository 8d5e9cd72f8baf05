"""``tradeguard`` command line.

- ``run``: the service in local mode (an anvil it starts and owns, SQLite under ``var/``, Celery on Redis
  when ``TRADEGUARD_BROKER_URL`` is set, else the sweeps on background threads of the process, the API in
  child processes), seeded with demo principals on a dev chain; prints the URL and the demo API keys.
- ``demo``: starts the service in process and drives three orders through its HTTP API only.
- ``worker`` / ``beat``: the Celery worker and scheduler (need ``TRADEGUARD_BROKER_URL``).
- ``keys create``: a principal and its API key (e.g. the first admin).
- ``compile``: build the contract artifacts; ``chain-demo``: the contract-level demo with gas per step.
- ``chain resume``: clear the halt flag the indexer sets on a reorg deeper than the finality depth.

Errors print one line and exit non-zero; configuration comes from ``TRADEGUARD_*`` (see the README).
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from app.chain import compiler
from app.chain.client import ChainClient
from app.config import Settings, get_settings
from app.errors import TradeGuardError

# The service's layers (runtime, database) are imported inside the commands that run the service, so that
# `tradeguard verify` (an audit against any node) never loads the database layer (tests/api/test_verify.py).
if TYPE_CHECKING:
    from app.services.runtime import Runtime
    from workers.sweepers import Sweepers

log = logging.getLogger("tradeguard")


def _open_chain(settings: Settings) -> ChainClient:
    if settings.chain == "local":
        from app.services.runtime import start_local_anvil

        return start_local_anvil(settings)
    if settings.chain == "embedded":
        return ChainClient.embedded()
    return ChainClient.rpc(settings.chain, timeout=60)


@contextmanager
def service_runtime(settings: Settings) -> Iterator[Runtime]:
    """The process runtime for ``run`` and ``demo``: chain (started here in local mode), database, escrow."""
    from app.services.bootstrap import prepare
    from app.services.runtime import build_runtime, set_runtime
    from workers.celery_app import celery_app, configure

    chain = _open_chain(settings)
    try:
        rt = build_runtime(settings, chain=chain)
    except BaseException:
        chain.close()
        raise
    set_runtime(rt)
    configure(celery_app, settings)
    try:
        prepare(rt)
        yield rt
    finally:
        set_runtime(None)
        rt.close()


def _background(rt: Runtime, stop: threading.Event) -> Sweepers:
    """No broker: relay, inbox, indexer, keeper and webhooks on background threads of this process, so
    that requests only validate, store and answer (:mod:`workers.sweepers`)."""
    from workers.tasks import start_background

    return start_background(rt, stop)


def _serve(rt: Runtime, host: str, port: int) -> tuple[object, threading.Thread]:
    import uvicorn

    from app.main import create_app

    config = uvicorn.Config(create_app(), host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="tradeguard-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise TradeGuardError(f"the HTTP server did not start on {host}:{port} (port taken?)")
        time.sleep(0.05)
    return server, thread


@contextmanager
def _metrics_dir() -> Iterator[Path | None]:
    """``PROMETHEUS_MULTIPROC_DIR`` for this process and every process it starts: a fresh directory this
    command owns and removes when it ends, so that ``/metrics`` of any API process merges the in-process
    series of all of them (API processes, the sweeps, the Celery worker and beat it starts).

    It must be set before prometheus-client is first imported here (the value class is chosen then); if it
    was imported already (``cmd_run`` called inside another program), every process counts on its own."""
    if "prometheus_client" in sys.modules:
        log.warning("prometheus-client was loaded before `run` began: /metrics counts per process")
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="tradeguard-metrics-"))
    previous = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = previous
        shutil.rmtree(path, ignore_errors=True)


def _exited(proc: subprocess.Popen[bytes]) -> None:
    """A child process ended: its live gauges leave ``/metrics`` (its counters stay counted)."""
    from app.services import metrics

    metrics.process_exited(proc.pid)


#: Most API processes ``run`` starts by default (``--workers`` sets any number).
DEFAULT_API_PROCESSES_CAP = 4


def default_api_processes(chain: str) -> int:
    """API processes when ``--workers`` is not given: one per CPU core available to this process, at most
    :data:`DEFAULT_API_PROCESSES_CAP`; 1 on the in-process chain (the processes must share a node).

    One API process runs on one core at a time (one GIL). On this 2-core machine a second one took the EPCIS
    acks from 93 to 163 a second, their p99 from 499 to 304 ms, and the order GETs' p50 from 150 to 77 ms
    (scripts/bench_service.py, medians of interleaved runs, issue 8)."""
    if chain == "embedded":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, DEFAULT_API_PROCESSES_CAP))


def cmd_run(settings: Settings, workers: int = 1) -> int:
    """Run the service until interrupted; ``workers`` > 1 serves the API from that many processes."""
    with _metrics_dir():
        return _run_service(settings, workers)


def _run_service(settings: Settings, workers: int) -> int:
    from app import heap
    from app.services.bootstrap import seed_demo

    children: list[subprocess.Popen[bytes]] = []
    with service_runtime(settings) as rt:
        url = f"http://{settings.host}:{settings.port}"
        print(f"TradeGuard on {url}  (docs {url}/docs)")
        print(f"  chain {rt.chain.backend} id {rt.chain.chain_id}, escrow {rt.escrow.address}")
        print(f"  database {_masked(settings.db_url)}")
        print(
            "  tasks: "
            + (
                f"Celery on {_masked(settings.broker_url)}"
                if settings.broker_url
                else "background threads, in process"
            )
        )
        if rt.chain.is_dev_chain:
            print("  demo API keys (new on every start; stored hashed):")
            demo_keys = seed_demo(rt)
            for k in demo_keys:
                print(f"    {k.role:<10} {k.address or '-':<42}  {k.api_key}")
            from app.client.remote_demo import KEYS_FILE, write_keys

            write_keys(settings.state_dir / KEYS_FILE, demo_keys)  # for `tradeguard demo --url`
            print(f"  console {url}/console/ (sign in with a key above); `make demo` fills it with orders")
        heap.settle()  # the sweeps run here, each holding the database's write lock in its turn
        stop = threading.Event()
        background = _background(rt, stop) if settings.eager else None
        if not settings.eager:
            env = {**os.environ, "TRADEGUARD_CHAIN": rt.settings.chain}
            for what in ("worker", "beat"):
                children.append(subprocess.Popen([sys.executable, "-m", "app.cli", what], env=env))
        # The API serves from processes of its own whenever they can share the node: the sweeps (inbox,
        # relay, index, keeper) then run here without taking the GIL from requests. In one process they took
        # 84 % of it while captures were acked (py-spy, issue 8), and acks queued for seconds behind them.
        apart = workers > 1 or rt.chain.backend != "embedded"
        api = _ApiProcesses(settings, workers, stop) if apart else None
        if api is not None:
            server, thread = None, api.start()
        else:
            server, thread = _serve(rt, settings.host, settings.port)
        try:
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            if api is None or api.wait_serving():
                print("ready; Ctrl-C stops it", flush=True)
            while thread.is_alive() and not stop.is_set():
                stop.wait(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            if server is not None:
                server.should_exit = True  # type: ignore[attr-defined]
            thread.join(timeout=30)
            if background is not None:
                background.join()
            for child in children:
                child.terminate()
            for child in children:
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                _exited(child)
    return 0


#: Connections the parent's listening socket keeps waiting for an API process to take.
BACKLOG = 2048


class _ApiProcesses:
    """``tradeguard run --workers N``: N API processes, each with its own runtime on the same database and
    node. Without a broker the sweeps stay in the parent, and the processes forward their kicks to it over a
    pipe. A process that dies is started again.

    The processes share the parent's listening socket: each takes one waiting connection at a time and
    leaves it a few turns to a process with fewer open connections (their counts in a memfd the parent
    passes, :class:`app.serving.Loads`), so that the connections are shared out evenly
    (:class:`app.serving.TurnTakingServer`). Its backlog keeps the connections that arrive while a process
    restarts."""

    def __init__(self, settings: Settings, count: int, stop: threading.Event) -> None:
        self.settings, self.count, self.stop = settings, count, stop
        self.sock = socket.create_server((settings.host, settings.port), backlog=BACKLOG)
        self.sock.set_inheritable(True)
        from app.serving import Loads

        self.loads = Loads.create(count) if count > 1 and hasattr(os, "memfd_create") else None
        pipe = os.pipe() if settings.eager else None
        self.kick_read: int | None = pipe[0] if pipe else None
        self.kick_write: int | None = pipe[1] if pipe else None
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, slot: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "app.cli", "serve", "--fd", str(self.sock.fileno())]
        fds = [self.sock.fileno()]
        if self.kick_write is not None:
            argv += ["--kick-fd", str(self.kick_write)]
            fds.append(self.kick_write)
        if self.loads is not None:
            self.loads.set(slot, 0)  # a process that died took its connections with it
            argv += ["--loads-fd", str(self.loads.fd), "--slot", str(slot)]
            fds.append(self.loads.fd)
        return subprocess.Popen(argv, pass_fds=fds)

    def start(self) -> threading.Thread:
        from workers import sweepers

        if self.kick_read is not None:
            sweepers.listen(self.kick_read, self.stop)
        self.procs = [self.spawn(slot) for slot in range(self.count)]
        thread = threading.Thread(target=self.watch, name="tradeguard-api-processes", daemon=True)
        thread.start()
        return thread

    def wait_serving(self, timeout: float = 120.0) -> bool:
        """Wait until an API process answers ``/healthz`` on the socket, so that "ready" is true when it is
        printed (a client of the socket waits in its backlog meanwhile, and one with a short timeout, as
        ``make demo``'s probe, gave up): True then, False if the service is stopped meanwhile; raise if no
        process answers within ``timeout`` seconds."""
        host, port = self.sock.getsockname()[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while not self.stop.is_set():
            conn = http.client.HTTPConnection(host, port, timeout=2)
            try:
                conn.request("GET", "/healthz")
                status = conn.getresponse().status
                if status == 200:
                    return True
                last = f"/healthz answered {status}"
            except OSError as exc:  # not serving yet (a process still starting): asked again below
                last = f"{type(exc).__name__}: {exc}"
            finally:
                conn.close()
            if time.monotonic() > deadline:
                raise TradeGuardError(
                    f"no API process answered on {host}:{port} within {timeout:.0f} s (last: {last})"
                )
            self.stop.wait(0.1)  # returns at once when the service is stopped meanwhile
        return False

    def watch(self) -> None:
        while not self.stop.wait(1.0):
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    log.warning("API process %s exited with %s; starting another", proc.pid, proc.returncode)
                    _exited(proc)
                    self.procs[i] = self.spawn(i)
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _exited(proc)
        self.sock.close()
        if self.loads is not None:
            self.loads.close()


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket behind ``fd``, as what it is (TCP).

    uvicorn's own ``fd=`` takes every descriptor for a Unix socket, and asyncio sets ``TCP_NODELAY`` only
    on the connections of a TCP one: the API processes answered with Nagle's algorithm on, and a client's
    next request on the same connection waited out the delayed ACK (48 ms a GET at one client, issue 8)."""
    return socket.socket(fileno=fd)


def cmd_serve(
    settings: Settings, fd: int, kick_fd: int | None, loads_fd: int | None = None, slot: int = 0
) -> int:
    """One API process of ``run --workers N``: serve the app on the inherited listening socket ``fd``, which
    the other API processes share (:class:`app.serving.TurnTakingServer`; ``loads_fd``: their connection
    counts, this process's at ``slot``)."""
    import uvicorn

    from app import heap
    from app.main import create_app
    from app.services.runtime import build_runtime, set_runtime
    from app.serving import Loads, TurnTakingServer
    from workers import sweepers
    from workers.celery_app import celery_app, configure

    rt = build_runtime(settings)
    set_runtime(rt)
    configure(celery_app, settings)
    sweepers.forward_to(kick_fd)
    try:
        config = uvicorn.Config(create_app(), log_level="warning", lifespan="off")
        heap.settle()  # before the first request: full collections no longer walk the start-up heap
        loads = Loads(loads_fd, None) if loads_fd is not None else None
        TurnTakingServer(config, inherited_socket(fd), loads, slot).run()
    finally:
        set_runtime(None)
        rt.close()
    return 0


def cmd_demo(settings: Settings) -> int:
    """Start the service in process and drive the demo orders through its HTTP API (and, for the actions
    SPEC §4 has no signed message for, the parties' own wallets)."""
    import httpx

    from app.client import demo

    admin_key = "tg_admin_" + secrets.token_urlsafe(24)
    settings = settings.model_copy(update={"admin_api_key": _secret(admin_key)})
    with service_runtime(settings) as rt:
        if not rt.chain.is_dev_chain or not rt.is_dev:
            raise TradeGuardError("the demo needs a dev chain with TRADEGUARD_DEV on (faucet and dev clock)")
        stop = threading.Event()
        background = _background(rt, stop) if settings.eager else None
        server, thread = _serve(rt, settings.host, settings.port)
        url = f"http://{settings.host}:{settings.port}"
        print(f"demo against {url} (chain {rt.chain.backend}, escrow {rt.escrow.address})")
        wallets = demo.Wallets(
            merchant=rt.dev_accounts["merchant"],
            buyer=rt.dev_accounts["buyer"],
            arbitrator=rt.dev_accounts["arbitrator"],
            oracle_address=rt.dev_accounts["oracle"].address,
        )
        try:
            from app.client.wallet import NodeWallet

            # the parties' own wallets send the refund and the withdrawal straight to the chain
            wallet = NodeWallet(rt.chain, rt.lock if rt.chain.backend == "embedded" else None)
            with httpx.Client(base_url=url, timeout=120) as client:
                demo.run(client, admin_key, wallets, wallet=wallet)
        finally:
            stop.set()
            server.should_exit = True  # type: ignore[attr-defined]
            thread.join(timeout=10)
            if background is not None:
                background.join()
    return 0


def _masked(url: str) -> str:
    """A URL with its password hidden (database and broker URLs may carry one)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: show only its scheme
        return url.split("://", 1)[0] + "://…"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _secret(value: str) -> object:
    from pydantic import SecretStr

    return SecretStr(value)


def cmd_celery(settings: Settings, what: str, extra: Sequence[str]) -> int:
    if not settings.broker_url:
        raise TradeGuardError(
            f"tradeguard {what} needs TRADEGUARD_BROKER_URL (e.g. redis://127.0.0.1:6379/0)"
        )
    from workers.celery_app import celery_app

    # no startup banner in the JSON log format: every line the process writes is one JSON object
    quiet = ["--quiet"] if settings.log_format == "json" else []
    if what == "worker":
        from workers.sweepers import lower_priority

        # the sweeps run here: TRADEGUARD_SWEEP_NICE steps below the API processes, as the background sweeps
        lower_priority(settings.sweep_nice)
        argv = [
            *quiet,
            "worker",
            "--loglevel",
            settings.log_level,
            "--pool",
            "solo",
            "--queues",
            "tradeguard",
            *extra,
        ]
    else:
        schedule = settings.state_dir / "celerybeat-schedule"
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [*quiet, "beat", "--loglevel", settings.log_level, "--schedule", str(schedule), *extra]
    celery_app.start(argv)
    return 0


def cmd_chain_resume(settings: Settings) -> int:
    """Clear the chain halt flag (after a deep reorg, once the operator has looked at the chain)."""
    from app.db.migrate import upgrade
    from app.db.session import make_engine, make_session_factory
    from app.services import chain_guard

    engine = make_engine(settings.db_url)
    try:
        upgrade(engine)
        cleared = chain_guard.clear_halt(make_session_factory(engine))
    finally:
        engine.dispose()
    print(f"cleared: {cleared.code}: {cleared.reason}" if cleared else "no chain halt was set")
    return 0


def cmd_keys(settings: Settings, role: str, address: str | None, name: str) -> int:
    from app.db.migrate import upgrade
    from app.db.session import make_engine, make_session_factory, transaction
    from app.services import principals

    engine = make_engine(settings.db_url)
    try:
        upgrade(engine)
        with transaction(make_session_factory(engine)) as s:
            issued = principals.create_principal(s, role, address, name)
    finally:
        engine.dispose()
    print(f"{issued.principal.role} {issued.principal.id} {issued.principal.address or ''}".rstrip())
    print(f"api key (shown once): {issued.api_key}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``tradeguard verify``: print the audit's JSON report; exit 0 when everything agrees, 2 when not."""
    import json

    import httpx

    from app.client.verify import VerifyError, verify

    if args.api and not args.api_key:
        raise TradeGuardError("--api needs --api-key (an admin key: the audit reads every order)")
    if args.evidence_dir is not None and not args.evidence_dir.is_dir():
        raise TradeGuardError(f"--evidence-dir {args.evidence_dir} is not a directory")
    try:
        report = verify(
            args.rpc,
            args.escrow,
            from_block=args.from_block,
            evidence=args.evidence_dir,
            api=args.api,
            api_key=args.api_key,
        )
    except (VerifyError, httpx.HTTPError, OSError, ValueError) as exc:
        raise TradeGuardError(f"verify: {exc}") from exc
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tradeguard`` console script."""
    parser = argparse.ArgumentParser(prog="tradeguard", description="TradeGuard escrow settlement service")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the service (local mode: anvil, SQLite, eager tasks by default)")
    p_run.add_argument("--host", help="default TRADEGUARD_HOST (127.0.0.1)")
    p_run.add_argument("--port", type=int, help="default TRADEGUARD_PORT (8000)")
    p_run.add_argument(
        "--workers",
        type=int,
        help="API processes, apart from the sweeps' process (default: one per CPU core, at most "
        f"{DEFAULT_API_PROCESSES_CAP}; on 'embedded' 1, served in process)",
    )
    p_serve = sub.add_parser("serve", help=argparse.SUPPRESS)  # one API process of `run --workers N`
    p_serve.add_argument("--fd", type=int, required=True)
    p_serve.add_argument("--kick-fd", type=int)
    p_serve.add_argument("--loads-fd", type=int)
    p_serve.add_argument("--slot", type=int, default=0)
    p_demo = sub.add_parser("demo", help="start the service and drive three orders through its HTTP API")
    p_demo.add_argument("--chain", choices=("embedded", "local"), default="embedded")
    p_demo.add_argument("--url", help="drive the running service at URL instead (e.g. http://127.0.0.1:8000)")
    p_demo.add_argument("--keys", help="with --url: the demo keys file (default <state dir>/demo-keys.json)")
    p_demo.add_argument(
        "--rpc",
        default="http://127.0.0.1:8545",
        help="with --url: the dev chain's node, for the parties' own wallets (default: make run's anvil)",
    )
    sub.add_parser("worker", help="Celery worker (needs TRADEGUARD_BROKER_URL)")
    sub.add_parser("beat", help="Celery beat: re-enqueues every sweep (needs TRADEGUARD_BROKER_URL)")
    p_keys = sub.add_parser("keys", help="API keys")
    keys_sub = p_keys.add_subparsers(dest="keys_command", required=True)
    p_create = keys_sub.add_parser("create", help="create a principal and print its API key once")
    p_create.add_argument(
        "--role", required=True, choices=("admin", "merchant", "buyer", "oracle", "arbitrator", "regulator")
    )
    p_create.add_argument("--address", help="0x address (required except for admin)")
    p_create.add_argument("--name", default="")
    p_compile = sub.add_parser("compile", help="compile the contracts into contracts/build")
    p_compile.add_argument("--check", action="store_true", help="only check artifacts are fresh")
    p_chain = sub.add_parser("chain-demo", help="contract-level demo with the gas of each step")
    p_chain.add_argument("--chain", choices=("embedded", "anvil"), default="embedded")
    p_verify = sub.add_parser(
        "verify", help="audit the escrow from the chain's logs alone (and the service's answers); JSON out"
    )
    p_verify.add_argument("--rpc", required=True, help="JSON-RPC URL of any node of the chain")
    p_verify.add_argument("--escrow", required=True, help="the escrow's address")
    p_verify.add_argument("--from-block", type=int, default=0, help="the escrow's deployment block")
    p_verify.add_argument("--evidence-dir", type=Path, help="evidence files under DIR/<order id>/")
    p_verify.add_argument("--api", help="the service's URL, to compare what it reports")
    p_verify.add_argument("--api-key", help="an admin API key for --api")
    p_halt = sub.add_parser("chain", help="chain guard: `chain resume` clears a deep-reorg halt")
    p_halt.add_argument("action", choices=("resume",))
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("worker", "beat"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kombu warns about the in-memory transport that eager mode never uses for sending
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)
    try:
        if args.command == "compile":
            return compiler.main(["--check"] if args.check else [])
        if args.command == "chain-demo":
            from app.client.chain_demo import demo

            return demo(args.chain, 129_990_000, 3 * 86_400)
        settings = get_settings()
        # one logging setup for every process (API, sweeps, `run`'s parent); Celery's workers apply it again
        # after their own (workers.celery_app.structured_logs)
        from app import logs

        logs.configure(settings)
        if args.command == "run":
            updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
            workers = default_api_processes(settings.chain) if args.workers is None else args.workers
            if workers < 1:
                raise TradeGuardError("--workers must be at least 1")
            if workers > 1 and settings.chain == "embedded":
                raise TradeGuardError("--workers above 1 needs a node the processes share, not 'embedded'")
            return cmd_run(settings.model_copy(update=updates), workers)
        if args.command == "serve":
            return cmd_serve(settings, args.fd, args.kick_fd, args.loads_fd, args.slot)
        if args.command == "demo" and args.url:
            import httpx

            from app.client import remote_demo
            from app.client.demo import DemoError

            keys = Path(args.keys) if args.keys else settings.state_dir / remote_demo.KEYS_FILE
            try:
                remote_demo.run(args.url, keys, rpc=args.rpc)
            except (DemoError, httpx.HTTPError) as exc:
                print(f"tradeguard demo: {exc}", file=sys.stderr)
                return 1
            return 0
        if args.command == "demo":
            updates2: dict[str, object] = {"chain": args.chain, "dev": True, "port": _free_port()}
            if args.chain == "embedded" and not settings.database_url:
                # the in-process chain is new every time, so is its database
                with tempfile.TemporaryDirectory(prefix="tradeguard-demo-") as tmp:
                    updates2["database_url"] = f"sqlite:///{tmp}/demo.db"
                    return cmd_demo(settings.model_copy(update=updates2))
            return cmd_demo(settings.model_copy(update=updates2))
        if args.command in ("worker", "beat"):
            return cmd_celery(settings, args.command, extra)
        if args.command == "verify":
            return cmd_verify(args)
        if args.command == "chain":
            return cmd_chain_resume(settings)
        return cmd_keys(settings, args.role, args.address, args.name)
    except (TradeGuardError, compiler.CompilerError) as exc:
        print(f"tradeguard: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
