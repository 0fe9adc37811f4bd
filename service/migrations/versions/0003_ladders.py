"""ladders: width ladders and their rung sweeps

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('lionsweep_ladders',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('task_name', sa.String(length=200), nullable=False),
    sa.Column('param', sa.String(length=200), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lionsweep_ladders')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_lionsweep_ladders_idempotency_key')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('lionsweep_ladders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lionsweep_ladders_task_name'), ['task_name'], unique=False)
    with op.batch_alter_table('lionsweep_sweeps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ladder_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('ladder_role', sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f('ix_lionsweep_sweeps_ladder_id'), ['ladder_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('lionsweep_sweeps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lionsweep_sweeps_ladder_id'))
        batch_op.drop_column('ladder_role')
        batch_op.drop_column('ladder_id')
    with op.batch_alter_table('lionsweep_ladders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lionsweep_ladders_task_name'))
    op.drop_table('lionsweep_ladders')
