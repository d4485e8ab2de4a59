"""Participant-facing routes: the JSON API the trial runner talks to, and stimulus bytes.

Views parse and check input, call one domain function and turn its result or
error into JSON. Every error is JSON ({"error": code, "message": text}) and a
request that fails changes nothing in the database.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from werkzeug.exceptions import HTTPException

from study_server import openapi
from study_server.assignment import (
    AssignmentError,
    ClientInfo,
    Identity,
    assign,
    ensure_trials,
    hash_token,
    resumed_state,
)
from study_server.cleantext import strip_controls
from study_server.db import db
from study_server.eligibility import refusal
from study_server.headers import allow_mturk_frame
from study_server.identifiers import (
    ID_TEXT,
    MTURK_HOSTS,
    MTURK_PREVIEW,
    MTURK_WORKER_ID,
    PLATFORM_FIELDS,
    PROLIFIC_ID,
    PUBLIC_ID,
)
from study_server.imagestore import read_verified, store_dir
from study_server.instructions import paragraphs, rules
from study_server.models import Image, Participant, Response, Study, Token, Trial
from study_server.responses import (
    ResponseError,
    answering,
    complete,
    is_adaptive,
    record,
    storable,
    validate,
    withdraw,
)
from study_server.staircase import next_exposure
from study_server.studies import find_study, study_config

bp = Blueprint("participant", __name__)
# The OpenAPI document of the routes below (study_server/openapi.py builds it).
bp.add_url_rule("/api/v1/openapi.json", "openapi", openapi.serve)
# Config text (consent, instructions) on the pages: paragraphs, escaped.
bp.add_app_template_filter(paragraphs, "paragraphs")

PROLIFIC_DONE = "https://app.prolific.com/submissions/complete"
# Stimuli never change, and every image gets exactly these headers (nothing else differs).
IMAGE_HEADERS = {
    "Content-Type": "image/png",
    "Cache-Control": "public, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


def error(status: int, code: str, message: str):
    return jsonify(error=code, message=message), status


# A study past its newcomers per minute: try again after this many seconds.
BUSY_RETRY_S = 10


@bp.app_errorhandler(ApiError)
def api_error(e: ApiError):
    db.session.rollback()
    response, status = error(e.status, e.code, str(e))
    if status == 429:
        response.headers["Retry-After"] = str(BUSY_RETRY_S)
    return response, status


@bp.app_errorhandler(ResponseError)
def response_error(e: ResponseError):
    db.session.rollback()
    return error(e.status, e.code, str(e))


@bp.app_errorhandler(HTTPException)
def http_error(e: HTTPException):
    # JSON for the API, Flask's own pages elsewhere.
    if request.path.startswith(("/api/", "/i/")):
        db.session.rollback()
        code = (e.name or "error").lower().replace(" ", "_")
        return error(e.code or 500, code, e.description or e.name)
    return e


def json_body() -> dict[str, Any]:
    if request.content_length is None and not request.data:
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        # `silent` covers malformed JSON only: a few KiB of [[[[...]]]] nests too deep to parse.
        raise ApiError(400, "bad_request", "the body nests too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object (application/json)")
    return body


def bearer_token_hash() -> str:
    """The stored hash of the request's bearer token; 401 without one."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "a bearer token is required")
    return hash_token(token.strip())


UNKNOWN_TOKEN = "unknown or expired token"


def current_participant() -> Participant:
    # The study comes in the same query: every participant request needs its config.
    row = db.session.execute(
        select(Participant, Token.assignment_id, Token.turk_submit_to)
        .join(Token, Token.participant_id == Participant.id)
        .where(Token.token_hash == bearer_token_hash())
        .options(joinedload(Participant.study))
    ).first()
    if row is None:
        raise ApiError(401, "unauthorized", UNKNOWN_TOKEN)
    # The MTurk assignment this token came with: where this browser's form goes.
    g.token_mturk = (row.assignment_id, row.turk_submit_to)
    return row.Participant


def study_or_404(slug: str) -> Study:
    study = find_study(slug)
    if study is None:
        raise ApiError(404, "unknown_study", "no such study")
    return study


# The field that names the participant, per platform (sign-up field, eligibility parameter).
PID_FIELD = {"prolific": "prolific_pid", "mturk": "worker_id", "link": "client_id"}


@bp.post("/api/v1/studies/<slug>/participants")
def create_participant(slug: str):
    """Sign up or resume; limited per address (study_server/limits.py) and per study."""
    body = json_body()
    study = study_or_404(slug)
    recruitment = study_config(study).recruitment
    platform = recruitment.platform
    fields = PLATFORM_FIELDS[platform]
    unknown = sorted(set(body) - {*fields, "consent", "screen", "user_agent"})
    if unknown:
        raise ApiError(400, "unknown_field", f"unknown field {unknown[0]!r} for a {platform} study")
    if body.get("consent") is not True:
        raise ApiError(400, "consent_required", "consent must be true to take part")
    ids = {name: _id_text(body, name) for name in fields}
    client = _client_info(body)
    if platform == "mturk" and ids["assignment_id"] == MTURK_PREVIEW:
        return jsonify(preview=True, state=None), 200
    if platform == "prolific" and ids["prolific_pid"] is None:
        raise ApiError(400, "missing_field", "prolific_pid is required (from PROLIFIC_PID)")
    if platform == "mturk":
        for name in fields:
            if ids[name] is None:
                raise ApiError(400, "missing_field", f"{name} is required for an MTurk study")
        if not MTURK_HOSTS.match(ids["turk_submit_to"]):
            raise ApiError(400, "bad_field", "turk_submit_to must be MTurk's own submit host")
    if recruitment.check_platform_ids:
        check_platform_id(platform, ids.get(PID_FIELD[platform]))
    identity = Identity(
        platform_pid=ids.get("prolific_pid") or ids.get("worker_id") or ids.get("client_id"),
        platform_study_id=ids.get("study_id"),
        platform_session_id=ids.get("session_id"),
        assignment_id=ids.get("assignment_id"),
        hit_id=ids.get("hit_id"),
        turk_submit_to=ids.get("turk_submit_to"),
    )
    try:
        participant, token, resumed = assign(study, identity, client)
    except AssignmentError as e:
        raise ApiError(e.status, e.code, str(e)) from None
    return jsonify(token=token, state=shown_state(participant), resumed=resumed), (
        200 if resumed else 201
    )


def check_platform_id(platform: str, pid: str | None) -> None:
    """Refuse a Prolific or MTurk id that is not in the platform's own format (400)."""
    if pid is None:
        return
    if platform == "prolific" and not PROLIFIC_ID.fullmatch(pid):
        raise ApiError(400, "bad_field", "prolific_pid must be a Prolific id (24 hex digits)")
    if platform == "mturk" and not MTURK_WORKER_ID.fullmatch(pid):
        raise ApiError(
            400, "bad_field", "worker_id must be an MTurk worker id (A, then 12+ A-Z/0-9)"
        )


@bp.get("/api/v1/studies/<slug>/eligibility")
def get_eligibility(slug: str):
    """May this person take the study? Asked before consent; stores nothing."""
    study = study_or_404(slug)
    config = study_config(study)
    pid_field = PID_FIELD[config.recruitment.platform]
    unknown = sorted(set(request.args) - {pid_field, "width", "height", "touch_only"})
    if unknown:
        raise ApiError(400, "unknown_field", f"unknown parameter {unknown[0]!r} for this study")
    screen = (_screen_param("width"), _screen_param("height"))
    touch_only = request.args.get("touch_only", "false")
    if touch_only not in ("true", "false"):
        raise ApiError(400, "bad_field", "touch_only must be true or false")
    identity = Identity(platform_pid=_id_text(request.args, pid_field))
    if config.recruitment.check_platform_ids:
        check_platform_id(config.recruitment.platform, identity.platform_pid)
    refused = refusal(study, config, identity, screen, touch_only=touch_only == "true")
    if refused is None:
        return jsonify(eligible=True, reason=None, message=None)
    return jsonify(eligible=False, reason=refused.code, message=refused.message)


def _screen_param(name: str) -> int | None:
    value = request.args.get(name)
    if value is None:
        return None
    # Digits only: int() would also take " 12", "1_000" and "١٢".
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= 6) or int(value) == 0:
        raise ApiError(400, "bad_field", f"{name} must be a positive integer of pixels")
    return int(value)


def _id_text(body: Any, name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    # fullmatch: `$` alone would also let a trailing newline through.
    if not isinstance(value, str) or not ID_TEXT.fullmatch(value):
        raise ApiError(400, "bad_field", f"{name} must be 1-200 URL-safe characters")
    return value


def _client_info(body: dict[str, Any]) -> ClientInfo:
    screen = body.get("screen", {})
    if not isinstance(screen, dict) or set(screen) - {"width", "height", "device_pixel_ratio"}:
        raise ApiError(400, "bad_field", "screen must be {width, height, device_pixel_ratio}")
    for name in ("width", "height"):
        value = screen.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 100_000
        ):
            raise ApiError(400, "bad_field", f"screen.{name} must be a positive integer")
    dpr = screen.get("device_pixel_ratio")
    if dpr is not None and (
        isinstance(dpr, bool) or not isinstance(dpr, int | float) or not 0 < dpr <= 20
    ):
        raise ApiError(400, "bad_field", "screen.device_pixel_ratio must be a number up to 20")
    ua = body.get("user_agent")
    if ua is not None and (not isinstance(ua, str) or len(ua) > 1000 or not storable(ua)):
        raise ApiError(400, "bad_field", "user_agent must be text of at most 1000 characters")
    if ua is not None:
        ua = strip_controls(ua) or None
    return ClientInfo(screen.get("width"), screen.get("height"), dpr, ua)


@bp.get("/api/v1/session")
def get_session():
    """The session; reading it keeps no place alive (only answers do)."""
    participant = current_participant()
    ensure_trials(participant)
    return jsonify(session_json(participant))


def session_json(participant: Participant) -> dict[str, Any]:
    """What the trial runner needs, and nothing that tells real from fake.

    Every trial has the same keys whatever its kind; only an instructed attention
    check has a non-null `instruction` (the text a person must read to pass it).
    """
    study = participant.study
    config = study_config(study)
    rows = db.session.execute(
        select(Trial, Image.public_id, Response.id.is_not(None))
        .join(Image, Trial.image_id == Image.id)
        .outerjoin(Response, Response.trial_id == Trial.id)
        .where(Trial.participant_id == participant.id)
        .order_by(Trial.position)
    ).all()
    trials = []
    for trial, public_id, answered in rows:
        trials.append(
            {
                "id": trial.id,
                "position": trial.position,
                "block": trial.block,
                "image": f"/i/{public_id}.png",
                "exposure_ms": trial.planned_exposure_ms,
                "answered": answered,
                "instruction": trial.expected if trial.kind == "instructed" else None,
                "adaptive": is_adaptive(trial, config),
            }
        )
    data: dict[str, Any] = {
        "state": shown_state(participant),
        "study": {
            "slug": study.slug,
            "title": study.title,
            "instructions": config.instructions,
            "platform": config.recruitment.platform,
            "timing": {
                "mode": config.timing.mode,
                "fixation_ms": config.timing.fixation_ms,
                "exposure_ms": config.timing.exposure_ms,
                "mask_ms": config.timing.mask_ms,
            },
            "response": {
                "real_key": config.response.real_key,
                "fake_key": config.response.fake_key,
                "buttons": config.response.buttons,
                "break_every": config.response.break_every,
            },
            "device": {
                "min_width": config.device.min_width,
                "min_height": config.device.min_height,
                "fullscreen": config.device.fullscreen,
            },
            "practice_feedback": config.practice.feedback,
        },
        "next_exposure_ms": (
            next_exposure(participant.id, config.timing.staircase)
            if config.timing.mode == "staircase"
            else None
        ),
        "trials": trials,
    }
    if participant.state == "completed":
        data["completion"] = completion_json(participant)
    return data


def shown_state(participant: Participant) -> str:
    """The state a participant is told: an abandoned session shows what its next answer
    makes it (reading the session changes nothing)."""
    if participant.state == "abandoned":
        return resumed_state(participant.id)
    return participant.state


def completion_json(participant: Participant) -> dict[str, Any]:
    """The code, and where the browser goes next for this participant's platform."""
    code = participant.completion_code or ""
    config = study_config(participant.study)
    data: dict[str, Any] = {"completion_code": code, "redirect_url": None}
    if participant.platform == "prolific":
        data["redirect_url"] = f"{PROLIFIC_DONE}?{urlencode({'cc': code})}"
    elif participant.platform == "mturk":
        assignment_id, host = g.get("token_mturk") or (None, None)
        if not (assignment_id and host):  # a token from before tokens kept their assignment
            assignment_id, host = participant.assignment_id, participant.turk_submit_to
        data["mturk_submit"] = {
            "action": host.rstrip("/") + "/mturk/externalSubmit",
            "assignmentId": assignment_id,
        }
    elif config.recruitment.completion_url:
        data["redirect_url"] = config.recruitment.completion_url
    return data


@bp.put("/api/v1/trials/<int:trial_id>/response")
def put_response(trial_id: int):
    # The hot path of a running study: one query finds the participant, the trial and any
    # stored answer; the config is cached; the reply is built from what was read.
    found = answering(bearer_token_hash(), trial_id)
    if found is None:
        raise ApiError(401, "unauthorized", UNKNOWN_TOKEN)
    body = validate(json_body())
    config = found.config
    done = record(found, body)
    data: dict[str, Any] = {
        "trial_id": done.trial_id,
        "received_at": done.received_at.isoformat() + "Z",
        # Depends only on the display's timing and the page's focus, never on the answer.
        "repeat": done.repeat,
    }
    if done.block == "practice" and config.practice.feedback:
        # Practice only: what the image was, so the feedback can name the right answer.
        answer = body["choice"] if done.correct else OTHER_CHOICE[body["choice"]]
        data["feedback"] = {"correct": done.correct, "answer": answer}
    if config.timing.mode == "staircase":
        # Only what the next trial needs: its exposure, from the staircase dealt to it
        # (never the one this answer stepped; docs/api.md says what that reveals).
        data["next_exposure_ms"] = next_exposure(found.participant_id, config.timing.staircase)
    return jsonify(data), 200


OTHER_CHOICE = {"real": "fake", "fake": "real"}


@bp.post("/api/v1/session/complete")
def post_complete():
    participant = current_participant()
    complete(participant)
    return jsonify(completion_json(participant)), 200


@bp.post("/api/v1/session/return")
def post_return():
    participant = current_participant()
    withdraw(participant)
    return jsonify(state=participant.state), 200


@bp.get("/i/<public_id>.png")
def image(public_id: str):
    if not PUBLIC_ID.fullmatch(public_id):
        abort(404)
    served_sha256 = db.session.scalar(
        select(Image.served_sha256).where(Image.public_id == public_id)
    )
    if served_sha256 is None:
        # No such image, or one of a study made before the store (docs/deploy.md).
        abort(404)
    accel = current_app.config["IMAGE_ACCEL_PREFIX"]
    if accel:
        # nginx sends the file from its internal location: the app reads nothing here.
        return "", 200, {**IMAGE_HEADERS, "X-Accel-Redirect": f"{accel}{served_sha256}.png"}
    # Only the store is read, and only what still has its hash.
    data = read_verified(store_dir(), served_sha256)
    if data is None:
        current_app.logger.error(
            "image %s: %s is missing or changed in the image store; run `percept study check`",
            public_id,
            served_sha256,
        )
        return error(503, "image_unavailable", "this image cannot be served right now")
    return data, 200, IMAGE_HEADERS


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico on their own: an explicit empty answer, not a 404.

    The pages themselves name static/favicon.svg (base.html).
    """
    return "", 204, {"Cache-Control": "public, max-age=86400"}


@bp.get("/s/<slug>/")
def runner_slash(slug: str):
    """Researchers paste links with a trailing slash: send them to the runner, keeping the
    query string (Prolific's and MTurk's ids travel in it)."""
    target = url_for("participant.runner", slug=slug)
    query = request.query_string.decode("latin-1")
    return redirect(f"{target}?{query}" if query else target, 308)


@bp.get("/s/<slug>")
def runner(slug: str):
    """The trial runner: one page whose screens the ES modules in static/runner/ drive."""
    study = find_study(slug)
    if study is None:
        return render_template("participant/invalid.html"), 404
    config = study_config(study)
    if config.recruitment.platform == "mturk":
        allow_mturk_frame()
    settings = {
        "slug": study.slug,
        "platform": config.recruitment.platform,
        "keys": {"real": config.response.real_key, "fake": config.response.fake_key},
        "labels": {"real": config.response.real_label, "fake": config.response.fake_label},
        # The device check runs before sign-up, so the page itself needs the requirements.
        "device": {
            "min_width": config.device.min_width,
            "min_height": config.device.min_height,
            "fullscreen": config.device.fullscreen,
        },
        "display": {
            "size_px": config.display.size_px,
            "max_upscale": config.display.max_upscale,
            "background": config.display.background,
        },
    }
    return render_template(
        "participant/runner.html",
        study=study,
        config=config,
        settings=settings,
        rules=rules(config),
    )
