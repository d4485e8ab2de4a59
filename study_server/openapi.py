"""The OpenAPI 3.1 document of the participant API, built in one place.

Served at GET /api/v1/openapi.json. The request schemas are built from the same
constants the views check (`responses.FIELDS`, `identifiers.PLATFORM_FIELDS`,
`identifiers.ID_TEXT`, ...), so the document follows the code. tests/test_security.py
fuzzes the API from this document and checks every answer against it, and
docs/api.md is generated from it (`python -m study_server.openapi docs/api.md`).

Schemas are plain JSON Schema (OpenAPI 3.1), with one convention stricter than
JSON Schema itself: an `integer` must be written without a fraction (`1`, not `1.0`).
"""

from __future__ import annotations

import copy
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

VERSION = "1"
JSON = "application/json"
# PostgreSQL cannot store NUL in text, so no text field may hold one.
NO_NUL = "^[^\\u0000]*$"

# Every `error` code the participant API answers with, and what it means.
ERROR_CODES = {
    "bad_request": "the body is not a JSON object",
    "unknown_field": "the body has a field this endpoint (or this study's platform) does not take",
    "missing_field": "a required field is missing",
    "bad_field": "a field has the wrong type, is out of range or is not allowed here",
    "consent_required": "`consent` is not `true`",
    "unauthorized": "no bearer token, or an unknown one",
    "unknown_study": "no study has this slug",
    "unknown_trial": "no trial with this id in the token's session",
    "not_found": "no such path or image",
    "conflict": "the trial was already answered with a different body",
    "practice_over": "a practice answer after the main block began",
    "session_closed": "the session is completed or returned",
    "incomplete": "some main trials are not answered yet",
    "study_full": "every model has its target number of participants",
    "study_draft": "the study has not opened yet: it takes no participants",
    "study_paused": "the study is paused: no newcomers (and no answers when its "
    "`on_pause` is `stop`); try again later",
    "study_closed": "the study is closed: no newcomers (and no answers when its "
    "`on_pause` is `stop`)",
    "already_completed": "this platform id already completed the study",
    "returned": "this platform id returned the study and cannot go on",
    "screen_too_small": "the screen is smaller than the study's `[device]` minimum "
    "(eligibility only)",
    "device_unsupported": "a touch-only device where the study's `[device]` has "
    "`allow_touch_only = false` (eligibility only)",
    "request_entity_too_large": "the body is over 16 KiB",
    "image_unavailable": "the image's file is missing or changed in the server's image store",
    "busy": "the study took its cap of newcomers this minute; retry after `Retry-After` seconds",
    "too_many_requests": "this address made too many sign-ups; retry after `Retry-After` seconds",
}

# What each answer field means (the trial runner's measurements, see docs/runner.md).
RESPONSE_FIELDS = {
    "choice": "the participant's answer",
    "rt_ms": "response time from stimulus onset, in ms",
    "onset_ms": "onset frame timestamp (`performance.now()` clock of the page)",
    "displayed_ms": "measured display duration: offset - onset, in ms",
    "frames": "displayed frames",
    "frame_ms": "the measured frame interval, in ms",
    "valid": "false when the tab was hidden or lost focus during the exposure, or the "
    "measured `frames` differ from the planned ones; the server checks `frames` itself",
    "invalid_reason": "why the trial is not valid: `hidden`, `blur` or `frames` from the "
    "runner; the server stores `frames` for a frame miss it finds",
    "input": "how the answer was given: `key`, `button` or `touch` from the runner",
    "client_sent_at": "`Date.now()` when the answer was made (ms since 1970, browser clock)",
    "exposure_ms": "staircase trials: the exposure used; required on adaptive trials",
}

SIGN_UP_FIELDS = {
    "consent": "must be `true`: nothing is stored before the participant agrees",
    "client_id": "link studies: the browser's own random id (kept in localStorage)",
    "prolific_pid": "Prolific's PROLIFIC_PID (required on Prolific): 24 hex digits unless the "
    "study sets `check_platform_ids = false`",
    "study_id": "Prolific's STUDY_ID",
    "session_id": "Prolific's SESSION_ID",
    "worker_id": "MTurk's workerId",
    "assignment_id": "MTurk's assignmentId; `ASSIGNMENT_ID_NOT_AVAILABLE` is a preview",
    "hit_id": "MTurk's hitId",
    "turk_submit_to": "MTurk's turkSubmitTo: only MTurk's own hosts",
    "screen": "the screen: `{width, height, device_pixel_ratio}`",
    "user_agent": "the browser's user agent",
}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The same schema, also allowing null (the server treats null as left out)."""
    return {**schema, "type": [schema["type"], "null"]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def answer_schema() -> dict[str, Any]:
    """The PUT body: `choice` plus every field of responses.FIELDS with its type and bounds."""
    from study_server.models import CHOICES
    from study_server.responses import FIELDS, REQUIRED

    properties: dict[str, Any] = {
        "choice": {"enum": list(CHOICES), "description": RESPONSE_FIELDS["choice"]}
    }
    for name, (types, low, high) in FIELDS.items():
        if types == (bool,):
            schema: dict[str, Any] = {"type": "boolean"}
        elif types == (str,):
            schema = {"type": "string", "minLength": low, "maxLength": high, "pattern": NO_NUL}
        else:
            schema = {"type": "integer" if types == (int,) else "number"}
            schema |= {"minimum": low, "maximum": high}
        if name not in REQUIRED:
            schema = nullable(schema)
        properties[name] = {**schema, "description": RESPONSE_FIELDS[name]}
    return {
        "type": "object",
        "properties": properties,
        "required": list(REQUIRED),
        "additionalProperties": False,
    }


def sign_up_schemas() -> dict[str, dict[str, Any]]:
    """One body schema per recruitment platform, from identifiers.PLATFORM_FIELDS."""
    from study_server.identifiers import (
        ID_TEXT,
        MTURK_HOSTS,
        MTURK_PREVIEW,
        MTURK_WORKER_ID,
        PLATFORM_FIELDS,
        PROLIFIC_ID,
    )

    platform_id = {"type": "string", "pattern": ID_TEXT.pattern}
    common: dict[str, Any] = {
        "consent": {"const": True},
        "screen": {
            "type": "object",
            "properties": {
                "width": {
                    **nullable({"type": "integer", "exclusiveMinimum": 0, "maximum": 100_000}),
                    "description": "`screen.width` in CSS pixels",
                },
                "height": {
                    **nullable({"type": "integer", "exclusiveMinimum": 0, "maximum": 100_000}),
                    "description": "`screen.height` in CSS pixels",
                },
                "device_pixel_ratio": {
                    **nullable({"type": "number", "exclusiveMinimum": 0, "maximum": 20}),
                    "description": "`window.devicePixelRatio`",
                },
            },
            "additionalProperties": False,
        },
        "user_agent": nullable({"type": "string", "maxLength": 1000, "pattern": NO_NUL}),
    }

    def body(platform: str, required: list[str], **special: Any) -> dict[str, Any]:
        ids = {name: special.get(name, nullable(platform_id)) for name in PLATFORM_FIELDS[platform]}
        properties = {
            name: {**schema, "description": SIGN_UP_FIELDS[name]}
            for name, schema in {**common, **ids}.items()
        }
        return {
            "type": "object",
            "properties": properties,
            "required": ["consent", *required],
            "additionalProperties": False,
        }

    # The platforms' own id formats (each within ID_TEXT), checked unless the study sets
    # check_platform_ids = false.
    def checked(pattern: str) -> dict[str, Any]:
        return {"type": "string", "pattern": pattern}

    worker = {name: platform_id for name in PLATFORM_FIELDS["mturk"]}
    worker["worker_id"] = checked(MTURK_WORKER_ID.pattern)
    worker["turk_submit_to"] = {"type": "string", "pattern": MTURK_HOSTS.pattern}
    return {
        "SignUpLink": body("link", []),
        "SignUpProlific": body(
            "prolific", ["prolific_pid"], prolific_pid=checked(PROLIFIC_ID.pattern)
        ),
        "SignUpMTurk": body("mturk", list(PLATFORM_FIELDS["mturk"]), **worker),
        "SignUpMTurkPreview": body(
            "mturk", ["assignment_id"], assignment_id={"const": MTURK_PREVIEW}
        ),
    }


def session_schemas() -> dict[str, dict[str, Any]]:
    """What GET /api/v1/session answers: nothing in it tells real from fake."""
    from study_server.identifiers import PUBLIC_ID
    from study_server.models import BLOCKS, CHOICES, PLATFORMS, STATES

    def obj(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": properties,
            "required": [name for name in properties if name not in optional],
            "additionalProperties": False,
        }

    integer, number, text, flag = (
        {"type": "integer"},
        {"type": "number"},
        {"type": "string"},
        {"type": "boolean"},
    )
    trial = obj(
        {
            "id": {**integer, "description": "the trial id for PUT .../response"},
            "position": integer,
            "block": {"enum": list(BLOCKS)},
            "image": {
                "type": "string",
                "pattern": "^/i/" + PUBLIC_ID.pattern.strip("^$") + "\\.png$",
                "description": "the stimulus URL: an opaque id, the same for real and fake",
            },
            "exposure_ms": {
                **nullable(number),
                "description": "null: until the answer (unlimited), or from the staircase",
            },
            "answered": flag,
            "instruction": {
                "enum": [*CHOICES, None],
                "description": "instructed attention checks: the answer asked for; else null",
            },
            "adaptive": {
                **flag,
                "description": "true: the exposure is the session's `next_exposure_ms`",
            },
        },
    )
    study = obj(
        {
            "slug": text,
            "title": text,
            "instructions": text,
            "platform": {"enum": list(PLATFORMS)},
            "timing": obj(
                {
                    "mode": {"enum": ["fixed", "unlimited", "staircase"]},  # studyconfig.py
                    "fixation_ms": integer,
                    "exposure_ms": integer,
                    "mask_ms": integer,
                }
            ),
            "response": obj(
                {"real_key": text, "fake_key": text, "buttons": flag, "break_every": integer}
            ),
            "device": obj({"min_width": integer, "min_height": integer, "fullscreen": flag}),
            "practice_feedback": flag,
        }
    )
    completion = obj(
        {
            "completion_code": text,
            "redirect_url": {**nullable(text), "description": "where the browser goes next"},
            "mturk_submit": obj(
                {"action": text, "assignmentId": text},
            ),
        },
        optional=("mturk_submit",),
    )
    session = obj(
        {
            "state": {"enum": list(STATES)},
            "study": study,
            "next_exposure_ms": {
                **nullable(number),
                "description": "staircase studies: the exposure of the first unanswered "
                "main trial; else null",
            },
            "trials": {"type": "array", "items": trial},
            "completion": {**ref("Completion"), "description": "once the state is completed"},
        },
        optional=("completion",),
    )
    return {"Trial": trial, "Study": study, "Completion": completion, "Session": session}


def operation(
    summary: str,
    answers: dict[str, tuple[str, dict[str, Any] | None]],
    *,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    secure: bool = True,
    description: str = "",
) -> dict[str, Any]:
    """One operation; `answers` maps a status to (description, JSON schema or None)."""
    result: dict[str, Any] = {"summary": summary}
    if description:
        result["description"] = description
    if parameters:
        result["parameters"] = parameters
    if body is not None:
        result["requestBody"] = {"required": True, "content": json_content(body)}
    result["security"] = [{"bearer": []}] if secure else []
    responses: dict[str, Any] = {}
    for status, (text, schema) in answers.items():
        responses[status] = {"description": text}
        if schema is not None:
            responses[status]["content"] = json_content(schema)
    result["responses"] = responses
    return result


def path_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def query_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def eligibility_parameters(slug_schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The study, who asks (the platform's id field, as in the sign-up) and their screen."""
    from study_server.identifiers import ID_TEXT

    platform_id = {"type": "string", "pattern": ID_TEXT.pattern}
    pixels = {"type": "integer", "minimum": 1, "maximum": 999_999}
    return [
        path_parameter("slug", slug_schema, "study"),
        query_parameter("prolific_pid", platform_id, "Prolific studies only: PROLIFIC_PID"),
        query_parameter("worker_id", platform_id, "MTurk studies only: workerId"),
        query_parameter("client_id", platform_id, "link studies only: the browser's own id"),
        query_parameter("width", pixels, "the screen's width (`screen.width`), in CSS px"),
        query_parameter("height", pixels, "the screen's height (`screen.height`), in CSS px"),
        query_parameter(
            "touch_only",
            {"type": "string", "enum": ["true", "false"], "default": "false"},
            "`true` when the device has no fine pointer (`(any-pointer: fine)` does not match)",
        ),
    ]


@cache
def build() -> dict[str, Any]:
    """The whole document (built once; callers get a copy from `document`)."""
    from study_server.identifiers import PUBLIC_ID
    from study_server.studyconfig import SLUG

    error = ref("Error")
    fail = {
        "400": ("the body is malformed or a field is bad", error),
        "401": ("no bearer token, or an unknown one", error),
        "404": ("not found", error),
        "409": ("not possible in the session's state", error),
        "413": ("the body is over 16 KiB", error),
    }
    sign_ups = sign_up_schemas()
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string", "description": "a code: see docs/api.md"},
                "message": {"type": "string", "description": "what went wrong, for people"},
            },
            "required": ["error", "message"],
            "additionalProperties": False,
        },
        **sign_ups,
        "SignUpBody": {"anyOf": [ref(name) for name in sign_ups]},
        "SignedUp": {
            "type": "object",
            "properties": {
                "token": {"type": "string", "description": "the bearer token of this session"},
                "state": {"type": "string"},
                "resumed": {"type": "boolean"},
            },
            "required": ["token", "state", "resumed"],
            "additionalProperties": False,
        },
        "Preview": {
            "type": "object",
            "properties": {"preview": {"const": True}, "state": {"type": "null"}},
            "required": ["preview", "state"],
            "additionalProperties": False,
        },
        **session_schemas(),
        "Answer": answer_schema(),
        "Recorded": {
            "type": "object",
            "properties": {
                "trial_id": {"type": "integer"},
                "received_at": {"type": "string", "format": "date-time"},
                "feedback": {
                    "type": "object",
                    "properties": {
                        "correct": {"type": "boolean"},
                        "answer": {
                            "type": "string",
                            "enum": ["real", "fake"],
                            "description": "what the practice image was",
                        },
                    },
                    "required": ["correct", "answer"],
                    "additionalProperties": False,
                    "description": "practice trials of studies with practice feedback "
                    "(never main trials)",
                },
                "next_exposure_ms": {
                    "type": ["number", "null"],
                    "description": "staircase studies: the exposure of the next main trial "
                    "(null when none is left); see docs/api.md for what it reveals",
                },
                "repeat": {
                    "type": "boolean",
                    "description": "true: the answer was invalid and a repeat of its image "
                    "was added at the end of the main block (read the session again)",
                },
            },
            "required": ["trial_id", "received_at", "repeat"],
            "additionalProperties": False,
        },
        "Eligibility": {
            "type": "object",
            "properties": {
                "eligible": {"type": "boolean"},
                "reason": {
                    "type": ["string", "null"],
                    "enum": [
                        None,
                        "study_draft",
                        "study_paused",
                        "study_closed",
                        "study_full",
                        "already_completed",
                        "returned",
                        "screen_too_small",
                        "device_unsupported",
                    ],
                    "description": "why not: the sign-up's own error code, "
                    "`screen_too_small` or `device_unsupported`; null when eligible",
                },
                "message": {
                    "type": ["string", "null"],
                    "description": "the reason, for people; null when eligible",
                },
            },
            "required": ["eligible", "reason", "message"],
            "additionalProperties": False,
        },
        "State": {
            "type": "object",
            "properties": {"state": {"type": "string"}},
            "required": ["state"],
            "additionalProperties": False,
        },
    }
    paths = {
        "/api/v1/studies/{slug}/participants": {
            "post": operation(
                "Sign up (after consent) or resume: returns a bearer token",
                {
                    "201": ("a new session", ref("SignedUp")),
                    "200": (
                        "the same platform id resumed its session, or an MTurk preview",
                        {"anyOf": [ref("SignedUp"), ref("Preview")]},
                    ),
                    "400": fail["400"],
                    "404": ("no such study", error),
                    "409": (
                        "the study is not open (draft, paused, closed), is full, or this id "
                        "completed or returned it",
                        error,
                    ),
                    "413": fail["413"],
                    "429": ("too many sign-ups from this address, or for this study", error),
                },
                body=ref("SignUpBody"),
                parameters=[
                    path_parameter("slug", {"type": "string", "pattern": SLUG.pattern}, "study")
                ],
                secure=False,
                description="The body takes the fields of the study's platform only.",
            ),
        },
        "/api/v1/studies/{slug}/eligibility": {
            "get": operation(
                "May this person take the study? Asked before consent; stores nothing",
                {
                    "200": ("whether they may, and why not", ref("Eligibility")),
                    "400": ("a parameter is unknown for the study's platform, or bad", error),
                    "404": ("no such study", error),
                },
                parameters=eligibility_parameters({"type": "string", "pattern": SLUG.pattern}),
                secure=False,
                description=(
                    "The trial runner asks this before it shows the consent form. It gives "
                    "the refusal the sign-up would give now (the study is a draft, paused or "
                    "closed, full, or this id completed or returned it) and "
                    "`screen_too_small` below the study's `[device]` "
                    "minimum; a sign-up may still be refused when places fill meanwhile. "
                    "Only the platform's own id parameter is taken; a session idle past "
                    "the timeout counts as a free place."
                ),
            ),
        },
        "/api/v1/session": {
            "get": operation(
                "The session: state, study settings and the trial list (no labels)",
                {"200": ("the session", ref("Session")), "401": fail["401"]},
            ),
        },
        "/api/v1/trials/{trial_id}/response": {
            "put": operation(
                "Answer one trial, exactly once",
                {
                    "200": ("stored, or the same body again", ref("Recorded")),
                    **{status: fail[status] for status in ("400", "401", "404", "409", "413")},
                },
                body=ref("Answer"),
                parameters=[
                    path_parameter(
                        "trial_id",
                        {"type": "integer", "minimum": 1},
                        "a trial id from the session's trial list",
                    )
                ],
                description=(
                    "Idempotent: the same body again gets the same 200; a different body "
                    "for an answered trial gets 409. `exposure_ms` is required on adaptive "
                    "(staircase) trials. An invalid main-block answer may add one repeat "
                    "trial at the end of the main block (`repeat: true`), never two for "
                    "the same answer."
                ),
            ),
        },
        "/api/v1/session/complete": {
            "post": operation(
                "Close a session whose main trials are all answered",
                {
                    "200": ("the completion code and where to go next", ref("Completion")),
                    "401": fail["401"],
                    "409": ("main trials are missing, or the session was returned", error),
                },
            ),
        },
        "/api/v1/session/return": {
            "post": operation(
                "Give the study back: the place goes to someone else",
                {
                    "200": ("returned", ref("State")),
                    "401": fail["401"],
                    "409": ("the session is completed", error),
                },
            ),
        },
        "/i/{public_id}.png": {
            "get": operation(
                "Stimulus bytes: every image of a study has the same format, size, "
                "byte length and headers",
                {
                    "200": ("the PNG", None),
                    "404": ("no such image", error),
                    "503": ("the stored file is missing or changed (the server logs it)", error),
                },
                parameters=[
                    path_parameter(
                        "public_id",
                        {"type": "string", "pattern": PUBLIC_ID.pattern},
                        "the opaque id from the trial list's `image`",
                    )
                ],
                secure=False,
            ),
        },
        "/api/v1/openapi.json": {
            "get": operation(
                "This document", {"200": ("the OpenAPI document", None)}, secure=False
            ),
        },
    }
    paths["/i/{public_id}.png"]["get"]["responses"]["200"]["content"] = {
        "image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}
    }
    paths["/api/v1/openapi.json"]["get"]["responses"]["200"]["content"] = {
        JSON: {"schema": {"type": "object"}}
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "percept participant API",
            "version": VERSION,
            "description": (
                "The JSON API the trial runner talks to. Every error is "
                '`{"error": code, "message": text}` and a refused request changes nothing.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token from sign-up; the server keeps only its sha256",
                }
            },
        },
    }


def document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI document (callers may change it freely)."""
    return copy.deepcopy(build())


def serve() -> ResponseReturnValue:
    """GET /api/v1/openapi.json"""
    return jsonify(document())


# --- docs/api.md: the reference part is generated from the document -----------------------

BEGIN = "<!-- generated by `python -m study_server.openapi docs/api.md`: begin -->"
END = "<!-- generated: end -->"


def schema_text(schema: dict[str, Any]) -> str:
    """A short description of a field's type and bounds for a Markdown table."""
    if "const" in schema:
        return f"`{str(schema['const']).lower()}`"
    if "enum" in schema:
        return " or ".join(f"`{v}`" for v in schema["enum"])
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    text = " or ".join(kinds)
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    if low is not None:
        low_mark = "≤" if "minimum" in schema else "<"
        text += f", {number_text(low)} {low_mark} x ≤ {number_text(schema['maximum'])}"
    if "minLength" in schema or "maxLength" in schema:
        text += f", {schema.get('minLength', 0)}-{schema['maxLength']} characters"
    if "pattern" in schema and schema["pattern"] != NO_NUL:
        # A | inside a table cell would end the cell.
        text += f", matching `{schema['pattern']}`".replace("|", "\\|")
    return text


def number_text(value: float) -> str:
    """1e12 as 1,000,000,000,000: bounds read better written out."""
    return f"{int(value):,}" if float(value).is_integer() else str(value)


def field_table(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", ()))
    lines = ["| field | required | type | meaning |", "|---|---|---|---|"]
    for name, field in schema["properties"].items():
        meaning = field.get("description", "")
        mark = "yes" if name in required else ""
        lines.append(f"| `{name}` | {mark} | {schema_text(field)} | {meaning} |")
    return lines


def sign_up_table(schemas: dict[str, Any]) -> list[str]:
    """Every sign-up field with the platforms that take it (each platform has its own schema)."""
    platforms = {
        "link": schemas["SignUpLink"],
        "prolific": schemas["SignUpProlific"],
        "mturk": schemas["SignUpMTurk"],
    }
    lines = ["| field | platforms | type | meaning |", "|---|---|---|---|"]
    for name, meaning in SIGN_UP_FIELDS.items():
        takers = [p for p, schema in platforms.items() if name in schema["properties"]]
        field = platforms[takers[-1]]["properties"][name]
        where = "all" if len(takers) == len(platforms) else ", ".join(takers)
        lines.append(f"| `{name}` | {where} | {schema_text(field)} | {meaning} |")
    return lines


def markdown(doc: dict[str, Any] | None = None) -> str:
    """The generated part of docs/api.md: endpoints, request fields, error codes."""
    doc = doc or document()
    schemas = doc["components"]["schemas"]
    lines = [BEGIN, "", "### Endpoints", ""]
    lines += ["| method and path | token | what | answers |", "|---|---|---|---|"]
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            token = "bearer" if op["security"] else ""
            answers = ", ".join(op["responses"])
            lines.append(f"| `{method.upper()} {path}` | {token} | {op['summary']} | {answers} |")
    lines += ["", "### Answer body (`PUT /api/v1/trials/{trial_id}/response`)", ""]
    lines += field_table(schemas["Answer"])
    lines += [
        "",
        "Unknown fields are refused. A null optional field counts as left out, also when a "
        "retry is compared with the stored answer. Control characters (ESC, tab, CR, LF, "
        "DEL, C1) are removed from text fields before they are stored.",
        "",
    ]
    lines += ["### Sign-up body (`POST /api/v1/studies/{slug}/participants`)", ""]
    lines += sign_up_table(schemas)
    screen = schemas["SignUpLink"]["properties"]["screen"]
    lines += ["", "`screen`:", "", *field_table(screen)]
    lines += ["", "### Eligibility parameters (`GET /api/v1/studies/{slug}/eligibility`)", ""]
    lines += ["| parameter | type | meaning |", "|---|---|---|"]
    eligibility = doc["paths"]["/api/v1/studies/{slug}/eligibility"]["get"]
    for parameter in eligibility["parameters"]:
        if parameter["in"] == "query":
            kind = schema_text(parameter["schema"])
            lines.append(f"| `{parameter['name']}` | {kind} | {parameter['description']} |")
    lines += ["", "Answer:", "", *field_table(schemas["Eligibility"])]
    lines += ["", "### Error codes", "", "| `error` | meaning |", "|---|---|"]
    lines += [f"| `{code}` | {meaning} |" for code, meaning in ERROR_CODES.items()]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def with_generated(text: str) -> str:
    """`text` (docs/api.md) with its generated part replaced by the current one."""
    found = re.search(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n", text, re.S)
    if found is None:
        raise ValueError("docs/api.md has no generated part (its BEGIN and END lines)")
    return text[: found.start()] + markdown() + text[found.end() :]


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/api.md")
    target.write_text(with_generated(target.read_text()))
