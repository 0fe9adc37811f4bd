"""token-owned leases, revocable tokens, server liveness

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 08:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('lionsweep_leases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_lionsweep_leases_token_id'), ['token_id'], unique=False)
    with op.batch_alter_table('lionsweep_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('lionsweep_liveness',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('alive_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lionsweep_liveness'))
    )


def downgrade() -> None:
    op.drop_table('lionsweep_liveness')
    with op.batch_alter_table('lionsweep_tokens', schema=None) as batch_op:
        batch_op.drop_column('revoked_at')
    with op.batch_alter_table('lionsweep_leases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lionsweep_leases_token_id'))
        batch_op.drop_column('token_id')
