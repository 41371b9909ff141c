"""What the decoder found in a stored recording (its channel count), and the labels its registration gave the
channels (a two-channel call: agent on one side, caller on the other).

Expand-only (backward compatible): both columns are nullable; code of revision 0002 keeps working on this schema
during a rolling upgrade.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recordings", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("channels", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("channel_labels", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recordings", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("channel_labels")
        batch.drop_column("channels")
