"""Sign-in, sign-out, the session cookie, CSRF, the Content-Security-Policy, and the offline API docs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.web.conftest import Live, Session, screenshot


def test_sign_in_gives_a_strict_httponly_cookie_and_sign_out_ends_the_session(
    browser: Any, live: Live, sign_in: Callable[..., Session]
) -> None:
    merchant = sign_in("merchant")
    page = merchant.page
    assert page.url.endswith("/console/dashboard")
    (cookie,) = [c for c in merchant.context.cookies() if c["name"] == "tg_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain HTTP on loopback; Secure is set when the request is HTTPS
    assert page.evaluate("document.cookie") == ""  # not readable by scripts

    # signing in again in the same browser ends the session it had
    page.goto("/console/sign-in")
    page.get_by_label("API key").fill(live.keys["merchant"].api_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/dashboard")
    (renewed,) = [c for c in merchant.context.cookies() if c["name"] == "tg_session"]
    assert renewed["value"] != cookie["value"]
    replay = browser.new_context(base_url=live.url)
    replay.add_cookies([{"name": "tg_session", "value": cookie["value"], "url": live.url}])
    assert replay.request.get("/console/dashboard", max_redirects=0).status == 303
    replay.close()
    cookie = renewed

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/sign-in")
    # the old cookie, replayed from another browser, opens nothing: the session ended on the server
    thief = browser.new_context(base_url=live.url)
    thief.add_cookies([{"name": "tg_session", "value": cookie["value"], "url": live.url}])
    stolen = thief.new_page()
    stolen.goto("/console/dashboard")
    assert stolen.url.endswith("/console/sign-in")
    thief.close()


def test_a_wrong_key_is_refused(browser: Any, live: Live) -> None:
    context = browser.new_context(base_url=live.url)
    page = context.new_page()
    page.goto("/console/sign-in")
    page.get_by_label("API key").fill("tg_merchant_not-a-real-key-0000000000000000")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").wait_for()
    assert "unknown, revoked or disabled" in page.get_by_role("alert").inner_text()
    assert not [c for c in context.cookies() if c["name"] == "tg_session"]
    context.close()


def test_pages_carry_a_strict_csp_and_run_no_inline_script(sign_in: Callable[..., Session]) -> None:
    merchant = sign_in("merchant")
    page = merchant.page
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text))
    for path in ("/console/dashboard", "/console/orders", "/console/orders/new"):
        response = page.goto(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        page.wait_for_selector("body[data-ready=true]")
        assert page.evaluate("[...document.scripts].filter(s => !s.src).length") == 0
        assert page.evaluate("document.querySelectorAll('[style]').length") == 0
    # a script injected into the page's markup would not run: the browser itself enforces the policy
    page.goto("/console/orders")
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__pwned = 1';"
        " document.body.appendChild(s); }"
    )
    assert page.evaluate("window.__pwned === undefined")
    assert any("Content Security Policy" in v for v in violations)
    screenshot(page, "orders")


def test_a_post_without_the_csrf_token_is_refused(sign_in: Callable[..., Session], live: Live) -> None:
    merchant = sign_in("merchant")
    form = {
        "order_ref": "CSRF-1",
        "buyer": live.keys["buyer"].address,
        "amount": "10",
        "currency": "tUSD",
        "destination_country": "DE",
        "goods_category": "apparel",
    }
    # the session cookie alone (what a cross-site form would carry, were it not SameSite=Strict) is not enough
    for token in (None, "forged-token"):
        data = dict(form) if token is None else {**form, "csrf_token": token}
        resp = merchant.context.request.post("/console/orders", form=data, max_redirects=0)
        assert resp.status in (403, 422), resp.status
    resp = merchant.context.request.post(
        "/console/orders", form={**form, "csrf_token": "forged"}, max_redirects=0
    )
    assert resp.status == 403
    page = merchant.goto("/console/orders")
    assert "CSRF-1" not in page.content()
    # the same form, through the page (which carries the token), works
    page = merchant.goto("/console/orders/new")
    page.get_by_label("Order number").fill("CSRF-1")
    page.get_by_label("Buyer address").fill(form["buyer"])
    page.get_by_label("Amount").fill("10")
    page.get_by_role("button", name="Create order").click()
    page.wait_for_selector('[data-testid="status"]')
    assert "Order CSRF-1" in page.inner_text("h1")


def test_api_docs_render_offline(browser: Any, live: Live) -> None:
    context = browser.new_context(base_url=live.url)
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(live.url):
            route.continue_()
        else:
            outside.append(f"{route.request.resource_type} {route.request.url}")
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.goto("/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "TradeGuard" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-tag")  # the operations rendered from /openapi.json
    assert outside == []
    page.goto("/redoc")
    page.wait_for_selector("h1:has-text('TradeGuard')")
    # ReDoc's "powered by" footer links its logo from its CDN; offline the image is dropped (it hides itself
    # on error). No script, style or font comes from outside.
    assert all(item.startswith("image ") for item in outside), outside
    context.close()


def test_markup_in_user_input_is_shown_as_text(live: Live, sign_in: Callable[..., Session]) -> None:
    merchant = sign_in("merchant")
    ref = '"><img/src=x/onerror=window.__xss=1>'
    page = merchant.goto("/console/orders/new")
    page.get_by_label("Order number").fill(ref)
    page.get_by_label("Buyer address").fill(live.keys["buyer"].address or "")
    page.get_by_label("Amount").fill("1")
    page.get_by_role("button", name="Create order").click()
    page.wait_for_selector('[data-testid="status"]')
    assert ref in page.inner_text("h1")
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__xss === undefined")
