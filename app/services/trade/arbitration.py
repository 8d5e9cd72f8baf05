"""External arbitration (ERC-792, SPEC §4.1) of an order, as the service offers it.

- At creation a merchant may name an ERC-792 arbitrator and the ``extraData`` its ``createDispute`` takes:
  :func:`check_choice` refuses an arbitrator the escrow would refuse at funding (not appointed, or not active
  yet: ``InvalidArbitration``), an address that does not answer ``arbitrationCost`` as an ``IArbitrator``
  does, and ``extraData`` without an arbitrator or above :data:`MAX_EXTRA_DATA_BYTES`. The buyer then signs
  the arbitrator and ``keccak256(extraData)`` in its OrderAuthorization.
- Opening a dispute on such an order costs the arbitrator's fee, paid in the chain's native currency by the
  buyer: the relayer cannot pay it for them, so :func:`dispute_transaction` answers the exact transaction for
  the buyer's wallet (``submitBuyerDecision`` with an empty signature, the stored ``extraData`` and
  ``value`` = the arbitrator's ``arbitrationCost`` now), estimated against the chain first.
- Once the arbitrator has ruled through ``rule()`` (indexed as ``RulingRecorded``), anyone may settle with
  ``executeRuling``: the keeper submits it (:mod:`app.services.settlement.keeper`), and
  :func:`app.services.trade.wallet_actions.execute_ruling_transaction` answers it for a party's own wallet.

Nothing here writes to the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import keccak, to_checksum_address

from app.db.models import OrderColumns
from app.domain.encoding import hex32, rfc3339
from app.domain.money import RULING_CHOICES, ruling_share_bps
from app.domain.order_rules import ZERO_ADDRESS
from app.errors import ChainHalted, ChainUnavailable, InvalidInput
from app.services.runtime import Runtime

#: The longest ``extraData`` an order may carry (a Kleros court and juror count take 64 bytes).
MAX_EXTRA_DATA_BYTES = 1024
ZERO_HASH = b"\x00" * 32


@dataclass(frozen=True)
class Choice:
    """The arbitration an order is created with: the ERC-792 arbitrator (None: the platform's arbitrators and
    the Ruling message) and its ``extraData``."""

    arbitrator: str | None = None
    extra_data: bytes | None = None

    @property
    def extra_data_hash(self) -> bytes:
        """What the buyer signs as ``arbitratorExtraDataHash`` (zero bytes under platform arbitration)."""
        return keccak(self.extra_data or b"") if self.arbitrator else ZERO_HASH


def _refuse(code: str, field: str, message: str, **details: Any) -> InvalidInput:
    return InvalidInput(code, message, errors=[{"field": field, "message": message}], **details)


def check_choice(rt: Runtime, arbitrator: str | None, extra_data: bytes | None, now: int) -> Choice:
    """The arbitration an order may be created with, as the escrow's funding rule and the ERC-792 interface
    decide at chain time ``now``; a refusal is a 422 naming the field, and nothing is stored."""
    if arbitrator is not None and to_checksum_address(arbitrator) == ZERO_ADDRESS:
        arbitrator = None
    if arbitrator is None:
        if extra_data:
            raise _refuse(
                "extra_data_without_arbitrator",
                "arbitrator_extra_data",
                "extraData is for an ERC-792 arbitrator: name one (arbitrator) or leave extraData out",
            )
        return Choice()
    if extra_data is not None and len(extra_data) > MAX_EXTRA_DATA_BYTES:
        raise _refuse(
            "extra_data_too_large",
            "arbitrator_extra_data",
            f"extraData is limited to {MAX_EXTRA_DATA_BYTES} bytes (got {len(extra_data)})",
        )
    arbitrator = to_checksum_address(arbitrator)
    data = extra_data or b""
    fns = rt.escrow.contract.functions
    active_from = int(rt.chain.call(fns.arbitratorActiveFrom(arbitrator)))
    if active_from == 0 or active_from > now:
        why = (
            "is not an arbitrator appointed on the escrow"
            if active_from == 0
            else (f"is appointed but counts only for orders funded from {active_from} (unix time) on")
        )
        raise _refuse(
            "invalid_arbitrator",
            "arbitrator",
            f"the escrow would refuse to fund this order: {arbitrator} {why}",
            error="InvalidArbitration",
            arbitrator=arbitrator,
            activeFrom=active_from,
        )
    arbitration_cost(
        rt, arbitrator, data, field="arbitrator"
    )  # answers: an IArbitrator taking this extraData
    return Choice(arbitrator, data)


def arbitration_cost(rt: Runtime, arbitrator: str, extra_data: bytes, *, field: str = "order") -> int:
    """The arbitrator's ``arbitrationCost(extraData)`` now, in wei; an address that does not answer it (no
    contract, not an ``IArbitrator``, or refusing this extraData) is a 422."""
    court = rt.chain.contract("IArbitrator", arbitrator)
    try:
        return int(rt.chain.call(court.functions.arbitrationCost(extra_data)))
    except (ChainUnavailable, ChainHalted):
        raise
    except Exception as exc:  # web3 raises several kinds for an address that is no such contract
        raise _refuse(
            "not_erc792_arbitrator",
            field,
            f"{arbitrator} does not answer the ERC-792 arbitrationCost(extraData) call: {exc}",
            arbitrator=arbitrator,
        ) from exc


def view(order: OrderColumns) -> dict[str, Any]:
    """An order's arbitration as ``GET /v1/orders/{id}`` shows it."""
    if not order.arbitrator:
        return {"kind": "platform", "arbitrator": None}
    extra = order.arbitrator_extra_data or b""
    ruling = order.ruling
    return {
        "kind": "erc792",
        "arbitrator": order.arbitrator,
        "extra_data": "0x" + extra.hex(),
        "extra_data_hash": hex32(keccak(extra)),
        "ruling_choices": RULING_CHOICES,
        "dispute_id": None if order.dispute_id is None else str(order.dispute_id),
        "ruling": ruling,
        "ruling_buyer_share_bps": None if ruling is None else ruling_share_bps(ruling),
        "ruled_at": rfc3339(order.ruled_at),
    }


__all__ = [
    "MAX_EXTRA_DATA_BYTES",
    "Choice",
    "arbitration_cost",
    "check_choice",
    "view",
]
