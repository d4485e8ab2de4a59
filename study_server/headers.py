"""Security headers on every response: a strict Content-Security-Policy and friends.

Participant pages and admin pages load scripts and styles from /static only (no
inline script or style anywhere), so the policy needs no `unsafe-inline`. The
trial runner may be framed only by MTurk, and only on an MTurk study (an
ExternalQuestion HIT shows it in an iframe); everything else refuses frames.
"""

from __future__ import annotations

from flask import Flask, g, request
from werkzeug.wrappers import Response

# MTurk shows an ExternalQuestion in an iframe on its worker and requester sites.
MTURK_FRAMERS = "https://*.mturk.com"
# Where the MTurk completion form posts (identifiers.MTURK_HOSTS).
MTURK_SUBMIT = "https://www.mturk.com https://workersandbox.mturk.com"
BASE_POLICY = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "connect-src": "'self'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def policy(mturk: bool = False) -> str:
    """The Content-Security-Policy header value; `mturk`: the runner page of an MTurk study."""
    directives = dict(BASE_POLICY)
    if mturk:
        directives["form-action"] = f"'self' {MTURK_SUBMIT}"
        directives["frame-ancestors"] = MTURK_FRAMERS
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def allow_mturk_frame() -> None:
    """Called by the view of an MTurk study's runner page: MTurk may frame it and take its form."""
    g.mturk_page = True


def add_security_headers(response: Response) -> Response:
    """nosniff and a same-origin referrer everywhere; the CSP (and no framing) on every page."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    mturk = bool(g.get("mturk_page")) and request.blueprint == "participant"
    response.headers["Content-Security-Policy"] = policy(mturk)
    if not mturk:
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
