"""the spec a ladder was created with, for Idempotency-Key retries

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('lionsweep_ladders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_spec', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('lionsweep_ladders', schema=None) as batch_op:
        batch_op.drop_column('request_spec')
