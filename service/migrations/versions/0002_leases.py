"""leases: claimed trials, their claim request ids and heartbeats on the database clock;
workers' declared task params

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('lionsweep_leases',
    sa.Column('trial_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('sweep_id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.String(length=100), nullable=True),
    sa.Column('worker_id', sa.String(length=200), nullable=False),
    sa.Column('claimed_at', sa.Float(), nullable=False),
    sa.Column('heartbeat_at', sa.Float(), nullable=False),
    sa.Column('last_step', sa.Integer(), nullable=True),
    sa.Column('last_action', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('trial_id', name=op.f('pk_lionsweep_leases')),
    sa.UniqueConstraint('request_id', name=op.f('uq_lionsweep_leases_request_id'))
    )
    op.create_index(op.f('ix_lionsweep_leases_sweep_id'), 'lionsweep_leases', ['sweep_id'], unique=False)
    op.create_index(op.f('ix_lionsweep_leases_heartbeat_at'), 'lionsweep_leases', ['heartbeat_at'], unique=False)
    with op.batch_alter_table('lionsweep_workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('task_params', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('lionsweep_workers', schema=None) as batch_op:
        batch_op.drop_column('task_params')
    op.drop_index(op.f('ix_lionsweep_leases_heartbeat_at'), table_name='lionsweep_leases')
    op.drop_index(op.f('ix_lionsweep_leases_sweep_id'), table_name='lionsweep_leases')
    op.drop_table('lionsweep_leases')
