"""study states (draft, open, paused, closed) and the audit log

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 10:10:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    # Studies made before states existed were taking participants: they are open.
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("state", sa.String(length=8), server_default="open", nullable=False)
        )
        batch_op.create_check_constraint(
            op.f("ck_study_state_valid"), "state IN ('draft', 'open', 'paused', 'closed')"
        )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("who", sa.String(length=100), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_audit_log_study_id_study")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_study_id"), ["study_id"], unique=False)


def downgrade():
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_study_id"))
    op.drop_table("audit_log")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_study_state_valid"), type_="check")
        batch_op.drop_column("state")
