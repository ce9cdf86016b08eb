"""indexes for the admin lists: subscriber search by address or name prefix, outbox by period

Revision ID: 0010
Revises: 0004
Create Date: 2026-12-06
"""
from alembic import op


revision = '0010'
down_revision = '0004'
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


def downgrade() -> None:
    op.drop_index('ix_delivery_created_at', table_name='delivery')
    op.execute('DROP INDEX IF EXISTS ix_subscriber_name_lower')
    op.execute('DROP INDEX IF EXISTS ix_subscriber_email_pattern')
