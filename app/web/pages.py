"""The console's pages and the JSON endpoints its page scripts call (signing documents, signed actions).

Every handler calls :mod:`app.services` with the signed-in principal, exactly as the API's routes do with
the API key's principal, so the console can see and do what the API allows that principal and nothing
more (other parties' orders are 404 here too). Signed actions are signed in the browser, by the user's
wallet (EIP-1193 ``eth_signTypedData_v4``), and checked by the same services as the API's.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.api.schemas import (
    PRINTABLE,
    BuyerDecisionCreate,
    FundingCreate,
    OrderCreate,
    RulingCreate,
    ShipmentCreate,
    WebhookEndpointCreate,
)
from app.domain.order_state import Decision
from app.errors import AuthError, InvalidInput
from app.services import console, web_sessions
from app.services.inbox import ingestion
from app.services.outbox import webhook_endpoints
from app.services.trade import order_views, orders, wallet_actions
from app.services.wake import wake
from app.web.common import (
    CSRF_HEADER,
    PRE_SESSION_COOKIE,
    SESSION_COOKIE,
    ConsoleRoute,
    RuntimeDep,
    User,
    UserDep,
    check_csrf,
    render,
    require,
)


class DevSignRequest(BaseModel):
    """What an EIP-1193 ``eth_signTypedData_v4`` call carries: the account and the typed data as JSON."""

    address: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    typed_data: str = Field(max_length=100_000)


class WalletTransaction(BaseModel):
    """An EIP-1193 ``eth_sendTransaction`` parameter, as the API's wallet transactions are answered."""

    model_config = ConfigDict(populate_by_name=True)

    sender: str = Field(alias="from", pattern=r"^0x[0-9a-fA-F]{40}$")
    to: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    data: str = Field(pattern=r"^0x(?:[0-9a-fA-F]{2})*$", max_length=20_002)
    value: str = Field("0x0", pattern=r"^0x[0-9a-fA-F]{1,64}$")
    gas: str | None = Field(None, pattern=r"^0x[0-9a-fA-F]{1,16}$")
    chainId: str | None = Field(None, pattern=r"^0x[0-9a-fA-F]{1,16}$")  # noqa: N815 (EIP-1193's name)


class DevSendRequest(BaseModel):
    """What the dev wallet's ``eth_sendTransaction`` carries."""

    transaction: WalletTransaction


router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)
TxHashPath = Annotated[str, Path(pattern=r"^0x[0-9a-fA-F]{64}$")]
CsrfForm = Annotated[str, Form(max_length=200)]
CsrfHeader = Annotated[str | None, Header(alias=CSRF_HEADER, max_length=200)]

HOME = {
    "merchant": "/console/dashboard",
    "buyer": "/console/orders",
    "arbitrator": "/console/disputes",
    "oracle": "/console/captures",
    "regulator": "/console/orders",
    "admin": "/console/principals",
}


def _see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def _invalid(exc: ValidationError) -> InvalidInput:
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]) or "form", "message": str(e["msg"])}
        for e in exc.errors()
    ]
    listed = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return InvalidInput("validation_error", f"the form has invalid fields: {listed}", errors=fields)


# --- sign-in ----------------------------------------------------------------------------------------------


@router.get("/")
def root() -> Response:
    return _see_other("/console/")


@router.get("/console/sign-in")
def sign_in_page(request: Request) -> Response:
    """The sign-in form. Its CSRF token is double-submitted (form field and a SameSite=Strict cookie)."""
    token = secrets.token_urlsafe(32)
    response = render(request, "sign_in.html", None, csrf_token=token, error=None)
    _set_cookie(request, response, PRE_SESSION_COOKIE, token, max_age=3600)
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@router.post("/console/sign-in")
def sign_in(
    request: Request,
    rt: RuntimeDep,
    api_key: Annotated[str, Form(max_length=200)],
    csrf_token: CsrfForm,
) -> Response:
    """Exchange an API key for a session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS)."""
    expected = request.cookies.get(PRE_SESSION_COOKIE, "")
    if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
        return render(
            request,
            "sign_in.html",
            None,
            status_code=403,
            csrf_token=expected or secrets.token_urlsafe(32),
            error="The sign-in form expired: reload the page and try again.",
        )
    try:
        signed = web_sessions.sign_in(rt.db, api_key.strip())
    except AuthError:
        return render(
            request,
            "sign_in.html",
            None,
            status_code=401,
            csrf_token=expected,
            error="That API key is unknown, revoked or disabled.",
        )
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:  # signing in again (perhaps as someone else) ends the session this browser had
        web_sessions.sign_out(rt.db, previous)
    response = _see_other("/console/")
    _set_cookie(request, response, SESSION_COOKIE, signed.cookie, max_age=None)
    response.delete_cookie(PRE_SESSION_COOKIE, path="/")
    return response


@router.post("/console/sign-out")
def sign_out(request: Request, rt: RuntimeDep, user: UserDep, csrf_token: CsrfForm) -> Response:
    """End the session on the server (the cookie alone no longer opens anything) and drop the cookie."""
    check_csrf(user, csrf_token)
    web_sessions.sign_out(rt.db, request.cookies.get(SESSION_COOKIE, ""))
    response = _see_other("/console/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/console/")
@router.get("/console")
def home(user: UserDep) -> Response:
    return _see_other(HOME.get(user.role, "/console/sign-in"))


# --- chain facts the page scripts sign against --------------------------------------------------------------


@router.get("/console/chain")
def chain(rt: RuntimeDep, user: UserDep) -> Response:
    """EIP-712 domain and types, tokens and chain time (the API's ``GET /v1/chain``)."""
    return JSONResponse(console.chain_info(rt))


# --- merchant -----------------------------------------------------------------------------------------------


@router.get("/console/dashboard")
def dashboard(request: Request, rt: RuntimeDep, user: UserDep) -> Response:
    """Cards per currency and the 14-day T+N release calendar."""
    require(user, "read settlements", "merchant", "admin")
    now = console.chain_time(rt)
    board = console.dashboard(rt, user.principal, now)
    calendar = {
        currency: {
            "labels": [console.DAY * i + now for i in range(console.CALENDAR_DAYS)],
            "units": [str(v) for v in values],
            "decimals": board.decimals.get(currency, 6),
        }
        for currency, values in board.calendar.items()
    }
    return render(request, "dashboard.html", user, board=board, calendar=calendar, cards=console.CARDS)


@router.get("/console/settlements.csv")
def settlements_csv(rt: RuntimeDep, user: UserDep) -> Response:
    """The settlement pipeline as CSV (the API's ``GET /v1/settlements`` with ``Accept: text/csv``)."""
    require(user, "read settlements", "merchant", "admin")
    return Response(
        console.settlements_csv(rt, user.principal),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="settlements.csv"'},
    )


@router.get("/console/orders")
def orders_list(
    request: Request,
    rt: RuntimeDep,
    user: UserDep,
    status: Annotated[str | None, Query(max_length=24)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    """The caller's orders with a status filter and cursor paging."""
    page = console.orders_page(rt, user.principal, status=status or None, cursor=cursor or None, limit=limit)
    return render(
        request,
        "orders.html",
        user,
        page=page,
        status=status or "",
        statuses=console.STATUSES,
        limit=limit,
    )


@router.get("/console/orders/new")
def new_order_page(request: Request, rt: RuntimeDep, user: UserDep) -> Response:
    require(user, "create orders", "merchant")
    tokens = sorted(t.symbol for t in rt.tokens.values())
    return render(request, "new_order.html", user, tokens=tokens)


def _units(amount: str, decimals: int) -> int:
    """A decimal amount typed by a person (``250.5``) as exact base units; more digits than the token has is
    refused, never rounded."""
    try:
        value = Decimal(amount.strip().replace(",", ""))
    except InvalidOperation as exc:
        raise InvalidInput("invalid_amount", f"amount {amount!r} is not a number") from exc
    units = value.scaleb(decimals)
    if not value.is_finite() or units != units.to_integral_value() or units <= 0:
        raise InvalidInput("invalid_amount", f"amount must be positive with at most {decimals} decimals")
    return int(units)


@router.post("/console/orders")
def create_order(
    request: Request,
    rt: RuntimeDep,
    user: UserDep,
    csrf_token: CsrfForm,
    order_ref: Annotated[str, Form(max_length=200)],
    buyer: Annotated[str, Form(max_length=42)],
    amount: Annotated[str, Form(max_length=80)],
    currency: Annotated[str, Form(max_length=16)],
    destination_country: Annotated[str, Form(max_length=2)],
    goods_category: Annotated[str, Form(max_length=40)],
) -> Response:
    """Merchant: create an order (the API's ``POST /v1/orders``); the buyer then signs it on its page."""
    check_csrf(user, csrf_token)
    require(user, "create orders", "merchant")
    token = rt.token_by_symbol(currency)
    decimals = token.decimals if token else 0
    try:
        body = OrderCreate.model_validate(
            {
                "order_ref": order_ref.strip(),
                "buyer": buyer.strip(),
                "amount": str(_units(amount, decimals)),
                "currency": currency,
                "destination_country": destination_country.upper(),
                "goods_category": goods_category.strip(),
            }
        )
    except ValidationError as exc:
        raise _invalid(exc) from exc
    order, _documents = orders.create(
        rt,
        user.principal,
        orders.NewOrder(
            order_ref=body.order_ref,
            buyer=body.buyer,
            amount=int(body.amount),
            currency=body.currency,
            destination_country=body.destination_country,
            goods_category=body.goods_category,
        ),
    )
    return _see_other(f"/console/orders/{order.id}")


@router.get("/console/orders/{order_id}")
def order_page(request: Request, rt: RuntimeDep, user: UserDep, order_id: str) -> Response:
    """The order: lifecycle, split (projected or final), timeline, shipments, evidence, and the actions the
    caller's role may take in its current state."""
    view = console.order_view(rt, user.principal, order_id)
    version = console.order_version(rt, user.principal, order_id)
    steps = _lifecycle(view["status"], view["timeline"])
    now = console.chain_time(rt)
    frozen_until = view.get("frozen_until")
    frozen = bool(frozen_until) and datetime.fromisoformat(str(frozen_until)).timestamp() > now
    return render(
        request,
        "order.html",
        user,
        order=view,
        steps=steps,
        version=version,
        chain_time=now,
        frozen=frozen,
    )


def _lifecycle(status: str, timeline: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The progress bar: the happy path with each step done / current / todo. A disputed, resolved or refunded
    order shows the steps it reached on chain (from its timeline) and then where it left the happy path."""
    path = list(console.HAPPY_PATH)
    if status in ("disputed", "resolved", "refunded"):
        seen = {item["kind"] for item in timeline if item["source"] == "chain"}
        reached = ["awaiting_funding", "funded"]
        reached += [
            s for s, kind in (("shipped", "OrderShipped"), ("delivered", "OrderDelivered")) if kind in seen
        ]
        ending = ["disputed"] if status == "disputed" or "DisputeOpened" in seen else []
        ending += ["ruling"] if status == "disputed" else [status]
        path = reached + ending
    at = path.index(status) if status in path else 0
    return [
        {"name": name.replace("_", " "), "state": "done" if i < at else "current" if i == at else "todo"}
        for i, name in enumerate(path)
    ]


@router.get("/console/orders/{order_id}/live")
def order_live(
    rt: RuntimeDep, user: UserDep, order_id: str, v: Annotated[str, Query(max_length=32)] = ""
) -> Response:
    """Polled by the order page (htmx, every 2 s): 204 while nothing changed; when it did, an
    ``order-changed`` event that the page script answers by redrawing the page, unless the user is in the
    middle of an action there (a file chosen, a form being filled): then it says so and waits."""
    version = console.order_version(rt, user.principal, order_id)
    if version == v:
        return Response(status_code=204)
    return Response(status_code=200, headers={"HX-Trigger": "order-changed"})


@router.post("/console/orders/{order_id}/shipments")
def add_shipment(
    rt: RuntimeDep,
    user: UserDep,
    order_id: str,
    csrf_token: CsrfForm,
    carrier: Annotated[str, Form(max_length=40)],
    tracking_number: Annotated[str, Form(max_length=100)],
    sscc: Annotated[str, Form(max_length=18)] = "",
) -> Response:
    """Merchant: register the shipment logistics events will match (``POST /v1/orders/{id}/shipments``)."""
    check_csrf(user, csrf_token)
    require(user, "register shipments", "merchant")
    try:
        body = ShipmentCreate.model_validate(
            {
                "carrier": carrier.strip(),
                "tracking_number": tracking_number.strip(),
                "sscc": sscc.strip() or None,
            }
        )
    except ValidationError as exc:
        raise _invalid(exc) from exc
    orders.add_shipment(rt, user.principal, order_id, body.carrier, body.tracking_number, body.sscc, None)
    return _see_other(f"/console/orders/{order_id}")


@router.get("/console/orders/{order_id}/signing")
def signing(rt: RuntimeDep, user: UserDep, order_id: str) -> Response:
    """Buyer: the OrderAuthorization and permit typed data (``GET /v1/orders/{id}/signing``)."""
    require(user, "fund orders", "buyer")
    return JSONResponse(console.signing_documents(rt, user.principal, order_id))


def _intent_answer(rt: RuntimeDep, user: User, order_id: str, intent_id: str) -> Response:
    """202 with the order and its relayer intent, as the API answers an accepted action."""
    wake("relay")
    return JSONResponse(order_views.accepted(rt, user.principal, order_id, intent_id), status_code=202)


@router.post("/console/orders/{order_id}/funding")
def fund(
    rt: RuntimeDep, user: UserDep, order_id: str, body: FundingCreate, csrf: CsrfHeader = None
) -> Response:
    """Buyer: the wallet-signed authorization and permit (``POST /v1/orders/{id}/funding``)."""
    check_csrf(user, csrf)
    require(user, "fund orders", "buyer")
    permit = None
    if body.permit is not None:
        permit = orders.Permit(bytes.fromhex(body.permit.signature[2:]), body.permit.deadline)
    intent = orders.fund(rt, user.principal, order_id, bytes.fromhex(body.signature[2:]), permit)
    return _intent_answer(rt, user, order_id, intent.id)


@router.post("/console/orders/{order_id}/decision/{decision}")
def decide(
    rt: RuntimeDep,
    user: UserDep,
    order_id: str,
    decision: str,
    body: BuyerDecisionCreate,
    csrf: CsrfHeader = None,
) -> Response:
    """Buyer: confirm receipt or open a dispute with a wallet-signed BuyerDecision."""
    check_csrf(user, csrf)
    require(user, "confirm receipt or dispute", "buyer")
    kinds = {"confirm-receipt": Decision.CONFIRM_RECEIPT, "dispute": Decision.OPEN_DISPUTE}
    if decision not in kinds:
        raise InvalidInput("invalid_decision", "decision is confirm-receipt or dispute")
    intent = orders.buyer_decision(
        rt,
        user.principal,
        order_id,
        kinds[decision],
        bytes.fromhex(body.signature[2:]),
        body.valid_until,
        bytes.fromhex(body.evidence_hash[2:]),
    )
    return _intent_answer(rt, user, order_id, intent.id)


@router.post("/console/orders/{order_id}/evidence")
def submit_evidence(
    rt: RuntimeDep,
    user: UserDep,
    order_id: str,
    file: Annotated[UploadFile, File()],
    signature: Annotated[str, Form(pattern=r"^0x[0-9a-fA-F]{130}$")],
    valid_until: Annotated[int, Form(ge=0, le=2**64 - 1)],
    csrf: CsrfHeader = None,
) -> Response:
    """Buyer or merchant: an evidence file and the wallet's EvidenceSubmission over its SHA-256 (computed and
    shown in the browser before signing; the service hashes the bytes it stores again)."""
    check_csrf(user, csrf)
    require(user, "submit evidence", "buyer", "merchant")
    data = file.file.read(rt.settings.max_upload_bytes + 1)
    if len(data) > rt.settings.max_upload_bytes:
        raise InvalidInput("too_large", f"evidence files are limited to {rt.settings.max_upload_bytes} bytes")
    if not data:
        raise InvalidInput("empty_file", "the evidence file is empty")
    _evidence, intent = orders.add_evidence(
        rt,
        user.principal,
        order_id,
        filename=file.filename or "evidence",
        content_type=file.content_type or "application/octet-stream",
        data=data,
        signature=bytes.fromhex(signature[2:]),
        valid_until=valid_until,
    )
    return _intent_answer(rt, user, order_id, intent.id)


@router.get("/console/orders/{order_id}/evidence/{evidence_id}")
def evidence_file(rt: RuntimeDep, user: UserDep, order_id: str, evidence_id: str) -> Response:
    """The stored evidence bytes (the case page re-hashes them in the browser)."""
    data, _ctype, sha = console.evidence_file(rt, user.principal, order_id, evidence_id)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{evidence_id}"', "X-Content-SHA256": sha},
    )


@router.post("/console/orders/{order_id}/ruling")
def submit_ruling(
    rt: RuntimeDep, user: UserDep, order_id: str, body: RulingCreate, csrf: CsrfHeader = None
) -> Response:
    """Arbitrator: a wallet-signed Ruling (``POST /v1/orders/{id}/ruling``)."""
    check_csrf(user, csrf)
    require(user, "rule on disputes", "arbitrator")
    intent = orders.rule(
        rt,
        user.principal,
        order_id,
        body.buyer_share_bps,
        bytes.fromhex(body.rationale_hash[2:]),
        body.valid_until,
        bytes.fromhex(body.signature[2:]),
    )
    return _intent_answer(rt, user, order_id, intent.id)


# --- the parties' own wallets: transactions the API answers where SPEC §4 has no signed message -------------


@router.get("/console/orders/{order_id}/refund-transaction")
def refund_transaction(rt: RuntimeDep, user: UserDep, order_id: str) -> Response:
    """Seller: the ``refundBySeller`` transaction for its wallet (the API's refund-transaction)."""
    require(user, "refund its orders", "merchant")
    return JSONResponse(wallet_actions.seller_refund(rt, user.principal, order_id))


@router.get("/console/orders/{order_id}/freeze-transaction")
def freeze_transaction(
    rt: RuntimeDep,
    user: UserDep,
    order_id: str,
    seconds: Annotated[int, Query(ge=1, le=wallet_actions.MAX_FREEZE_SECONDS)],
    reason: Annotated[str, Query(min_length=1, max_length=500, pattern=PRINTABLE)],
) -> Response:
    """Regulator: the ``freeze`` transaction for its wallet (``GET /v1/orders/{id}/freeze-transaction``)."""
    require(user, "freeze orders", "regulator")
    return JSONResponse(wallet_actions.freeze(rt, user.principal, order_id, seconds, reason))


@router.get("/console/orders/{order_id}/unfreeze-transaction")
def unfreeze_transaction(rt: RuntimeDep, user: UserDep, order_id: str) -> Response:
    """Regulator: the ``unfreeze`` transaction for its wallet."""
    require(user, "unfreeze orders", "regulator")
    return JSONResponse(wallet_actions.unfreeze(rt, user.principal, order_id))


@router.get("/console/credits")
def credits_page(request: Request, rt: RuntimeDep, user: UserDep) -> Response:
    """The caller's unpaid credits on the escrow per token (``GET /v1/credits``), a withdrawal for each, and
    the withdrawals the index holds."""
    return render(
        request,
        "credits.html",
        user,
        credits=wallet_actions.credits(rt, user.principal),
        withdrawals=wallet_actions.withdrawals(rt, user.principal),
    )


@router.get("/console/credits/withdrawal")
def withdrawal_transaction(
    rt: RuntimeDep,
    user: UserDep,
    currency: Annotated[str, Query(min_length=1, max_length=16)],
) -> Response:
    """The caller's ``withdraw`` of its whole credit in ``currency`` (``GET /v1/credits/withdrawal``)."""
    return JSONResponse(wallet_actions.withdrawal(rt, user.principal, currency, None, None))


@router.get("/console/transactions/{tx_hash}")
def transaction_status(rt: RuntimeDep, user: UserDep, tx_hash: TxHashPath) -> Response:
    """Where a transaction the page sent from the party's wallet stands (pending, reverted, mined, indexed);
    the page polls it until the index shows the result. A mined one wakes the indexer (a lost wake-up
    loses nothing: it sweeps every ``sweep_seconds`` anyway)."""
    answer = wallet_actions.transaction_status(rt, tx_hash.lower())
    if answer["status"] == "mined":
        wake("index")
    return JSONResponse(answer)


# --- merchant webhooks --------------------------------------------------------------------------------------


@router.get("/console/webhooks")
def webhooks_page(request: Request, rt: RuntimeDep, user: UserDep) -> Response:
    """Merchant: webhook endpoints (``GET /v1/webhook-endpoints``) and a form to register one."""
    require(user, "manage webhook endpoints", "merchant")
    items = [webhook_endpoints.public(ep) for ep in webhook_endpoints.owned_by(rt, user.principal)]
    return render(request, "webhooks.html", user, items=items, issued=None)


@router.post("/console/webhooks")
def register_webhook(
    request: Request,
    rt: RuntimeDep,
    user: UserDep,
    csrf_token: CsrfForm,
    url: Annotated[str, Form(max_length=2000)],
    event_types: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Merchant: register an endpoint; its signing secret is shown on this page once."""
    check_csrf(user, csrf_token)
    require(user, "manage webhook endpoints", "merchant")
    try:
        body = WebhookEndpointCreate.model_validate(
            {"url": url.strip(), "event_types": [t for t in event_types.replace(",", " ").split() if t]}
        )
    except ValidationError as exc:
        raise _invalid(exc) from exc
    registered = webhook_endpoints.register(rt, user.principal, body.url, body.event_types)
    items = [webhook_endpoints.public(ep) for ep in webhook_endpoints.owned_by(rt, user.principal)]
    issued = {"id": registered.endpoint.id, "secret": registered.secret}
    return render(request, "webhooks.html", user, status_code=201, items=items, issued=issued)


@router.get("/console/webhooks/{endpoint_id}")
def webhook_deliveries(
    request: Request,
    rt: RuntimeDep,
    user: UserDep,
    endpoint_id: str,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """Merchant: one endpoint's delivery log, each attempt with its status code or error."""
    require(user, "manage webhook endpoints", "merchant")
    log = webhook_endpoints.deliveries(rt, user.principal, endpoint_id, 20, cursor or None)
    return render(request, "webhook_deliveries.html", user, endpoint_id=endpoint_id, log=log)


# --- arbitrator ---------------------------------------------------------------------------------------------


@router.get("/console/disputes")
def disputes(request: Request, rt: RuntimeDep, user: UserDep) -> Response:
    require(user, "rule on disputes", "arbitrator", "admin")
    return render(request, "disputes.html", user, queue=console.dispute_queue(rt, user.principal))


# --- oracle -------------------------------------------------------------------------------------------------


@router.get("/console/captures")
def captures(request: Request, rt: RuntimeDep, user: UserDep) -> Response:
    require(user, "read captures", "oracle", "admin")
    return render(request, "captures.html", user, items=console.captures(rt, user.principal))


@router.post("/console/captures")
def capture(
    rt: RuntimeDep,
    user: UserDep,
    csrf_token: CsrfForm,
    document: Annotated[UploadFile, File()],
) -> Response:
    """Oracle: capture an EPCISDocument file (the API's ``POST /v1/epcis/capture``)."""
    check_csrf(user, csrf_token)
    require(user, "capture EPCIS events", "oracle", "admin")
    body = document.file.read(rt.settings.max_body_bytes + 1)
    if len(body) > rt.settings.max_body_bytes:
        raise InvalidInput("too_large", f"EPCIS documents are limited to {rt.settings.max_body_bytes} bytes")
    accepted = ingestion.accept_epcis(rt, user.principal, body, document.content_type or "application/json")
    if not accepted.duplicate:
        wake("inbox")
    return _see_other("/console/captures")


# --- admin --------------------------------------------------------------------------------------------------


@router.get("/console/principals")
def principals_page(request: Request, rt: RuntimeDep, user: UserDep) -> Response:
    require(user, "list principals", "admin")
    return render(
        request, "principals.html", user, items=console.principal_list(rt, user.principal), issued=None
    )


@router.post("/console/principals")
def create_principal(
    request: Request,
    rt: RuntimeDep,
    user: UserDep,
    csrf_token: CsrfForm,
    role: Annotated[str, Form(max_length=16)],
    address: Annotated[str, Form(max_length=42)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Admin: a principal and its API key, shown on this page once (never stored, never in a URL)."""
    check_csrf(user, csrf_token)
    require(user, "create principals", "admin")
    key = console.create_principal(rt, user.principal, role, address.strip() or None, name.strip())
    response = render(
        request,
        "principals.html",
        user,
        status_code=201,
        items=console.principal_list(rt, user.principal),
        issued={"role": role, "api_key": key},
    )
    return response


@router.post("/console/principals/{principal_id}/disable")
def disable_principal(rt: RuntimeDep, user: UserDep, principal_id: str, csrf_token: CsrfForm) -> Response:
    check_csrf(user, csrf_token)
    console.disable_principal(rt, user.principal, principal_id)
    return _see_other("/console/principals")


@router.get("/console/corridors")
def corridors_page(request: Request, rt: RuntimeDep, user: UserDep) -> Response:
    require(user, "configure corridors", "admin")
    return render(request, "corridors.html", user, items=console.corridor_list(rt))


@router.post("/console/corridors")
def add_corridor(
    rt: RuntimeDep,
    user: UserDep,
    csrf_token: CsrfForm,
    country: Annotated[str, Form(max_length=2)],
    category: Annotated[str, Form(max_length=40)],
    tax_bps: Annotated[int, Form(ge=0, le=5000)],
    recipient: Annotated[str, Form(max_length=42)],
) -> Response:
    """Admin: add (or replace) one corridor; the others stay."""
    check_csrf(user, csrf_token)
    require(user, "configure corridors", "admin")
    items = [
        c
        for c in console.corridor_list(rt)
        if (c["country"], c["category"]) != (country.upper(), category.lower())
    ]
    items.append(
        {"country": country, "category": category, "tax_bps": tax_bps, "recipient": recipient.strip()}
    )
    console.store_corridors(rt, user.principal, items)
    return _see_other("/console/corridors")


# --- dev chains only ----------------------------------------------------------------------------------------


@router.post("/console/dev/advance-time")
def advance_time(
    rt: RuntimeDep,
    user: UserDep,
    csrf_token: CsrfForm,
    days: Annotated[int, Form(ge=0, le=365)] = 0,
    seconds: Annotated[int, Form(ge=0, le=365 * 86_400)] = 0,
) -> Response:
    """Dev chains only (admin): move the chain clock, then wake the keeper (releases, timeouts)."""
    check_csrf(user, csrf_token)
    console.dev_advance_time(rt, user.principal, days * console.DAY + seconds)
    wake("keeper")
    return _see_other("/console/principals")


@router.post("/console/dev/faucet")
def faucet(
    rt: RuntimeDep,
    user: UserDep,
    csrf_token: CsrfForm,
    currency: Annotated[str, Form(max_length=16)],
    amount: Annotated[str, Form(max_length=80)],
    back: Annotated[str, Form(max_length=200)] = "/console/",
) -> Response:
    """Dev chains only: test tokens for the caller's own address."""
    check_csrf(user, csrf_token)
    if user.principal.address is None:
        raise InvalidInput("no_address", "this principal has no address to fund")
    token = rt.token_by_symbol(currency)
    console.dev_faucet(rt, user.principal.address, currency, _units(amount, token.decimals if token else 0))
    return _see_other(back if back.startswith("/console/") else "/console/")


@router.post("/console/dev/wallet/sign")
def dev_wallet_sign(rt: RuntimeDep, user: UserDep, body: DevSignRequest, csrf: CsrfHeader = None) -> Response:
    """Dev chains only: the built-in dev wallet (see :func:`app.services.console.dev_sign_typed_data`)."""
    check_csrf(user, csrf)
    try:
        document = json.loads(body.typed_data)
    except ValueError as exc:
        raise InvalidInput("invalid_typed_data", "typed_data is not JSON") from exc
    if not isinstance(document, dict):
        raise InvalidInput("invalid_typed_data", "typed_data is not an EIP-712 document")
    signature = console.dev_sign_typed_data(rt, user.principal, body.address, document)
    return JSONResponse({"signature": signature})


@router.post("/console/dev/wallet/send")
def dev_wallet_send(rt: RuntimeDep, user: UserDep, body: DevSendRequest, csrf: CsrfHeader = None) -> Response:
    """Dev chains only: the dev wallet's ``eth_sendTransaction`` (see
    :func:`app.services.console.dev_send_transaction`); the hash, and the indexer is woken."""
    check_csrf(user, csrf)
    tx_hash = console.dev_send_transaction(rt, user.principal, body.transaction.model_dump(by_alias=True))
    wake("index")
    return JSONResponse({"tx_hash": tx_hash})
