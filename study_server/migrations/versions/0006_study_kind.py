"""study kind: pilot or main

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    # Studies made before kinds existed were told apart by slug only: they count as main.
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=8), server_default="main", nullable=False)
        )
        batch_op.create_check_constraint(op.f("ck_study_kind_valid"), "kind IN ('pilot', 'main')")


def downgrade():
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_study_kind_valid"), type_="check")
        batch_op.drop_column("kind")
