"""The packed order state word of the escrow contract, and the order statuses (SPEC §2).

The layout mirrors ``contracts/src/libraries/OrderState.sol``: status (bits 0..7), seller-responded flag
(bit 8), frozenSeconds (16..47), frozenUntil (48..111), anchor (112..175).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum


class Status(IntEnum):
    """On-chain order status; 5 and above are final."""

    NONE = 0
    FUNDED = 1
    SHIPPED = 2
    DELIVERED = 3
    DISPUTED = 4
    RELEASED = 5
    REFUNDED = 6
    RESOLVED = 7

    @property
    def is_final(self) -> bool:
        """Released, refunded and resolved orders never change again."""
        return self >= Status.RELEASED


class Milestone(IntEnum):
    """DeliveryAttestation milestones (SPEC §4)."""

    SHIPPED = 1
    DELIVERED = 2


class Decision(IntEnum):
    """BuyerDecision values (SPEC §4)."""

    CONFIRM_RECEIPT = 1
    OPEN_DISPUTE = 2


class RefundReason(IntEnum):
    """Why an order was refunded in full."""

    SELLER_REFUND = 0
    SHIP_TIMEOUT = 1
    DELIVERY_TIMEOUT = 2
    RESPONSE_TIMEOUT = 3
    ARBITRATION_TIMEOUT = 4


_M32 = (1 << 32) - 1
_M80 = (1 << 80) - 1


def buyer_tag(buyer: str) -> int:
    """The buyer tag of the escrow's state word: the low 80 bits of the buyer's address."""
    return int(buyer, 16) & _M80


_M64 = (1 << 64) - 1


@dataclass(frozen=True)
class OrderState:
    """Decoded order state word."""

    status: Status
    responded: bool = False
    frozen_seconds: int = 0
    frozen_until: int = 0
    anchor: int = 0
    #: the low 80 bits of the buyer's address, set at funding (escrow v2): tells which buyer's order of an
    #: order id a state-carrying event belongs to. An identity mark, not a state: left out of comparisons.
    buyer_tag: int = field(default=0, compare=False)

    @classmethod
    def funded(cls, buyer: str) -> OrderState:
        """The state of an order just funded by ``buyer``."""
        return cls(status=Status.FUNDED, buyer_tag=buyer_tag(buyer))

    @classmethod
    def unpack(cls, word: int) -> OrderState:
        """Decode the contract's state word."""
        return cls(
            status=Status(word & 0xFF),
            responded=bool(word >> 8 & 1),
            frozen_seconds=word >> 16 & _M32,
            frozen_until=word >> 48 & _M64,
            anchor=word >> 112 & _M64,
            buyer_tag=word >> 176,
        )

    def pack(self) -> int:
        """Encode as the contract's state word."""
        return (
            int(self.status)
            | int(self.responded) << 8
            | self.frozen_seconds << 16
            | self.frozen_until << 48
            | self.anchor << 112
            | self.buyer_tag << 176
        )

    def with_status(self, status: Status) -> OrderState:
        """A copy with another status."""
        return replace(self, status=status)

    def is_frozen(self, now: int) -> bool:
        """Whether a regulator freeze is in force at ``now``."""
        return now < self.frozen_until

    @property
    def release_at(self) -> int | None:
        """When a delivered order may be released (None in other statuses)."""
        if self.status != Status.DELIVERED:
            return None
        return self.anchor + self.frozen_seconds

    @property
    def disputed_at(self) -> int | None:
        """When the dispute's timers started (None unless disputed)."""
        if self.status != Status.DISPUTED:
            return None
        return self.anchor + self.frozen_seconds
