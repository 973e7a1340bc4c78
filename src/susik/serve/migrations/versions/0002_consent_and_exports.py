"""consent, source and licence per request; image optional; exports

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows from before consent was asked get consent=false: their images are no training data, and the
    # retention purge deletes them.
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("consent", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("source", sa.String(32), nullable=False, server_default="api"))
        batch.add_column(sa.Column("license", sa.String(255), nullable=True))
        batch.alter_column("image_path", existing_type=sa.String(255), nullable=True)
    op.create_table(
        "exports",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("exports")
    op.execute("UPDATE requests SET image_path = '' WHERE image_path IS NULL")  # '': no image, as before
    with op.batch_alter_table("requests") as batch:
        batch.alter_column("image_path", existing_type=sa.String(255), nullable=False)
        batch.drop_column("license")
        batch.drop_column("source")
        batch.drop_column("consent")
