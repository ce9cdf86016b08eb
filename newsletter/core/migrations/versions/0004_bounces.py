"""bounces, complaints and unsubscribe mails; readers' bounce scores

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bounce',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('diagnostic', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('message_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['delivery.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscriber.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_hash')
    )
    with op.batch_alter_table('bounce', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bounce_delivery_id'), ['delivery_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_bounce_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_bounce_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_bounce_subscriber_id'), ['subscriber_id'], unique=False)

    with op.batch_alter_table('subscriber', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bounce_score', sa.Float(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('bounce_scored_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('disabled_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('bounce', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bounce_subscriber_id'))
        batch_op.drop_index(batch_op.f('ix_bounce_received_at'))
        batch_op.drop_index(batch_op.f('ix_bounce_kind'))
        batch_op.drop_index(batch_op.f('ix_bounce_delivery_id'))

    op.drop_table('bounce')

    # plain ALTER TABLE DROP COLUMN (SQLite 3.35+): a batch copy of the table would drop
    # and recreate `subscriber`, which the deliveries' foreign keys refuse
    for column in ('disabled_reason', 'bounce_scored_at', 'bounce_score'):
        op.drop_column('subscriber', column)
