"""Recordings know their provider; a Twilio recording may wait for its media URL; sizes past 2 GiB; SQLite
never reuses an id.

Expand-only (backward compatible): code of revision 0001 keeps working on this schema during a rolling
upgrade, since it always writes a media_url and the new column has a server default.

Revision ID: 0002
Revises: 0001
Create Date: 2024-06-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # On SQLite the batch copies the table; AUTOINCREMENT keeps a deleted recording's id from coming back.
    with op.batch_alter_table("recordings", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("provider", sa.String(16), nullable=False, server_default="http"))
        batch.alter_column("media_url", existing_type=sa.String(2048), nullable=True)
        batch.alter_column("size_bytes", existing_type=sa.Integer(), type_=sa.BigInteger(),
                           existing_nullable=True)


def downgrade() -> None:
    # Recordings without a media URL cannot go back to a NOT NULL column: they are forgotten.
    op.execute("DELETE FROM recordings WHERE media_url IS NULL")
    with op.batch_alter_table("recordings") as batch:
        batch.alter_column("size_bytes", existing_type=sa.BigInteger(), type_=sa.Integer(),
                           existing_nullable=True)
        batch.alter_column("media_url", existing_type=sa.String(2048), nullable=False)
        batch.drop_column("provider")
