"""Fuzz the live HTTP API with schemathesis (``--checks all``) with an admin key, then with a merchant key.

Starts a real ``tradeguard run`` process on a free port, with its own temporary state directory and SQLite
database (the developer's ``var/`` is never touched), creates a merchant through the API with the admin key,
then runs the schemathesis CLI against ``/openapi.json`` over HTTP for each key. Prints one JSON object (cases
per key, failures by check, 5xx answers, duration and the exact commands) and exits non-zero on any failure,
on any 5xx, or when fewer cases than ``--min-cases`` ran for a key. The server is stopped at the end, also on
error or Ctrl-C.

``positive_data_acceptance`` accepts, per operation, the statuses that the OpenAPI itself declares reachable
by schema-valid input (responses marked ``x-schema-valid-input``): a business-rule 422 that the document does
not declare is a failure.

    .venv/bin/python scripts/fuzz_api.py [--max-examples 25] [--seed 1] [--deterministic] [--min-cases 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: schemathesis' own default for positive_data_acceptance (config/_checks.py); the document adds to it.
POSITIVE_DEFAULT = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
VALID_INPUT_MARK = "x-schema-valid-input"
START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """The running ``tradeguard run``: its URL, log and process."""

    def __init__(self, url: str, log_path: Path, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.log_path = log_path
        self.proc = proc
        self.peak_rss_mb = 0.0

    def sample(self, stop: threading.Event) -> None:
        """Track the process's peak resident memory (an OOM kill leaves no traceback behind)."""
        while not stop.wait(0.5):
            try:
                status = Path(f"/proc/{self.proc.pid}/status").read_text()
            except OSError:
                return
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    self.peak_rss_mb = max(self.peak_rss_mb, int(line.split()[1]) / 1024)

    def exit_code(self) -> int | None:
        """``None`` while it runs; else its exit code (negative: killed by that signal)."""
        return exit_status(self.proc)


@contextmanager
def live_server(tmp: Path, chain: str, admin_key: str) -> Iterator[Server]:
    """``tradeguard run`` in its own session, on a free port, state in ``tmp``."""
    port = free_port()
    state = tmp / "state"
    state.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")},
        "TRADEGUARD_HOST": "127.0.0.1",
        "TRADEGUARD_PORT": str(port),
        "TRADEGUARD_CHAIN": chain,
        "TRADEGUARD_STATE_DIR": str(state),
        "TRADEGUARD_DATABASE_URL": f"sqlite:///{state / 'fuzz.db'}",
        "TRADEGUARD_ADMIN_API_KEY": admin_key,
        "TRADEGUARD_DEV": "1",
        "TRADEGUARD_LOG_LEVEL": "WARNING",
        "PYTHONFAULTHANDLER": "1",  # a crash in C (a segfault) still leaves its Python stack in the log
    }
    log_path = tmp / "server.log"
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        # cwd=tmp: no developer .env is read; a new session so that anvil (local mode) goes with it
        proc = subprocess.Popen(
            [str(BIN / "tradeguard"), "run"],
            cwd=tmp,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stop = threading.Event()
        try:
            _wait_ready(proc, url, log_path)
            server = Server(url, log_path, proc)
            threading.Thread(target=server.sample, args=(stop,), daemon=True).start()
            yield server
        finally:
            stop.set()
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if exit_status(proc) is not None:
            tail = log_path.read_text()[-3000:]
            raise RuntimeError(f"tradeguard run exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    tail = log_path.read_text()[-3000:]
    raise RuntimeError(f"tradeguard run not ready after {START_TIMEOUT_S:.0f} s:\n{tail}")


def exit_status(proc: subprocess.Popen[bytes]) -> int | None:
    """The child's exit code (negative: the signal that killed it), or ``None`` while it runs. The child is
    not reaped, so its pid, which is also its session's process group id, cannot be reused meanwhile."""
    if proc.returncode is not None:
        return proc.returncode
    info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if info is None:
        return None
    return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the service's clean shutdown), then after a deadline SIGKILL; then SIGKILL whatever is left of
    its session (anvil in local mode) while its leader is still unreaped, and reap it."""
    if exit_status(proc) is None:
        os.kill(proc.pid, signal.SIGTERM)  # not send_signal: it would reap the child first
        deadline = time.monotonic() + 30
        while exit_status(proc) is None and time.monotonic() < deadline:
            time.sleep(0.1)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def create_merchant(url: str, admin_key: str, seed: int) -> str:
    """A merchant principal made through the API; its address is derived from the seed (reproducible)."""
    address = "0x" + hashlib.sha256(f"tradeguard fuzz merchant {seed}".encode()).hexdigest()[:40]
    resp = httpx.post(
        f"{url}/v1/principals",
        json={"role": "merchant", "address": address, "name": "fuzz merchant"},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    if resp.status_code != 201:
        raise RuntimeError(f"creating the merchant failed: {resp.status_code} {resp.text}")
    return str(resp.json()["api_key"])


def valid_input_statuses(document: dict[str, Any]) -> dict[str, list[str]]:
    """Per operation (``METHOD /path``): the statuses the document marks reachable by schema-valid input."""
    out: dict[str, list[str]] = {}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            marked = sorted(
                str(code)
                for code, response in operation["responses"].items()
                if isinstance(response, dict) and response.get(VALID_INPUT_MARK)
            )
            if marked:
                out[f"{method.upper()} {path}"] = marked
    return out


def config_toml(per_operation: dict[str, list[str]]) -> str:
    """A schemathesis config: per operation, positive_data_acceptance also accepts the declared statuses."""
    lines = []
    for name, statuses in sorted(per_operation.items()):
        expected = [*POSITIVE_DEFAULT, *(s for s in statuses if s not in POSITIVE_DEFAULT)]
        lines += [
            "[[operations]]",
            f"include-name = {json.dumps(name)}",
            f"checks.positive_data_acceptance.expected-statuses = {json.dumps(expected)}",
            "",
        ]
    return "\n".join(lines)


def run_schemathesis(
    url: str, role: str, key: str, config: Path, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """One schemathesis CLI run over HTTP with ``key``; its JSON report, status counts and output."""
    report = work / f"report-{role}.json"
    stats = work / f"stats-{role}.json"
    command = [
        str(BIN / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {key}",
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--workers",
        str(args.workers),
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    # deterministic generation keeps no example database; otherwise keep none either (no files left behind)
    command += ["--generation-deterministic"] if args.deterministic else ["--generation-database", "none"]
    if args.phases:
        command += ["--phases", args.phases]
    if args.har:  # schemathesis writes the HAR whenever its path is given
        command[command.index("json")] = "json,har"
        command += ["--report-har-path", str(work / f"requests-{role}.har")]
    command += args.st_arg
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "fuzz_hooks",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "scripts"), os.environ.get("PYTHONPATH", "")]),
        "TG_FUZZ_STATS": str(stats),
    }
    t0 = time.monotonic()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    output = done.stdout + done.stderr
    (work / f"schemathesis-{role}.log").write_text(output)
    doc: dict[str, Any] = json.loads(report.read_text()) if report.exists() else {}
    counts: dict[str, Any] = json.loads(stats.read_text()) if stats.exists() else {}
    shown = [part.replace(key, f"<{role} key>") for part in command]
    failures: dict[str, int] = {}
    for group in doc.get("failures", []):
        label = f"{group['code']} {group['title']}"
        failures[label] = failures.get(label, 0) + int(group["count"])
    return {
        "cases": doc.get("test_cases", {}).get("generated", 0),
        "calls": counts.get("calls", 0),
        "statuses": counts.get("statuses", {}),
        "server_errors": counts.get("server_errors", 0),
        "server_error_samples": counts.get("server_error_samples", []),
        "failures": failures,
        "failing_operations": sorted({op for g in doc.get("failures", []) for op in g.get("operations", [])}),
        "errors": doc.get("errors", []),
        "exit_code": done.returncode,
        "seconds": round(seconds, 1),
        "command": shlex.join(shown),
        "output_tail": output[-4000:] if done.returncode else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=25, help="cases per operation and phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chain", default="embedded", help="embedded (fastest) or local (own anvil)")
    parser.add_argument("--roles", default="admin,merchant")
    parser.add_argument("--deterministic", action="store_true", help="--generation-deterministic")
    parser.add_argument("--phases", default="", help="schemathesis --phases (default: all)")
    parser.add_argument("--min-cases", type=int, default=0, help="fail when a key ran fewer cases")
    parser.add_argument(
        "--st-arg", action="append", default=[], help="one more schemathesis run argument (repeatable)"
    )
    parser.add_argument("--har", action="store_true", help="record every request (work dir, with --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, reports)")
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tg-fuzz-"))
    admin_key = "tg_fuzz_admin_" + secrets.token_hex(16)
    result: dict[str, Any] = {"seed": args.seed, "max_examples": args.max_examples, "chain": args.chain}
    ok = False
    try:
        with live_server(work, args.chain, admin_key) as server:
            url = server.url
            keys = {"admin": admin_key, "merchant": create_merchant(url, admin_key, args.seed)}
            document = httpx.get(f"{url}/openapi.json", timeout=30).json()
            config = work / "schemathesis.toml"
            config.write_text(config_toml(valid_input_statuses(document)))
            result["operations"] = sum(
                1 for item in document["paths"].values() for op in item.values() if isinstance(op, dict)
            )
            runs = {}
            for role in [r.strip() for r in args.roles.split(",") if r.strip()]:
                runs[role] = run_schemathesis(url, role, keys[role], config, work, args)
            died = server.exit_code()
            server_log = server.log_path.read_text(errors="replace")
            result["server_peak_rss_mb"] = round(server.peak_rss_mb, 1)
        if died is not None:
            result["server_died"] = {"exit_code": died, "log_tail": server_log[-3000:]}
        result["runs"] = runs
        result["cases_per_key"] = {role: r["cases"] for role, r in runs.items()}
        result["server_errors"] = sum(r["server_errors"] for r in runs.values())
        result["server_tracebacks"] = server_log.count("Traceback (most recent call last)")
        result["failures"] = {role: r["failures"] for role, r in runs.items() if r["failures"]}
        short = [role for role, r in runs.items() if r["cases"] < args.min_cases]
        if short:
            result["too_few_cases"] = short
        ok = (
            died is None
            and not short
            and result["server_errors"] == 0
            and result["server_tracebacks"] == 0
            and all(r["exit_code"] == 0 and not r["failures"] and not r["errors"] for r in runs.values())
        )
    except Exception as exc:  # report it in the JSON, then fail
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        result["seconds"] = round(time.monotonic() - t0, 1)
        result["ok"] = ok
        if args.keep or not ok:
            result["work_dir"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
