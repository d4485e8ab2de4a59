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

import json
import math
import time
from typing import Any

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
    # Eligibility tells whether a platform id completed the study, as a sign-up would:
    # the same per-address limit (its own counter), so it is no faster way to ask.
    eligibility = "participant.get_eligibility"
    views[eligibility] = limiter.limit(signup_limit)(views[eligibility])
    views["admin.login"] = limiter.limit(
        admin_login_limit,
        methods=["POST"],
        deduct_when=failed_login,
        on_breach=log_login_breach,
        error_message="Too many wrong passwords from your address; try again later.",
    )(views["admin.login"])
    # The decorators hold the limiter weakly: the app keeps it alive.
    app.extensions["percept_limiter"] = limiter
    box = PenaltyBox(app.wsgi_app)
    app.wsgi_app = box
    app.extensions["percept_penalty_box"] = box
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


class PenaltyBox:
    """WSGI middleware: an address the limiter refused a sign-up is refused again here,
    before Flask, until its limit resets.

    A flood of sign-ups from one address then costs the worker a dictionary lookup per
    request instead of a trip through Flask and the limiter, which leaves the worker's
    time to the participants' answers (benchmarks/flood.py). Per worker, like the
    limiter's memory storage.
    """

    BODY = json.dumps(
        {"error": "too_many_requests", "message": "too many sign-ups from your address"}
    ).encode()

    def __init__(self, wsgi_app: Any):
        self.wsgi_app = wsgi_app
        self.until: dict[str, float] = {}

    def hold(self, address: str, seconds: float) -> None:
        if len(self.until) > 100_000:
            self.until.clear()  # bounded: the limiter still refuses whoever comes back
        self.until[address] = time.monotonic() + seconds

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if (
            environ.get("REQUEST_METHOD") == "POST"
            and path.startswith("/api/v1/studies/")
            and path.endswith("/participants")
        ):
            left = self.until.get(environ.get("REMOTE_ADDR") or "unknown", 0) - time.monotonic()
            if left > 0:
                start_response(
                    "429 TOO MANY REQUESTS",
                    [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(self.BODY))),
                        ("Retry-After", str(math.ceil(left))),
                        # A flooding client must connect again for each try: its loop
                        # slows down, and keeps no worker connection busy.
                        ("Connection", "close"),
                    ],
                )
                return [self.BODY]
        return self.wsgi_app(environ, start_response)


def log_signup_breach(limit: RequestLimit) -> None:
    box = current_app.extensions.get("percept_penalty_box")
    if box is not None:
        box.hold(client_address(), max(1.0, limit.reset_at - time.time()))
    if first_in_a_while("signup"):
        current_app.logger.warning(
            "sign-up rate limit %s reached by %s (%s); further refusals of this address "
            "are not logged for a minute",
            limit.limit,
            client_address(),
            request.path,
        )


def log_login_breach(limit: RequestLimit) -> None:
    if first_in_a_while("login"):
        current_app.logger.warning(
            "admin login locked out for %s after failed passwords (%s)",
            client_address(),
            limit.limit,
        )


LOG_EVERY_S = 60.0


def first_in_a_while(kind: str) -> bool:
    """True at most once a minute per kind and address (per app, in each worker): a flood
    of refused requests must not become a flood of log lines."""
    logged = current_app.extensions.setdefault("percept_limit_logs", {})
    now = time.monotonic()
    key = (kind, client_address())
    if now - logged.get(key, -LOG_EVERY_S) < LOG_EVERY_S:
        return False
    if len(logged) > 10_000:
        logged.clear()
    logged[key] = now
    return True
