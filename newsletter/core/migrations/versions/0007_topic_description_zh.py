"""topics get a Chinese description for readers of the Chinese pages

Revision ID: 0007
Revises: 0010
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0010'
branch_labels = None
depends_on = None

# the shipped topics' Chinese descriptions, for databases created before they existed
# (only where the English description is still the shipped one)
SHIPPED = {
    'governance': (
        'Laws, regulation, export controls, standards and global AI governance.',
        '法律法规、监管、出口管制、标准与全球 AI 治理。',
    ),
    'capital': (
        'Funding rounds, investment, acquisitions, valuations and AI funds.',
        '融资、投资、并购、估值与 AI 基金。',
    ),
    'hardware': (
        'Chips, accelerators, compute and data centres, AI devices and robots.',
        '芯片、加速器、算力与数据中心、AI 终端与机器人。',
    ),
    'open-source': (
        'Open-sourced models, open weights, and open-source initiatives.',
        '开源模型、开放权重与开源倡议。',
    ),
}


def upgrade() -> None:
    with op.batch_alter_table('topic', schema=None) as batch_op:
        batch_op.add_column(sa.Column('description_zh', sa.Text(), nullable=False, server_default=''))
    topic = sa.table('topic', sa.column('slug', sa.String), sa.column('description', sa.Text),
                     sa.column('description_zh', sa.Text))
    for slug, (en, zh) in SHIPPED.items():
        op.execute(
            topic.update()
            .where(topic.c.slug == slug, topic.c.description == en)
            .values(description_zh=zh)
        )


def downgrade() -> None:
    with op.batch_alter_table('topic', schema=None) as batch_op:
        batch_op.drop_column('description_zh')
