"""Businesses can be bound to their Twilio account: recordings and webhooks of another account are refused.

Expand-only (backward compatible): a new table, which code of revision 0002 never reads; during a rolling
upgrade the old processes simply keep the unbound behaviour.

Revision ID: 0004
Revises: 0003
Create Date: 2024-07-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "twilio_bindings",
        sa.Column("business_id", sa.String(64), primary_key=True),
        sa.Column("account_sid", sa.String(34), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("twilio_bindings")
