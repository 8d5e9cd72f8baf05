"""Browser tests of the web console: the service over HTTP (uvicorn in a thread, on the test runtime),
Debian's chromium driven by Playwright, and a test-side EIP-1193 wallet injected into every page.

The wallet signs ``eth_signTypedData_v4`` with keys this test holds (the dev accounts of the embedded chain),
and sends ``eth_sendTransaction`` signed with them to the chain (the parties' own wallets); nothing in the
page knows it is a test. Each role gets its own browser context (its own cookie jar), signed
in through the sign-in form. Waits are on page state (a status badge, a notice), never on time.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from app.chain.eip712 import sign_typed_data
from app.client.wallet import NodeWallet
from app.services.bootstrap import DemoKey, prepare, seed_demo
from app.services.runtime import Runtime, set_runtime
from workers.celery_app import celery_app, configure

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium")

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
#: Playwright's own timeout for one wait on page state (a generous bound for a slow CI machine, not a sleep).
WAIT_MS = 30_000
playwright_sync.expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/bootstrap.sh installs it when run as root)")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@dataclass
class Live:
    """A running service: its base URL, runtime and demo principals (role → key, address)."""

    url: str
    runtime: Runtime
    keys: dict[str, DemoKey]

    def chain_time(self) -> int:
        with self.runtime.lock:
            return self.runtime.chain.now()


@pytest.fixture
def live(runtime: Runtime) -> Iterator[Live]:
    """The app over ``runtime`` served by uvicorn on a free port (as ``tradeguard run`` serves it)."""
    import uvicorn

    from app.main import create_app

    set_runtime(runtime)
    configure(celery_app, runtime.settings)
    prepare(runtime)
    keys = {k.role: k for k in seed_demo(runtime)}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no other process can take the port meanwhile
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="web-test-http", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Live(f"http://127.0.0.1:{port}", runtime, keys)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        set_runtime(None)


#: The test-side EIP-1193 provider: accounts and signatures come from the test (``__tgSign``).
WALLET_JS = """
window.ethereum = {
  isTradeGuardTestWallet: true,
  async request({ method, params }) {
    if (method === "eth_requestAccounts" || method === "eth_accounts") return [window.__tgAccount];
    if (method === "eth_chainId") return "0x" + Number(window.__tgChainId).toString(16);
    if (method === "eth_signTypedData_v4") return await window.__tgSign(params[0], params[1]);
    if (method === "eth_sendTransaction") return await window.__tgSend(JSON.stringify(params[0]));
    throw new Error("test wallet: unsupported " + method);
  },
};
"""


@dataclass
class Session:
    """One role's browser context and page."""

    role: str
    context: Any
    page: Any
    signed: list[dict[str, Any]]
    #: transactions the wallet sent (``eth_sendTransaction``): the parameters the page gave it
    sent: list[dict[str, Any]] = field(default_factory=list)

    def goto(self, url: str) -> Any:
        """Open ``url``. An order page reloads itself when its order changes (live updates): a ``goto`` that
        meets that reload is interrupted by it (Chromium says ``interrupted by another navigation`` or, when
        the reload aborts the request, ``net::ERR_ABORTED``), and is made again once the page has loaded."""
        for attempt in range(3):
            try:
                self.page.goto(url)
                break
            except playwright_sync.Error as exc:
                met_reload = any(m in str(exc) for m in ("interrupted by another navigation", "ERR_ABORTED"))
                if not met_reload or attempt == 2:
                    raise
                self.page.wait_for_load_state()
        return self.page


@pytest.fixture
def sign_in(browser: Any, live: Live) -> Iterator[Callable[..., Session]]:
    """``sign_in(role)``: a fresh context with the role's wallet injected, signed in through the form."""
    contexts: list[Any] = []
    accounts: dict[str, LocalAccount] = {a.address.lower(): a for a in live.runtime.dev_accounts.values()}

    def open_as(role: str, *, key: DemoKey | None = None, inject_wallet: bool = True) -> Session:
        key = key or live.keys[role]
        context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live.url)
        contexts.append(context)
        signed: list[dict[str, Any]] = []

        def sign(address: str, typed: str) -> str:
            account = accounts[address.lower()]
            document = json.loads(typed)
            signed.append(document)
            return "0x" + sign_typed_data(account.key, document).hex()

        sent: list[dict[str, Any]] = []

        def send(tx_json: str) -> str:
            # the party's own wallet: signs with the test's key and sends to the chain's node (NodeWallet,
            # as the demo does), after checking the transaction is for this account and chain
            tx = json.loads(tx_json)
            sent.append(tx)
            wallet = NodeWallet(live.runtime.chain, live.runtime.lock)
            return wallet.send(
                accounts[tx["from"].lower()], {"transaction": {**tx, "chainId": int(tx["chainId"], 16)}}
            )

        if inject_wallet:
            context.expose_function("__tgSign", sign)
            context.expose_function("__tgSend", send)
            context.add_init_script(
                f"window.__tgAccount = {json.dumps(key.address or '')}; window.__tgChainId = "
                f"{live.runtime.chain.chain_id};" + WALLET_JS
            )
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto("/console/sign-in")
        page.get_by_label("API key").fill(key.api_key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector(f'[data-testid="role"]:text-is("{role}")')
        return Session(role, context, page, signed, sent)

    yield open_as
    for context in contexts:
        context.close()


def screenshot(page: Any, name: str) -> None:
    """A 1280×800 screenshot of the page under var/screenshots (the README shows two of them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
