"""An anvil node started and stopped by this process (``ChainClient.start_anvil``, the test fixtures).

anvil comes from the npm package ``@foundry-rs/anvil`` (``make setup``), else from ``PATH``. It starts on a
free local port with the well-known test mnemonic's accounts pre-funded, and is stopped cleanly so that it
writes its state file.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO

from web3 import HTTPProvider, Web3

from app.chain import compiler
from app.chain.devchain import EMBEDDED_ACCOUNTS
from app.errors import ChainUnavailable


class AnvilProcess:
    """An anvil node owned by this process: started on a free port, stopped on :meth:`stop`."""

    def __init__(
        self,
        *,
        port: int | None = None,
        state_file: Path | None = None,
        chain_id: int = 31337,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.extra_args = list(extra_args)
        self.port = port or _free_port()
        self.state_file = state_file
        self.chain_id = chain_id
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """JSON-RPC URL of the node."""
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        """Path of the anvil binary (npm package first, then PATH)."""
        local = compiler.PROJECT_ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
        if local.exists():
            return str(local)
        found = shutil.which("anvil")
        if not found:
            raise ChainUnavailable("anvil not found: run `make setup` (npm package @foundry-rs/anvil)")
        return found

    def start(self, timeout: float = 30.0) -> None:
        """Start anvil and wait until it answers JSON-RPC."""
        cmd = [
            self.binary(),
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--silent",
            "--accounts",
            str(EMBEDDED_ACCOUNTS),
            "--gas-limit",
            "60000000",
        ]
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            cmd += ["--state", str(self.state_file)]
        cmd += self.extra_args
        # stderr goes to a file, not a pipe nobody drains (a full pipe would block the node)
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._stderr)
        w3 = Web3(HTTPProvider(self.url, request_kwargs={"timeout": 2}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._stderr.seek(0)
                err = self._stderr.read().decode(errors="replace")
                self.stop()
                raise ChainUnavailable(f"anvil exited with {code}: {err.strip()}")
            with suppress(Exception):
                if w3.eth.chain_id == self.chain_id:
                    return
            time.sleep(0.05)
        self.stop()
        raise ChainUnavailable(f"anvil did not answer on {self.url} within {timeout}s")

    def stop(self) -> None:
        """Stop anvil (it writes its state file on a clean exit)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


__all__ = ["AnvilProcess"]
