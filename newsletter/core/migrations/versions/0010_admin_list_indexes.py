"""indexes for the admin lists: subscriber search by address or name prefix, outbox by
period; the audit log of admin changes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        # text_pattern_ops: LIKE 'prefix%' uses the index whatever the database's collation
        op.execute('CREATE INDEX ix_subscriber_email_pattern ON subscriber (email text_pattern_ops)')
        op.execute('CREATE INDEX ix_subscriber_name_lower ON subscriber (lower(name) text_pattern_ops)')
    else:
        # SQLite searches by range on the binary-ordered unique email index and on this one
        op.execute('CREATE INDEX ix_subscriber_name_lower ON subscriber (lower(name))')
    op.create_index('ix_delivery_created_at', 'delivery', ['created_at'], unique=False)
    op.create_table('adminaudit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('token_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_adminaudit_at', 'adminaudit', ['at'], unique=False)
    op.create_index('ix_adminaudit_token_name', 'adminaudit', ['token_name'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_adminaudit_token_name', table_name='adminaudit')
    op.drop_index('ix_adminaudit_at', table_name='adminaudit')
    op.drop_table('adminaudit')
    op.drop_index('ix_delivery_created_at', table_name='delivery')
    op.execute('DROP INDEX IF EXISTS ix_subscriber_name_lower')
    op.execute('DROP INDEX IF EXISTS ix_subscriber_email_pattern')
