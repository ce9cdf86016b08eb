"""events: the admin search text (titles and summaries, case-folded), and indexes for
the admin list (newest first by day and id; by source)

Revision ID: 0014
Revises: 0016
Create Date: 2026-12-07
"""
import json

from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0016'
branch_labels = None
depends_on = None


def _texts(value) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, str)]
    return []


def upgrade() -> None:
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('search_text', sa.Text(), nullable=False, server_default=''))
        batch_op.create_index('ix_event_day_id', ['occurred_on', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_source'), ['source'], unique=False)
    # stored events become searchable: the same text `ingest.events.search_text` makes
    conn = op.get_bind()
    event = sa.table('event', sa.column('id', sa.Integer), sa.column('title', sa.JSON),
                     sa.column('summary', sa.JSON), sa.column('search_text', sa.Text))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(event.c.id, event.c.title, event.c.summary)
            .where(event.c.id > last).order_by(event.c.id).limit(2000)
        ).all()
        if not rows:
            break
        conn.execute(
            event.update().where(event.c.id == sa.bindparam('event_id'))
            .values(search_text=sa.bindparam('text')),
            [{'event_id': i, 'text': '\n'.join(_texts(t) + _texts(s)).casefold()}
             for i, t, s in rows],
        )
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_source'))
        batch_op.drop_index('ix_event_day_id')
        batch_op.drop_column('search_text')
