"""Surviving a dropped database connection.

The pool tests each connection before lending it (`pool_pre_ping`, set in
app.defaults), so a connection the database closed while idle (a restart, an
idle timeout, a killed backend) is replaced unseen. A connection that drops in
the middle of a request raises DBAPIError with `connection_invalidated`; a
read-only request (GET or HEAD) is then run once more on a fresh connection.
Anything that writes is not retried here: the client retries it, and the API is
idempotent for that.
"""

from __future__ import annotations

from flask import Flask, current_app, g, request
from sqlalchemy.exc import DBAPIError

from study_server.db import db

READS = ("GET", "HEAD")


def retry_read(e: DBAPIError):
    """Run a GET again once after its connection dropped; re-raise anything else."""
    if not e.connection_invalidated or request.method not in READS or g.get("db_retried"):
        raise e
    g.db_retried = True
    db.session.rollback()
    current_app.logger.warning("database connection dropped during %s; retried", request.path)
    view = current_app.view_functions[request.endpoint]
    try:
        return current_app.ensure_sync(view)(**(request.view_args or {}))
    except Exception as again:
        # Raised in an error handler it would skip the app's handlers (a 404 would be a 500).
        return current_app.handle_user_exception(again)


def init_app(app: Flask) -> None:
    app.register_error_handler(DBAPIError, retry_read)
