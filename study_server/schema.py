"""Bringing a database to the current schema, and telling whether it is there."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import upgrade

from percept.errors import PerceptError
from study_server.app import MIGRATIONS
from study_server.db import db


def upgrade_schema(app: Flask) -> None:
    """Apply every pending migration (creates the tables of a new database)."""
    with app.app_context():
        upgrade(directory=MIGRATIONS)


def require_current_schema(app: Flask) -> None:
    """A clear error when the database is missing tables or migrations."""
    with app.app_context():
        script = ScriptDirectory.from_config(
            app.extensions["migrate"].migrate.get_config(MIGRATIONS)
        )
        with db.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    head = script.get_current_head()
    if current != head:
        url = db_url_for_humans(app)
        raise PerceptError(
            f"{url}: database schema is at {current or 'nothing'}, the server needs "
            f"{head}; run `percept db upgrade --db {url}`"
        )


def db_url_for_humans(app: Flask) -> str:
    """The database URL with any password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(app.config["SQLALCHEMY_DATABASE_URI"]).render_as_string(hide_password=True)
