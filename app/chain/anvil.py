"""An anvil node started and stopped by this process (``ChainClient.start_anvil``, the test fixtures).

anvil comes from the npm package ``@foundry-rs/anvil`` (``make setup``), else from ``PATH``. It starts on a
free local port with the well-known test mnemonic's accounts pre-funded.

**State.** With a ``state_file`` the node is not left to write it itself (anvil's own ``--state`` dump is
not atomic: a node killed while writing leaves a truncated file it then refuses). Instead this process saves
it every :data:`SAVE_SECONDS` when the head moved, and on :meth:`AnvilProcess.stop`: ``anvil_dumpState``,
written to a temporary file in the same directory, fsynced, the previous save kept beside it as
``<state>.bak`` (a hard link, so a good file is always in place), then renamed over the state file. The dev
clock (the latest block's time and its offset from the wall clock) is saved beside it, atomically too, in
``<stem>.clock.json``. A start loads the state with ``--load-state`` and puts the clock back
(``anvil_setTime``): block time never goes behind the last saved block, and a clock moved forward
(``advance_time``) stays forward. A state file that does not parse, or that anvil refuses, is a
:class:`~app.errors.CorruptChainState` naming the file and its backup: never a silent fresh chain.

**Watchdog.** A node with a state file that dies (killed, crashed) is started again from its last save on
the same port within about a second; the restarts are counted in :attr:`AnvilProcess.restarts`.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO, Any, cast

from web3 import HTTPProvider, Web3

from app.chain import compiler
from app.chain.devchain import EMBEDDED_ACCOUNTS
from app.errors import ChainUnavailable, CorruptChainState

log = logging.getLogger(__name__)

#: How often a node with a state file has it saved (when its head moved since the last save).
SAVE_SECONDS = 1.0


class AnvilProcess:
    """An anvil node owned by this process: started on a free port, stopped on :meth:`stop`."""

    def __init__(
        self,
        *,
        port: int | None = None,
        state_file: Path | None = None,
        chain_id: int = 31337,
        extra_args: Sequence[str] = (),
        save_seconds: float = SAVE_SECONDS,
    ) -> None:
        self.extra_args = list(extra_args)
        self.port = port or _free_port()
        self.state_file = state_file
        self.chain_id = chain_id
        self.save_seconds = save_seconds
        #: Times the watchdog started the node again after it died.
        self.restarts = 0
        #: The block number of the last save (None before the first one).
        self.saved_block: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._w3 = Web3(HTTPProvider(self.url, request_kwargs={"timeout": 30}))
        self._save_lock = threading.Lock()
        self._saved_head: str | None = None
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

    @property
    def url(self) -> str:
        """JSON-RPC URL of the node."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The node's process id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def backup_file(self) -> Path | None:
        """The previous save, kept beside the state file."""
        return None if self.state_file is None else _backup_of(self.state_file)

    @property
    def clock_file(self) -> Path | None:
        """The dev clock saved with the state (latest block time and its offset from the wall clock)."""
        return None if self.state_file is None else _clock_of(self.state_file)

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
        """Start anvil (from the state file if there is one) and wait until it answers JSON-RPC.

        Raises :class:`~app.errors.CorruptChainState` for a state file that cannot be loaded.
        """
        self._stopping.clear()
        self._launch(timeout)
        if self.state_file is None:
            return
        try:
            self._restore_clock()
            self._saved_head = self._head()[1] if self.state_file.exists() else None
        except BaseException:
            self.stop()
            raise
        self._watchdog = threading.Thread(target=self._watch, name=f"anvil-{self.port}-state", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        """Stop anvil; with a state file, save it first (atomically, see the module docstring)."""
        self._stopping.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=30)
        self._watchdog = None
        if self.state_file is not None and self.pid is not None:
            try:
                self.save_state(force=True)
            except Exception as exc:  # the last periodic save stays in place
                log.warning("anvil state not saved on stop: %s", exc)
        self._terminate()

    def save_state(self, *, force: bool = False) -> bool:
        """Save the node's state and dev clock now (atomically, keeping the previous save as a backup);
        False if nothing changed since the last save and not ``force``."""
        if self.state_file is None:
            raise ChainUnavailable("this anvil has no state file")
        with self._save_lock:
            number, head, timestamp = self._head()
            if not force and head == self._saved_head:
                return False
            dumped = bytes.fromhex(str(self._rpc("anvil_dumpState")).removeprefix("0x"))
            state = gzip.decompress(dumped) if dumped[:2] == b"\x1f\x8b" else dumped
            wall = time.time()
            clock = {
                "block": number,
                "block_time": timestamp,
                "saved_at": wall,
                "offset": timestamp - int(wall),
            }
            _write_atomically(self.state_file, state, keep_backup=True)
            _write_atomically(_clock_of(self.state_file), json.dumps(clock).encode(), keep_backup=False)
            self._saved_head, self.saved_block = head, number
            return True

    # ------------------------------------------------------------------ internals

    def _launch(self, timeout: float) -> None:
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
        loading = False
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            loading = check_state_file(self.state_file)
            if loading:
                cmd += ["--load-state", str(self.state_file)]
        cmd += self.extra_args
        # stderr goes to a file, not a pipe nobody drains (a full pipe would block the node)
        self._stderr = tempfile.TemporaryFile()
        # its own process group: a Ctrl-C at the terminal stops us, and we stop it after its last save
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self._stderr, process_group=0 if self.state_file else None
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._stderr.seek(0)
                err = self._stderr.read().decode(errors="replace").strip()
                self._terminate()
                if loading and self.state_file is not None and "state" in err.lower():
                    raise CorruptChainState(
                        str(self.state_file),
                        _existing(_backup_of(self.state_file)),
                        f"anvil refused it: {err}",
                    )
                raise ChainUnavailable(f"anvil exited with {code}: {err}")
            with suppress(Exception):
                if self._w3.eth.chain_id == self.chain_id:
                    return
            time.sleep(0.05)
        self._terminate()
        raise ChainUnavailable(f"anvil did not answer on {self.url} within {timeout}s")

    def _terminate(self) -> None:
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

    def _restore_clock(self) -> None:
        """Block time never behind the last block, and a dev clock moved forward stays forward."""
        assert self.state_file is not None
        offset = 0
        clock_file = _clock_of(self.state_file)
        if clock_file.exists():
            try:
                offset = int(json.loads(clock_file.read_text())["offset"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning(
                    "dev clock file %s unreadable (%s): the latest block's time is kept", clock_file, exc
                )
        wall = int(time.time())
        target = max(wall + offset, self._head()[2])
        if target > wall:
            self._rpc("anvil_setTime", target)
            log.info("anvil clock restored to %d (%+d s from the wall clock)", target, target - wall)

    def _head(self) -> tuple[int, str, int]:
        block = self._w3.eth.get_block("latest")
        return int(block["number"]), "0x" + bytes(block["hash"]).hex(), int(block["timestamp"])

    def _rpc(self, method: str, *params: Any) -> Any:
        response = self._w3.provider.make_request(cast(Any, method), list(params))
        if response.get("error"):
            raise ChainUnavailable(f"{method}: {response['error']}")
        return response.get("result")

    def _watch(self) -> None:
        """Save the state when the head moved; start the node again from it if it died."""
        while not self._stopping.wait(self.save_seconds):
            proc = self._proc
            if proc is not None and proc.poll() is None:
                try:
                    self.save_state()
                except Exception as exc:  # the node may be going down: the watchdog looks next time
                    log.warning("anvil state not saved: %s", exc)
                continue
            code = proc.returncode if proc is not None else None
            log.error(
                "anvil on port %d exited (code %s); starting it again from %s",
                self.port,
                code,
                self.state_file,
            )
            try:
                with self._save_lock:
                    self._terminate()
                    self._launch(30.0)
                    self._restore_clock()
                self.restarts += 1
            except Exception as exc:  # stays down; tried again on the next tick
                log.error("anvil could not be started again: %s", exc)


def check_state_file(path: Path) -> bool:
    """Whether ``path`` holds a state to load (False: none, start a new chain).

    Raises :class:`~app.errors.CorruptChainState` when it exists but does not parse as an anvil state, or is
    missing while a backup of it exists (a new chain would silently replace the saved one).
    """
    backup = _existing(_backup_of(path))
    with contextlib.suppress(FileNotFoundError):
        path.with_name(path.name + ".tmp").unlink()  # an interrupted save; the state file is intact
    if not path.exists():
        if backup is not None:
            raise CorruptChainState(str(path), backup, "it is missing but its backup is there")
        return False
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CorruptChainState(str(path), backup, f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict) or not {"block", "accounts"} <= data.keys():
        raise CorruptChainState(str(path), backup, "it is JSON but not an anvil state (no block, accounts)")
    return True


def _backup_of(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def _clock_of(path: Path) -> Path:
    return path.with_name(path.stem + ".clock.json")


def _existing(path: Path) -> str | None:
    return str(path) if path.exists() else None


def _write_atomically(path: Path, data: bytes, *, keep_backup: bool) -> None:
    """Write ``data`` to ``path`` so that a crash at any point leaves the old or the new file, never a part;
    with ``keep_backup`` the old file stays beside it as ``<path>.bak``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if keep_backup and path.exists():
        backup, linked = _backup_of(path), path.with_name(path.name + ".bak.tmp")
        with contextlib.suppress(FileNotFoundError):
            linked.unlink()
        try:
            os.link(path, linked)
        except OSError:  # no hard links here: a copy does as well
            shutil.copyfile(path, linked)
        os.replace(linked, backup)
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


__all__ = ["SAVE_SECONDS", "AnvilProcess", "check_state_file"]
