"""click counts: per event, topic section and day; per delivery only when an owner turns
per-reader counts on; run-time options set from the admin UI

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0016'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('clickcount',
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['event.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('event_id', 'topic', 'day')
    )
    op.create_index('ix_clickcount_day', 'clickcount', ['day'], unique=False)
    op.create_table('readerclick',
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('last_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['delivery.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['event_id'], ['event.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('delivery_id', 'event_id')
    )
    op.create_index('ix_readerclick_event_id', 'readerclick', ['event_id'], unique=False)
    op.create_table('option',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('option')
    op.drop_index('ix_readerclick_event_id', table_name='readerclick')
    op.drop_table('readerclick')
    op.drop_index('ix_clickcount_day', table_name='clickcount')
    op.drop_table('clickcount')
