"""events: an editor's pin (picks for every monthly reader) and per-language sources

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pinned', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('sources', sa.JSON(), nullable=False, server_default='{}'))


def downgrade() -> None:
    # plain ALTER TABLE DROP COLUMN (SQLite 3.35+): a batch copy would recreate `event`,
    # which the event_topic foreign keys refuse
    for column in ('sources', 'pinned'):
        op.drop_column('event', column)
