"""repeats: a trial added at the end of its block because an earlier answer was invalid

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 09:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    # Null for every trial made before repeats existed: none of them is a repeat.
    with op.batch_alter_table("trial", schema=None) as batch_op:
        batch_op.add_column(sa.Column("repeat_of", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_trial_repeat_of_trial"), "trial", ["repeat_of"], ["id"]
        )


def downgrade():
    with op.batch_alter_table("trial", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_trial_repeat_of_trial"), type_="foreignkey")
        batch_op.drop_column("repeat_of")
