"""intents: when the recorded transaction was signed, and the transactions it replaced (replace-by-fee)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 08:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("intents") as batch:
        batch.add_column(sa.Column("sent_at", app.db.models.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("replaced_hashes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("intents") as batch:
        batch.drop_column("replaced_hashes")
        batch.drop_column("sent_at")
