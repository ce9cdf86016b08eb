"""admin tokens get a role: viewer, editor or owner

Tokens made before roles existed could do everything, so they become owners.

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('admintoken', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('role', sa.String(length=10), nullable=False, server_default='owner')
        )


def downgrade() -> None:
    with op.batch_alter_table('admintoken', schema=None) as batch_op:
        batch_op.drop_column('role')
