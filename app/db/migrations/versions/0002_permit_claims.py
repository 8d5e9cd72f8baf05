"""permit claims: one pending funding per EIP-2612 permit nonce

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 04:35:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "permit_claims",
        sa.Column("token", sa.String(length=42), nullable=False),
        sa.Column("owner", sa.String(length=42), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("intent_id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=66), nullable=False),
        sa.Column("created_at", app.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token", "owner", "nonce"),
    )
    with op.batch_alter_table("permit_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_permit_claims_intent_id"), ["intent_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("permit_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_permit_claims_intent_id"))
    op.drop_table("permit_claims")
