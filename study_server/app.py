"""The application factory and its configuration sources."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.security import generate_password_hash

from percept.errors import PerceptError
from study_server.db import db, migrate

DEV_SECRET = "dev"
MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")


def defaults(instance_path: str) -> dict[str, Any]:
    """Settings used unless the instance config, the environment or the caller say otherwise."""
    return {
        "SECRET_KEY": DEV_SECRET,
        "SQLALCHEMY_DATABASE_URI": "sqlite:///" + os.path.join(instance_path, "percept.sqlite3"),
        # A pooled connection is tested before use: one the database dropped is replaced.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        # The studies' own copies of their images (study_server/imagestore.py).
        "IMAGE_STORE": os.path.join(instance_path, "images"),
        # Behind nginx: the internal location that maps to IMAGE_STORE (e.g. "/_store/"), so
        # images are sent by nginx via X-Accel-Redirect, not read by the app (docs/deploy.md).
        "IMAGE_ACCEL_PREFIX": None,
        # Participant requests are small JSON bodies; anything bigger is refused unread.
        "MAX_CONTENT_LENGTH": 16 * 1024,
        "PRODUCTION": False,
        "ADMIN_PASSWORD": None,
        "ADMIN_PASSWORD_HASH": None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # None: not set by anyone, so check_config makes it follow PRODUCTION.
        "SESSION_COOKIE_SECURE": None,
        "WTF_CSRF_TIME_LIMIT": None,
        # Abuse limits (study_server/limits.py, docs/deploy.md). Counters in each worker's
        # memory unless RATELIMIT_STORAGE_URI names a shared store.
        "RATELIMIT_STORAGE_URI": "memory://",
        "RATELIMIT_HEADERS_ENABLED": True,
        "SIGNUP_LIMIT": "5 per minute;20 per hour",
        "ADMIN_LOGIN_LIMIT": "5 per minute;20 per hour;100 per day",
        # Proxies in front of gunicorn whose X-Forwarded-For names the client (nginx: 1).
        "TRUSTED_PROXIES": 0,
        # Where participants reach the server, e.g. https://study.example.org: the study
        # page builds the participant URL from it. None: from the address the page was
        # asked for (right behind the nginx of docs/deploy.md, wrong through an SSH tunnel).
        "PUBLIC_URL": None,
    }


def create_app(config: Mapping[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    """A configured study server.

    Settings are read in this order, later ones winning: defaults, the instance
    folder's `config.py`, the environment (`DATABASE_URL`, `SECRET_KEY`, and any
    `PERCEPT_<NAME>`), then `config`. With PRODUCTION true the app refuses to
    start on a missing or default SECRET_KEY, and the session cookie (the admin
    login) is sent over HTTPS only unless SESSION_COOKIE_SECURE is set. The
    instance folder defaults to Flask's (`instance/` beside the package in a
    source checkout) or $PERCEPT_INSTANCE.
    """
    app = Flask(
        __name__,
        instance_relative_config=True,
        instance_path=instance_path or os.environ.get("PERCEPT_INSTANCE") or None,
    )
    app.config.from_mapping(defaults(app.instance_path))
    app.config.from_pyfile("config.py", silent=True)
    if os.environ.get("DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    if os.environ.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
    app.config.from_prefixed_env("PERCEPT")
    # from_prefixed_env reads values as JSON: a numeric secret or password must stay text.
    for name in ("SECRET_KEY", "ADMIN_PASSWORD", "ADMIN_PASSWORD_HASH"):
        if f"PERCEPT_{name}" in os.environ:
            app.config[name] = os.environ[f"PERCEPT_{name}"]
    if config:
        app.config.from_mapping(config)
    check_config(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        os.makedirs(app.instance_path, exist_ok=True)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS)

    from study_server import admin, dbretry, headers, participant
    from study_server.limits import init_limits

    app.register_blueprint(participant.bp)
    app.register_blueprint(admin.bp)
    admin.csrf.init_app(app)
    admin.csrf.exempt(participant.bp)
    headers.init_app(app)
    dbretry.init_app(app)
    init_limits(app)
    if app.config["TRUSTED_PROXIES"]:
        # Behind nginx the TCP peer is the proxy: take the client from the last
        # X-Forwarded-For entries the trusted proxies added (never from the client's own).
        # Outermost, so that the limits see the client's address.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(app.config["TRUSTED_PROXIES"]))
    return app


def check_config(app: Flask) -> None:
    """Refuse unsafe production settings; keep only a hash of a plain admin password.

    In production the session cookie (the admin login) is HTTPS-only unless the
    configuration set SESSION_COOKIE_SECURE itself.
    """
    secret = app.config.get("SECRET_KEY")
    if app.config["PRODUCTION"] and (not secret or secret == DEV_SECRET or len(secret) < 16):
        raise PerceptError(
            "SECRET_KEY is missing or the development default: set SECRET_KEY in the "
            "environment to a long random string, e.g. "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    if app.config.get("SESSION_COOKIE_SECURE") is None:
        app.config["SESSION_COOKIE_SECURE"] = bool(app.config["PRODUCTION"])
    password = app.config.pop("ADMIN_PASSWORD", None)
    given_hash = app.config.get("ADMIN_PASSWORD_HASH")
    if password and not given_hash:
        app.config["ADMIN_PASSWORD_HASH"] = generate_password_hash(password)
    app.config["ADMIN_PASSWORD"] = None
    # The same in every worker (unlike the salted hash of a plain password): a new
    # password gives a new fingerprint, which ends the admin logins opened with the old one.
    secret = str(app.config.get("SECRET_KEY") or "")
    source = f"hash:{given_hash}" if given_hash else f"password:{password or ''}"
    app.config["ADMIN_PASSWORD_FINGERPRINT"] = hmac.new(
        secret.encode(), source.encode(), hashlib.sha256
    ).hexdigest()
    public = app.config.get("PUBLIC_URL")
    if public not in (None, "") and not (
        isinstance(public, str) and re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", public)
    ):
        raise PerceptError(
            f"PUBLIC_URL must be an http(s) address without query, e.g. "
            f"https://study.example.org, got {public!r}"
        )
    proxies = app.config.get("TRUSTED_PROXIES")
    if isinstance(proxies, bool) or not isinstance(proxies, int) or not 0 <= proxies <= 10:
        raise PerceptError(f"TRUSTED_PROXIES must be a whole number 0-10, got {proxies!r}")
    accel = app.config.get("IMAGE_ACCEL_PREFIX")
    if accel and not re.fullmatch(r"/(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/)+", accel):
        raise PerceptError(
            f"IMAGE_ACCEL_PREFIX must be an nginx location path like '/_store/', got {accel!r}"
        )
