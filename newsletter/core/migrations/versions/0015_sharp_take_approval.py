"""sharp takes get a state: draft until an editor approves them

Takes written before approval existed were sent as they were, so they count as approved.

Revision ID: 0015
Revises: 0014 (after main's 0013, 0016, 0014)
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sharptake', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('state', sa.String(length=10), nullable=False, server_default='approved')
        )
        batch_op.add_column(sa.Column('approved_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('approved_by', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sharptake', schema=None) as batch_op:
        batch_op.drop_column('approved_by')
        batch_op.drop_column('approved_at')
        batch_op.drop_column('state')
