"""image store: the hash of each image as the study serves it; MTurk details per token

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 09:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    # Null for images of studies created before the store: `percept study check SLUG
    # --restore-from STIMDIR` fills the store and this column for them.
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("served_sha256", sa.String(length=64), nullable=True))
    # Each sign-up's own MTurk assignment: a resumed session keeps the first one.
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignment_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("turk_submit_to", sa.String(length=500), nullable=True))


def downgrade():
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.drop_column("turk_submit_to")
        batch_op.drop_column("assignment_id")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_column("served_sha256")
