"""Abuse limits: per-address rate limits on sign-up and admin login (flask-limiter).

Counters live where RATELIMIT_STORAGE_URI says; the default, `memory://`, keeps
them in each gunicorn worker's own memory, so with N workers an address may get
up to N times a limit before every worker has refused it (docs/deploy.md). A
shared store (`redis://...`, with the `redis` package installed) makes the limits
exact across workers. The per-study cap on sign-ups per minute is not here: it
counts participants in the database (study_server.assignment.check_signup_rate).

The client address is the TCP peer's, or behind TRUSTED_PROXIES proxies the
address they put in X-Forwarded-For (werkzeug's ProxyFix, set up in create_app).
"""

from __future__ import annotations

from flask import Flask, current_app, request
from flask_limiter import Limiter, RequestLimit
from werkzeug.wrappers import Response


def client_address() -> str:
    """The address limits count against (after ProxyFix, the participant's own)."""
    return request.remote_addr or "unknown"


def init_limits(app: Flask) -> Limiter:
    """This app's own limiter (its counters, its settings) on sign-up and admin login.

    One per app, not one per module: every app made in a process (tests make many)
    keeps its own counters and its own RATELIMIT_ENABLED.
    """
    limiter = Limiter(client_address, app=app, strategy="moving-window")
    views = app.view_functions
    signup = "participant.create_participant"
    views[signup] = limiter.limit(signup_limit, on_breach=log_signup_breach)(views[signup])
    views["admin.login"] = limiter.limit(
        admin_login_limit,
        methods=["POST"],
        deduct_when=failed_login,
        on_breach=log_login_breach,
        error_message="Too many wrong passwords from your address; try again later.",
    )(views["admin.login"])
    # The decorators hold the limiter weakly: the app keeps it alive.
    app.extensions["percept_limiter"] = limiter
    return limiter


def signup_limit() -> str:
    """Sign-ups per address, e.g. "10 per minute;50 per hour" (SIGNUP_LIMIT)."""
    return current_app.config["SIGNUP_LIMIT"]


def admin_login_limit() -> str:
    """Failed admin logins per address before a lockout (ADMIN_LOGIN_LIMIT).

    Several windows make a back-off: 5 per minute then 20 per hour then 100 per day
    lock an address out for a minute, then an hour, then a day.
    """
    return current_app.config["ADMIN_LOGIN_LIMIT"]


def failed_login(response: Response) -> bool:
    """Only wrong passwords count towards the admin lockout."""
    return response.status_code == 401


def log_signup_breach(limit: RequestLimit) -> None:
    current_app.logger.warning(
        "sign-up rate limit %s reached by %s (%s)", limit.limit, client_address(), request.path
    )


def log_login_breach(limit: RequestLimit) -> None:
    current_app.logger.warning(
        "admin login locked out for %s after failed passwords (%s)", client_address(), limit.limit
    )
