"""Admin pages: login, dashboard, participants, exports (filled in below)."""

from __future__ import annotations

from flask import Blueprint
from flask_wtf.csrf import CSRFProtect

bp = Blueprint("admin", __name__, url_prefix="/admin")
# Admin forms carry CSRF tokens; the participant API authenticates with bearer tokens instead.
csrf = CSRFProtect()
