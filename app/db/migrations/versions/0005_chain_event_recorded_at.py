"""chain_events: when the service recorded each event (wall clock), so a timeline sorts on one clock

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 08:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chain_events") as batch:
        batch.add_column(sa.Column("recorded_at", app.db.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chain_events") as batch:
        batch.drop_column("recorded_at")
