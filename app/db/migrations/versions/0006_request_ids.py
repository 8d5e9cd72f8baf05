"""intents and timeline entries: the id of the HTTP request that wrote them (X-Request-Id)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 08:35:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("intents", "timeline"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    for table in ("intents", "timeline"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("request_id")
