"""orders: the ERC-792 arbitrator the buyer signs and its extraData (SPEC §4.1), and the indexed dispute id,
ruling and ruling time of an order arbitrated by it

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("arbitrator", sa.String(length=42), nullable=True))
        batch.add_column(sa.Column("arbitrator_extra_data", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("dispute_id", app.db.models.Uint256(length=78), nullable=True))
        batch.add_column(sa.Column("ruling", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("ruled_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        for name in ("ruled_at", "ruling", "dispute_id", "arbitrator_extra_data", "arbitrator"):
            batch.drop_column(name)
