"""feeds remember how many new events their last poll brought

Shown on the admin feeds page beside the last poll time; unknown (NULL) for feeds
polled before this column existed.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('feed', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_new_events', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('feed', schema=None) as batch_op:
        batch_op.drop_column('last_new_events')
