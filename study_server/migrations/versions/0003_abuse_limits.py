"""interleaved staircases, admin sessions, sign-up cap index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:00:00

The staircase state is no longer stored on the participant: it is replayed from the
answers (study_server.staircase), so two answers arriving at once cannot lose a step.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "admin_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("password", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_session")),
    )
    with op.batch_alter_table("trial", schema=None) as batch_op:
        batch_op.add_column(sa.Column("staircase", sa.Integer(), nullable=True))
    with op.batch_alter_table("participant", schema=None) as batch_op:
        batch_op.create_index(
            "ix_participant_study_created", ["study_id", "created_at"], unique=False
        )
        batch_op.drop_column("staircase_streak")
        batch_op.drop_column("staircase_ms")


def downgrade():
    with op.batch_alter_table("participant", schema=None) as batch_op:
        batch_op.add_column(sa.Column("staircase_ms", sa.Double(), nullable=True))
        batch_op.add_column(
            sa.Column("staircase_streak", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.drop_index("ix_participant_study_created")
    with op.batch_alter_table("trial", schema=None) as batch_op:
        batch_op.drop_column("staircase")
    op.drop_table("admin_session")
