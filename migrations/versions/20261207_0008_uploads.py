"""uploads

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.kit.orm


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'uploads',
        sa.Column('project_id', sa.String(length=64), nullable=False),
        sa.Column('filename', sa.String(length=512), nullable=False),
        sa.Column('purpose', sa.Enum('assistants', 'assistants_output', 'batch', 'batch_output', 'fine-tune', 'fine-tune-results', 'vision', 'user_data', 'evals', name='filepurpose', native_enum=False, length=32), nullable=False),
        sa.Column('bytes', sa.BigInteger(), nullable=False),
        sa.Column('mime_type', sa.String(length=255), nullable=False),
        sa.Column('status', sa.Enum('pending', 'completed', 'cancelled', 'expired', name='uploadstatus', native_enum=False, length=16), nullable=False),
        sa.Column('expires_at', app.kit.orm.UTCDateTime(timezone=True), nullable=False),
        sa.Column('received_bytes', sa.BigInteger(), nullable=False),
        sa.Column('file_expires_in', sa.Integer(), nullable=True),
        sa.Column('file_id', sa.String(length=64), nullable=True),
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('created_at', app.kit.orm.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['file_id'], ['files.id'], name=op.f('fk_uploads_file_id_files'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_uploads_project_id_projects'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_uploads')),
    )
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_uploads_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_uploads_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_uploads_status_expires_at'), ['status', 'expires_at'], unique=False)

    op.create_table(
        'upload_parts',
        sa.Column('upload_id', sa.String(length=64), nullable=False),
        sa.Column('bytes', sa.BigInteger(), nullable=False),
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('created_at', app.kit.orm.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['upload_id'], ['uploads.id'], name=op.f('fk_upload_parts_upload_id_uploads'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_upload_parts')),
    )
    with op.batch_alter_table('upload_parts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload_parts_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_upload_parts_upload_id'), ['upload_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('upload_parts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upload_parts_upload_id'))
        batch_op.drop_index(batch_op.f('ix_upload_parts_created_at'))
    op.drop_table('upload_parts')

    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_uploads_status_expires_at'))
        batch_op.drop_index(batch_op.f('ix_uploads_project_id'))
        batch_op.drop_index(batch_op.f('ix_uploads_created_at'))
    op.drop_table('uploads')
