"""intents: an index on (sender, nonce), so that allocating a nonce searches the sender's recent nonces instead
of reading every intent ever recorded; chain_events: an index on (name, order_id), so that an ERC-792 ruling or
evidence looks its dispute up among the ``Dispute`` events instead of reading every indexed event (issue 8)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 04:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_intents_sender_nonce", "intents", ["sender", "nonce"])
    op.create_index("ix_chain_events_name_order", "chain_events", ["name", "order_id"])


def downgrade() -> None:
    op.drop_index("ix_chain_events_name_order", table_name="chain_events")
    op.drop_index("ix_intents_sender_nonce", table_name="intents")
