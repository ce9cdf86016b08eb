"""when a reader was disabled (bounces or a complaint), for the dashboard's counts

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('subscriber', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disabled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    # plain ALTER TABLE DROP COLUMN (SQLite 3.35+), as in 0004: a batch copy would
    # recreate `subscriber`, which the deliveries' foreign keys refuse
    op.drop_column('subscriber', 'disabled_at')
