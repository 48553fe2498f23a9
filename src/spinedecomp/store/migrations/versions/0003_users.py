"""Dashboard accounts in the store's schema: table ``users``.

Before this revision the web layer created its own table ``web_user`` outside the migrations.
A database that has one keeps its accounts: the rows (ids included, so the audit log's
``user`` entries still point at the right account) are copied into ``users`` and
``web_user`` is dropped. The downgrade puts accounts back into a ``web_user`` table of the
old layout when there are any, so going back to 0002 does not lock everyone out.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEGACY = "web_user"
COLUMNS = "id, username, full_name, role, password_hash, active, created_at"


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _reset_sequence(table: str) -> None:
    """PostgreSQL: the id sequence continues after the copied ids."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                   f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)")


def upgrade() -> None:
    op.create_table("users", *_columns(),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
                    sa.UniqueConstraint("username", name=op.f("uq_users_username")))
    if LEGACY in sa.inspect(op.get_bind()).get_table_names():
        op.execute(f"INSERT INTO users ({COLUMNS}) SELECT {COLUMNS} FROM {LEGACY}")
        _reset_sequence("users")
        op.drop_table(LEGACY)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT COUNT(*) FROM users")).scalar_one() > 0:
        op.create_table(LEGACY, *_columns(), sa.PrimaryKeyConstraint("id"),
                        sa.UniqueConstraint("username"))
        op.execute(f"INSERT INTO {LEGACY} ({COLUMNS}) SELECT {COLUMNS} FROM users")
        _reset_sequence(LEGACY)
    op.drop_table("users")
