"""Admin pages: login, dashboard, a study's participants, state and targets, the export
download and the admin guide.

Every page needs a login with the password whose werkzeug hash is ADMIN_PASSWORD_HASH
(see docs/admin.md). Every form posts a CSRF token. The numbers come from
`study_server.dashboard`; views only check access, call it and render.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import update
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from percept.errors import PerceptError
from study_server import dashboard, lifecycle
from study_server.db import db, utcnow
from study_server.models import AdminSession, Study
from study_server.studies import find_study

bp = Blueprint("admin", __name__, url_prefix="/admin")
# Admin forms carry CSRF tokens; the participant API authenticates with bearer tokens instead.
csrf = CSRFProtect()

SESSION_KEY = "admin"
# What a `next` after login may be: an admin path in printable ASCII.
SAFE_PATH = re.compile(r"/admin/[!-~]*")
WRONG_PASSWORD = "Wrong password."
# An admin login lasts this long at most, then the password is asked again.
SESSION_SECONDS = 12 * 3600
# Exports bigger than this spill from memory to a temporary file.
EXPORT_IN_MEMORY = 32 * 1024 * 1024
# The admin guide /admin/help shows: docs/admin.md of the source checkout the server runs
# from (docs/deploy.md installs it so); a wheel has no docs/ and the page says where to look.
GUIDE = Path(__file__).resolve().parent.parent / "docs" / "admin.md"
# The pages reload themselves this often (static/admin.js), keeping the scroll position.
REFRESH_SECONDS = 30


@bp.app_template_filter("plural")
def plural_filter(n: int, singular: str, plural_form: str | None = None) -> str:
    """{{ n|plural("participant") }} -> "1 participant", "2 participants"."""
    return dashboard.plural(n, singular, plural_form)


def password_hash() -> str | None:
    """The configured admin password hash; None when admin is disabled."""
    return current_app.config.get("ADMIN_PASSWORD_HASH") or None


def logged_in() -> bool:
    """Whether this request's session is an open admin login.

    The cookie holds only a random login id; the login itself is a row of the
    admin_session table. It counts while it is not ended (logout ends it), is younger
    than SESSION_SECONDS, and was opened with the admin password configured now
    (a changed password ends every older login). Changing SECRET_KEY logs everyone out.
    """
    login_id = session.get(SESSION_KEY)
    if password_hash() is None or not isinstance(login_id, str):
        return False
    row = db.session.get(AdminSession, hash_login_id(login_id))
    return (
        row is not None
        and row.ended_at is None
        and row.password == current_app.config["ADMIN_PASSWORD_FINGERPRINT"]
        and timedelta(0) <= utcnow() - row.created_at < timedelta(seconds=SESSION_SECONDS)
    )


def hash_login_id(login_id: str) -> str:
    """What is stored of a login id: its sha256 (a database dump opens no admin session)."""
    return hashlib.sha256(login_id.encode()).hexdigest()


def start_login() -> None:
    """Open a new admin login and put its id in the (signed) session cookie."""
    login_id = secrets.token_urlsafe(32)
    db.session.add(
        AdminSession(
            id=hash_login_id(login_id),
            created_at=utcnow(),
            password=current_app.config["ADMIN_PASSWORD_FINGERPRINT"],
        )
    )
    db.session.commit()
    session.clear()
    session[SESSION_KEY] = login_id


def end_login() -> None:
    """End this cookie's admin login on the server, so a copy of the cookie is worthless."""
    login_id = session.get(SESSION_KEY)
    if isinstance(login_id, str):
        db.session.execute(
            update(AdminSession)
            .where(AdminSession.id == hash_login_id(login_id), AdminSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )
        db.session.commit()
    session.clear()


def safe_next(target: str | None) -> str:
    """Where to go after login: an admin path of this site, never another host.

    Only printable ASCII without spaces (a URL's own characters): CR/LF would split
    the Location header, so such a `next` is ignored like any other bad one.
    """
    if target and SAFE_PATH.fullmatch(target) and "//" not in target and "\\" not in target:
        return target
    return url_for("admin.index")


@bp.before_request
def require_login():
    if request.endpoint in ("admin.login",) or logged_in():
        return None
    return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))


@bp.after_request
def admin_headers(response: Response) -> Response:
    # Admin pages hold participant data: keep them out of caches and out of frames.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; a right password starts an admin session.

    Wrong passwords count towards a per-address lockout (study_server/limits.py).
    """
    hashed = password_hash()
    next_url = request.values.get("next")
    if hashed is None:
        status = 403 if request.method == "POST" else 200
        return render_template("admin/login.html", disabled=True), status
    if request.method == "GET" and logged_in():
        return redirect(safe_next(next_url))
    error = None
    if request.method == "POST":
        password = request.form.get("password", "")
        try:
            # check_password_hash compares digests in constant time.
            ok = check_password_hash(hashed, password)
        except ValueError:
            current_app.logger.error("ADMIN_PASSWORD_HASH is not a werkzeug password hash")
            ok = False
        if ok:
            start_login()
            return redirect(safe_next(next_url))
        current_app.logger.warning("admin login: wrong password from %s", request.remote_addr)
        error = WRONG_PASSWORD
    page = render_template("admin/login.html", disabled=False, error=error, next=next_url)
    return page, 401 if error else 200


@bp.post("/logout")
def logout():
    """End the admin login, here and for every copy of its cookie."""
    end_login()
    return redirect(url_for("admin.login"))


@bp.get("/")
def index():
    """Every study with per-model progress and totals."""
    now = utcnow()
    summaries = [dashboard.summarise(study, now) for study in dashboard.all_studies()]
    return render_template(
        "admin/index.html", summaries=summaries, now=now, refresh=REFRESH_SECONDS
    )


@bp.get("/studies/<slug>")
def study(slug: str):
    """One study: state, settings, the participant URL, per-model progress, the participants
    in a session, exclusions by rule, and its newest participants."""
    found = study_or_404(slug)
    now = utcnow()
    summary = dashboard.summarise(found, now)
    rows, total = dashboard.participants(found, limit=dashboard.PARTICIPANT_ROWS, now=now)
    active, active_total = dashboard.active_participants(found, now=now)
    base = public_url()
    url = dashboard.participant_url(base, found.slug, summary.platform)
    return render_template(
        "admin/study.html",
        summary=summary,
        participants=rows,
        total=total,
        active=active,
        active_total=active_total,
        url=url,
        external_question=dashboard.external_question(url),
        unreachable=None if current_app.config.get("PUBLIC_URL") else local_host(base),
        now=now,
        refresh=REFRESH_SECONDS,
        state=found.state,
        actions=lifecycle.actions_from(found.state),
        audit=lifecycle.audit_lines(found),
        rule_names=dashboard.RULE_NAMES,
        max_target=lifecycle.MAX_TARGET,
    )


def public_url() -> str:
    """Where participants reach this server: PUBLIC_URL when configured, else the address
    this page was asked for (behind the nginx of docs/deploy.md, https://HOST/)."""
    return current_app.config.get("PUBLIC_URL") or request.host_url


def local_host(base: str) -> str | None:
    """The host of `base` when only this machine can reach it (localhost, a loopback
    address: an SSH tunnel, say), else None; the page then asks for PUBLIC_URL."""
    host = urlsplit(base).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return host
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


@bp.get("/help")
def help_page():
    """The admin guide (docs/admin.md) as plain text: every control and column explained,
    readable without a network."""
    try:
        text = GUIDE.read_text(encoding="utf-8")
    except OSError:
        text = None
    return render_template("admin/help.html", text=text, path=GUIDE)


@bp.post("/studies/<slug>/state")
def change_state(slug: str):
    """Open, pause, resume or close the study (form field `action`); logged in the audit log."""
    found = study_or_404(slug)
    action = request.form.get("action", "")
    if action not in lifecycle.TRANSITIONS:
        abort(400, description=f"unknown action {action!r}")
    try:
        lifecycle.change_state(found, action, who())
    except PerceptError as e:
        db.session.rollback()
        abort(409, description=str(e))
    return redirect(url_for("admin.study", slug=found.slug))


@bp.post("/studies/<slug>/target")
def set_target(slug: str):
    """Set the target of one model (form field `model`) or of every model (`model` empty)
    to `target`; logged in the audit log with the old and new targets."""
    found = study_or_404(slug)
    model = request.form.get("model", "") or None
    try:
        lifecycle.set_target(
            found, lifecycle.parse_target(request.form.get("target", "")), who(), model
        )
    except PerceptError as e:
        db.session.rollback()
        abort(400, description=str(e))
    return redirect(url_for("admin.study", slug=found.slug))


@bp.post("/studies/<slug>/withdraw")
def withdraw(slug: str):
    """Delete one participant's rows (a withdrawal): first a confirmation page, then, with
    `confirm=yes`, the deletion, logged in the audit log by a salted hash of the id."""
    from study_server.withdrawal import delete_participant, find_participant, row_counts

    found = study_or_404(slug)
    number = request.form.get("participant", "").strip()
    if not number.isdigit() or not 0 < int(number) < 2**31:
        abort(400, description="give the participant's number (Id on this page)")
    try:
        person = find_participant(found, number=int(number))
    except PerceptError as e:
        abort(404, description=str(e))
    if request.form.get("confirm") != "yes":
        return render_template(
            "admin/withdraw.html", slug=found.slug, number=person.id, rows=row_counts(person)
        )
    delete_participant(person, who())
    return redirect(url_for("admin.study", slug=found.slug))


def who() -> str:
    """This admin login as the audit log names it: the start of its admin_session id."""
    return f"admin {hash_login_id(session[SESSION_KEY])[:12]}"


@bp.get("/studies/<slug>/export.zip")
def export(slug: str):
    """The study's tidy export as a zip; platform ids are always hashed in this download."""
    from study_server.export import export_zip

    found = study_or_404(slug)
    # Not a `with` block: send_file closes the file once the response is sent.
    buffer = tempfile.SpooledTemporaryFile(max_size=EXPORT_IN_MEMORY)  # noqa: SIM115
    export_zip(buffer, slug=found.slug, include_platform_ids=False)
    buffer.seek(0)
    name = f"{found.slug}-{utcnow():%Y%m%d-%H%M%S}.zip"
    return send_file(buffer, mimetype="application/zip", as_attachment=True, download_name=name)


def study_or_404(slug: str) -> Study:
    """The study with this slug, or a 404 page."""
    found = find_study(slug)
    if found is None:
        abort(404)
    return found
