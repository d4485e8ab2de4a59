"""Security of the participant API: its OpenAPI document, a fuzz run from it, an audit of a
whole session, and access control.

Every test runs on SQLite and PostgreSQL (see the db_url fixture). Checks that live in other
files (listed in docs/api.md, not repeated here): admin pages redirect to the login when
logged out and admin forms refuse a missing CSRF token (tests/test_admin.py); production
refuses a missing or default SECRET_KEY (tests/test_server_cli.py); bad bodies and another
participant's trial id change nothing (tests/test_api.py).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.validators import extend
from participants import STAIRCASE, answer, auth, join, session
from PIL import Image as PILImage
from sqlalchemy import select

from stimuli.images import png_chunks
from stimuli.padding import PAD_CHUNK
from study_server import identifiers, openapi, participant, responses
from study_server.db import db
from study_server.models import Generator, Image, Trial

ROOT = Path(__file__).resolve().parent.parent
DOC = openapi.document()
SCHEMAS = DOC["components"]["schemas"]
# Examples per operation in the fuzz run; with `derandomize` every run tries the same ones.
FUZZ_EXAMPLES = 150
# Every table the participant API writes: a refused request must leave all of them alone.
WRITTEN_TABLES = ("study", "participant", "participant_generator", "token", "trial", "response")
# The studies' two models, as a config names them.
MODELS = '["scenes/memoriser", "scenes/pca-gauss"]'


# --- Participant API helpers (copied from test_api.py: test modules are not imported) --------


def db_snapshot(app) -> dict[str, list[tuple]]:
    """Every row of every table the participant API writes."""
    with app.app_context():
        snapshot = {}
        for name in WRITTEN_TABLES:
            table = db.metadata.tables[name]
            rows = db.session.execute(select(table).order_by(*table.primary_key.columns))
            snapshot[name] = [tuple(row) for row in rows]
        db.session.remove()
    return snapshot


# --- The document against the code ------------------------------------------------------------


def resolve(schema: Any) -> Any:
    """`schema` with every local $ref replaced by what it points to."""
    if isinstance(schema, list):
        return [resolve(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return resolve(SCHEMAS[schema["$ref"].rsplit("/", 1)[1]])
    return {key: resolve(value) for key, value in schema.items()}


# The document's convention (see study_server/openapi.py): an integer has no fraction, so
# 1.0 is not one, as in the server's isinstance checks (JSON Schema itself would allow it).
Validator = extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Validator(resolve(schema))


def test_every_schema_is_valid_json_schema():
    assert DOC["openapi"].startswith("3.1")
    for name, schema in SCHEMAS.items():
        try:
            Draft202012Validator.check_schema(resolve(schema))
        except Exception as e:
            raise AssertionError(f"components.schemas.{name}: {e}") from None


def test_the_document_lists_exactly_the_participant_api_routes(app):
    """Every /api/ and /i/ route of the app is documented with its methods, and nothing else."""
    served = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/api/", "/i/")):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            served[path] = sorted(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    documented = {path: sorted(methods) for path, methods in DOC["paths"].items()}
    assert served == documented
    for path, methods in DOC["paths"].items():
        for method, op in methods.items():
            names = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), (method, path)
            assert "200" in op["responses"] or "201" in op["responses"]


def test_the_answer_schema_has_every_field_with_the_servers_bounds():
    schema = SCHEMAS["Answer"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == list(responses.REQUIRED)
    assert set(schema["properties"]) == {"choice", *responses.FIELDS}
    assert schema["properties"]["choice"]["enum"] == ["real", "fake"]
    for name, (types, low, high) in responses.FIELDS.items():
        field = schema["properties"][name]
        types_named = field["type"] if isinstance(field["type"], list) else [field["type"]]
        kinds = set(types_named) - {"null"}
        expected = {
            (bool,): {"boolean"},
            (str,): {"string"},
            (int,): {"integer"},
            responses.NUMBER: {"number"},
        }[types]
        assert kinds == expected, name
        assert ("null" in types_named) == (name not in responses.REQUIRED), name
        if types == (str,):
            assert (field["minLength"], field["maxLength"]) == (low, high), name
        elif low is not None:
            assert (field["minimum"], field["maximum"]) == (low, high), name
        assert field["description"], name


def test_sign_up_schemas_take_each_platforms_fields():
    for platform, name in (("link", "SignUpLink"), ("prolific", "SignUpProlific")):
        schema = SCHEMAS[name]
        extra = {"consent", "screen", "user_agent"}
        assert set(schema["properties"]) == {*identifiers.PLATFORM_FIELDS[platform], *extra}
        assert schema["additionalProperties"] is False
    mturk = SCHEMAS["SignUpMTurk"]
    assert set(mturk["required"]) == {"consent", *identifiers.PLATFORM_FIELDS["mturk"]}


def test_every_error_code_in_the_code_is_documented():
    codes = set()
    for module in ("participant", "responses", "assignment"):
        source = (ROOT / "study_server" / f"{module}.py").read_text()
        codes |= set(re.findall(r'Error\(\s*(?:\d{3},\s*)?"([a-z_]+)"', source))
        codes |= set(re.findall(r'error\(\s*\d{3},\s*"([a-z_]+)"', source))
    assert codes, "no error codes found: has the way errors are raised changed?"
    assert codes <= set(openapi.ERROR_CODES), codes - set(openapi.ERROR_CODES)


def test_docs_api_md_is_generated_from_the_document():
    text = (ROOT / "docs" / "api.md").read_text()
    assert openapi.with_generated(text) == text, (
        "docs/api.md is out of date: run `.venv/bin/python -m study_server.openapi docs/api.md`"
    )


def test_the_document_is_served(app):
    r = app.test_client().get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.json == DOC


# --- Fuzzing the API from its document --------------------------------------------------------

# Text that has broken web apps before: NUL (PostgreSQL refuses it), lone surrogates (not
# UTF-8), path traversal, percent escapes, very long text, the labels themselves.
NASTY_TEXT = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\ud800", "x\udfff", "a\n", "../../etc/passwd", "..%2f..",
     "%00", "real", "fake", "null", "0", "-1", "\U0001d518\U0001d52b", "\u202e", "x" * 300]
)  # fmt: skip
ANY_TEXT = (
    st.text(max_size=40)
    | NASTY_TEXT
    | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3)
)
NUMBERS = st.integers() | st.floats(allow_nan=False) | st.sampled_from([0, -1, 2**31, 2**63, 1e308])
ANY_JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=8,
)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy:
    """Values valid against `schema`, for the subset of JSON Schema the document uses."""
    schema = resolve(schema)
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if len(kinds) > 1:
        return st.one_of([from_schema({**schema, "type": kind}) for kind in kinds])
    kind = kinds[0]
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    # The smallest integer allowed: above an exclusive minimum, at or above an inclusive one.
    lowest = None if low is None else math.floor(low) + 1 if "exclusiveMinimum" in schema else low
    if kind == "integer":
        return st.integers(lowest, high)
    if kind == "number":
        exclusive = "exclusiveMinimum" in schema
        floats = st.floats(low, high, exclude_min=exclusive, allow_nan=False, allow_infinity=False)
        return floats | st.integers(math.ceil(lowest) if lowest is not None else None, high)
    if kind == "string":
        size = {"min_size": schema.get("minLength", 0), "max_size": schema.get("maxLength", 50)}
        pattern = schema.get("pattern")
        if pattern in (None, openapi.NO_NUL):
            return st.text(st.characters(exclude_characters="\x00"), **size)
        return st.from_regex(pattern.replace("$", r"\Z"), fullmatch=True)
    if kind == "object":
        properties = {name: from_schema(s) for name, s in schema["properties"].items()}
        required = schema.get("required", [])
        return st.fixed_dictionaries(
            {name: properties[name] for name in required},
            optional={name: s for name, s in properties.items() if name not in required},
        )
    if kind == "array":
        return st.lists(from_schema(schema["items"]), max_size=4)
    raise AssertionError(f"from_schema does not know {schema}")


@st.composite
def mutated(draw, schema: dict[str, Any]) -> dict[str, Any]:
    """A valid body with one field removed, or set to any JSON value, or one field added,
    or one text field set to nasty text."""
    schema = resolve(schema)
    body = dict(draw(from_schema(schema)))
    texts = [name for name, s in schema["properties"].items() if "string" in s.get("type", "")]
    how = draw(st.sampled_from(["nasty", "remove", "change", "add"]))
    if how == "nasty" and texts:
        body[draw(st.sampled_from(texts))] = draw(NASTY_TEXT)
    elif how == "remove" and body:
        del body[draw(st.sampled_from(sorted(body)))]
    elif how == "change" and schema["properties"]:
        body[draw(st.sampled_from(list(schema["properties"])))] = draw(ANY_JSON)
    else:
        body[draw(st.sampled_from(["correct", "source", "model", "x"]))] = draw(ANY_JSON)
    return body


def json_bodies(schema: dict[str, Any], *examples: dict[str, Any]) -> st.SearchStrategy:
    """Request bodies as (bytes, Content-Type): valid ones, near misses, and junk."""

    def as_json(values: st.SearchStrategy) -> st.SearchStrategy:
        return values.map(lambda v: (json.dumps(v).encode(), "application/json"))

    junk = st.tuples(
        st.binary(max_size=40) | st.sampled_from([b"", b"{", b"[]", b'{"rt_ms": NaN}']),
        st.sampled_from(["application/json", "text/plain", ""]),
    )
    valid = from_schema(schema) | st.sampled_from(examples) if examples else from_schema(schema)
    return mostly(as_json(valid | mutated(schema)), as_json(ANY_JSON) | junk)


@dataclass
class World:
    """A link study with two models and two participants: `me` fuzzes, `other` is a bystander."""

    slug: str
    me: str
    other: str
    my_trials: list[int]
    their_trials: list[int]
    images: list[str]


def make_world(app, make_study, *, main_done: bool = False) -> World:
    """The study and its participants; `main_done`: `me` answered every main trial."""
    slug = make_study(models=MODELS)
    client = app.test_client()
    me, other = (join(client, client_id=name).json["token"] for name in ("me-1", "other-1"))
    mine, theirs = (session(client, token)["trials"] for token in (me, other))
    # One answered trial each, so replays and conflicts are reachable.
    for token, trials in ((me, mine), (other, theirs)):
        assert answer(client, token, trials[0]["id"]).status_code == 200
    if main_done:
        for trial in mine:
            if trial["block"] == "main":
                assert answer(client, me, trial["id"]).status_code == 200
    return World(
        slug,
        me,
        other,
        [t["id"] for t in mine],
        [t["id"] for t in theirs],
        [t["image"][len("/i/") : -len(".png")] for t in mine],
    )


def mostly(usual: st.SearchStrategy, other: st.SearchStrategy) -> st.SearchStrategy:
    """`usual` three times in four, else `other`: most requests get past the first check."""
    return st.integers(0, 3).flatmap(lambda i: other if i == 3 else usual)


def parameter_values(name: str, schema: dict[str, Any], world: World) -> st.SearchStrategy:
    """Values for a path parameter: real ones (so the fuzz gets past the lookup) and others."""
    known = {
        "slug": [world.slug],
        "trial_id": world.my_trials,
        "public_id": world.images,
    }[name]
    anything = NASTY_TEXT.filter(bool) | st.text(min_size=1, max_size=30) | st.integers()
    if name == "trial_id":
        anything |= st.sampled_from(world.their_trials[:3])  # another participant's trials
    return mostly(st.sampled_from(known), from_schema(schema) | anything)


def query_values(name: str, schema: dict[str, Any]) -> st.SearchStrategy:
    """Values for a query parameter: often left out, then real ids, valid values and junk."""
    known = st.sampled_from(["me-1", "other-1"]) if name == "client_id" else st.nothing()
    anything = NASTY_TEXT | st.text(max_size=30) | st.integers() | st.just("")
    return st.none() | mostly(known | from_schema(schema), anything)


def authorizations(world: World) -> st.SearchStrategy:
    """Authorization headers: mostly the fuzzing participant's own, then everything else."""
    others = st.sampled_from(
        [
            f"bearer  {world.me} ",
            f"Bearer {world.other}",
            world.me,
            "Bearer ",
            "Bearer forged-token-0123456789",
            "Basic dXNlcjpwYXNz",
            None,
        ]
    ) | st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=20)
    return mostly(st.just(f"Bearer {world.me}"), others)


def requests(path: str, method: str, op: dict[str, Any], world: World) -> st.SearchStrategy:
    """(url, headers, body bytes, content type) for one operation of the document."""
    parameters = {
        p["name"]: parameter_values(p["name"], p["schema"], world)
        for p in op.get("parameters", ())
        if p["in"] == "path"
    }
    queries = {
        p["name"]: query_values(p["name"], p["schema"])
        for p in op.get("parameters", ())
        if p["in"] == "query"
    }
    if "requestBody" in op:
        body_schema = op["requestBody"]["content"]["application/json"]["schema"]
        if path.startswith("/api/v1/studies/"):
            # The fuzzed study recruits by link; the participants' own ids resume them.
            body_schema = SCHEMAS["SignUpLink"]
            ids = ({"consent": True, "client_id": name} for name in ("me-1", "other-1"))
            bodies = json_bodies(body_schema, *ids)
        else:
            bodies = json_bodies(body_schema)
    else:
        bodies = mostly(st.just((b"", "")), json_bodies({"type": "object", "properties": {}}))

    @st.composite
    def one(draw) -> tuple[str, dict[str, str], bytes, str]:
        url = path
        for name, values in parameters.items():
            url = url.replace(
                "{" + name + "}", quote(str(draw(values)), safe="", errors="surrogatepass")
            )
        query = {name: draw(values) for name, values in queries.items()}
        query = {name: value for name, value in query.items() if value is not None}
        if query:
            url += "?" + urlencode(query, errors="surrogatepass")
        headers = {}
        authorization = draw(authorizations(world))
        if authorization is not None:
            headers["Authorization"] = authorization
        data, content_type = draw(bodies)
        return url, headers, data, content_type

    return one()


def conforming(data: bytes, content_type: str, schema: dict[str, Any]) -> bool:
    """Whether a body is strict JSON (UTF-8, no NaN) valid against the document's schema."""
    if content_type != "application/json":
        return False
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=lambda name: 1 / 0)
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # no lone surrogates
    except (ValueError, ZeroDivisionError, UnicodeError):
        return False
    return validator(schema).is_valid(value)


OPERATIONS = [(path, method) for path, methods in DOC["paths"].items() for method in methods]
FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def check_answer(
    app, r, op: dict[str, Any], before: dict, body: tuple[bytes, str], body_schema: Any
) -> None:
    """What every fuzzed request's answer must be: no 5xx; an error is a documented code
    in the Error schema and changed nothing (`before`: the database before the request);
    a success matches its documented schema; a body valid against `body_schema` is never
    a 400 and an invalid one never a success."""
    assert r.status_code < 500, r.get_data()[:300]
    status = str(r.status_code)
    documented = op["responses"].get(status, {}).get("content", {}).get("application/json")
    if r.status_code >= 400:
        assert r.is_json and r.json["error"] in openapi.ERROR_CODES, r.get_data()[:300]
        assert validator(SCHEMAS["Error"]).is_valid(r.json), r.json
        assert db_snapshot(app) == before, f"{status} {r.json} changed the database"
    elif documented is not None:
        errors = [e.message for e in validator(documented["schema"]).iter_errors(r.json)]
        assert not errors, (status, errors)
    data, content_type = body
    if body_schema is not None and r.status_code != 401:
        if conforming(data, content_type, body_schema):
            assert r.status_code != 400, ("a valid body was refused", r.json, data)
        else:
            assert r.status_code >= 400, ("an invalid body was taken", data)


@pytest.mark.slow
@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_fuzz_finds_no_server_error_and_no_change_on_refusal(app, make_study, path, method):
    """Requests generated from the OpenAPI document, FUZZ_EXAMPLES per operation.

    For each: no 5xx; the status is one the document lists for the operation and the JSON
    body matches its schema; a 4xx leaves every table the API writes unchanged. Bodies
    valid against the document's schema never get a 400, and invalid ones never a 2xx,
    so the document is neither looser nor stricter than the server.
    """
    # Completing needs every main trial answered: then the fuzz reaches the completion code.
    world = make_world(app, make_study, main_done=path.endswith("/complete"))
    op = DOC["paths"][path][method]
    client = app.test_client()
    body_schema = None
    if "requestBody" in op:
        body_schema = op["requestBody"]["content"]["application/json"]["schema"]
        if path.startswith("/api/v1/studies/"):
            body_schema = SCHEMAS["SignUpLink"]

    @FUZZ_SETTINGS
    @given(requests(path, method, op, world))
    def check(request: tuple[str, dict[str, str], bytes, str]) -> None:
        url, headers, data, content_type = request
        if content_type:
            headers = {**headers, "Content-Type": content_type}
        before = db_snapshot(app)
        r = client.open(url, method=method.upper(), headers=headers, data=data)
        seen[r.status_code, r.json.get("error", "") if r.is_json else ""] += 1
        check_answer(app, r, op, before, (data, content_type), body_schema)
        # 404 besides the documented ones: a fuzzed path that is no route at all.
        assert str(r.status_code) in op["responses"] or r.status_code == 404, r.status_code

    seen: Counter[tuple[int, str]] = Counter()
    check()
    print(f"{method.upper()} {path}: answers seen {sorted(seen.items())}")  # with pytest -s


# The sign-up schemas of each recruitment platform (the fuzz above runs on a link study).
PLATFORM_SIGN_UPS = {"prolific": ["SignUpProlific"], "mturk": ["SignUpMTurk", "SignUpMTurkPreview"]}


@pytest.mark.slow
@pytest.mark.parametrize("platform", sorted(PLATFORM_SIGN_UPS))
def test_fuzz_sign_up_on_prolific_and_mturk_studies(app, make_study, platform):
    """Sign-up bodies for a Prolific or MTurk study, as the fuzz above: no 5xx, documented
    answers, no change on a 4xx, and the platform's schema neither looser nor stricter."""
    code = 'completion_code = "FUZZ-CODE"' if platform == "prolific" else ""
    slug = make_study(platform=platform, target=1000, extra=code)
    names = PLATFORM_SIGN_UPS[platform]
    schema = {"anyOf": [SCHEMAS[name] for name in names]}
    op = DOC["paths"]["/api/v1/studies/{slug}/participants"]["post"]
    client = app.test_client()
    bodies = st.one_of([json_bodies(SCHEMAS[name]) for name in names])

    @FUZZ_SETTINGS
    @given(bodies)
    def check(body: tuple[bytes, str]) -> None:
        data, content_type = body
        headers = {"Content-Type": content_type} if content_type else {}
        before = db_snapshot(app)
        r = client.post(f"/api/v1/studies/{slug}/participants", headers=headers, data=data)
        seen[r.status_code, r.json.get("error", "") if r.is_json else ""] += 1
        check_answer(app, r, op, before, body, schema)
        assert str(r.status_code) in op["responses"], r.status_code

    seen: Counter[tuple[int, str]] = Counter()
    check()
    # The fuzz got past validation: people signed up (and, on MTurk, previews were seen).
    assert seen[201, ""] > 0, seen
    if platform == "mturk":
        assert seen[200, ""] > 0, seen


@pytest.mark.slow
def test_fuzz_staircase_exposure_is_taken_only_within_the_rule(app, make_study):
    """On an adaptive trial the exposure the browser reports must lie in min_ms..max_ms
    (250..350 here): anything else is a 400 that changes nothing; a value inside is stored
    as the trial's exposure, and the staircase stays within its bounds."""
    slug = make_study(target=1000, extra=STAIRCASE)
    client = app.test_client()
    fresh: list[tuple[str, int]] = []  # (token, adaptive trial not answered yet)

    def next_trial() -> tuple[str, int]:
        if not fresh:
            token = join(client, slug, client_id=f"stairs-{len(seen)}-{sum(seen.values())}")
            token = token.json["token"]
            fresh.extend(
                (token, t["id"]) for t in session(client, token)["trials"] if t.get("adaptive")
            )
        return fresh.pop()

    exposures = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(240, 360),
        st.integers(-10, 100_000),
        st.sampled_from([250, 350, 250.0, 349.999, 350.001, 249.999, True, "300", None]),
        ANY_JSON,
    )

    @FUZZ_SETTINGS
    @given(exposures, st.booleans())
    def check(exposure: Any, send: bool) -> None:
        token, trial_id = next_trial()
        body = {"choice": "real", "rt_ms": 700, **({"exposure_ms": exposure} if send else {})}
        before = db_snapshot(app)
        r = client.put(f"/api/v1/trials/{trial_id}/response", json=body, headers=auth(token))
        number = isinstance(exposure, int | float) and not isinstance(exposure, bool)
        ok = send and number and 250 <= exposure <= 350
        seen[r.status_code] += 1
        if not ok:
            assert r.status_code == 400 and r.json["error"] == "bad_field", (exposure, r.json)
            assert db_snapshot(app) == before
            fresh.append((token, trial_id))  # still unanswered
            return
        assert r.status_code == 200, (exposure, r.json)
        following = r.json["next_exposure_ms"]
        assert following is None or 250 <= following <= 350
        with app.app_context():
            assert db.session.get(Trial, trial_id).planned_exposure_ms == float(exposure)
            db.session.remove()

    seen: Counter[int] = Counter()
    check()
    assert seen[200] > 10 and seen[400] > 10, seen


def test_what_the_fuzz_found_is_refused_cleanly(app, make_study):
    """Each of these was a 500 (on SQLite, PostgreSQL or both) until the fix beside it."""
    make_study()
    client = app.test_client()
    token = join(client, client_id="me-4").json["token"]
    trial = session(client, token)["trials"][0]["id"]
    before = db_snapshot(app)
    # Ids beyond PostgreSQL's integer (responses.MAX_ID): SQLite cannot even compare them.
    for big in (2**31, 2**63, 10**30):
        r = answer(client, token, big)
        assert (r.status_code, r.json["error"]) == (404, "unknown_trial"), big
    # NUL (PostgreSQL refuses it) and lone surrogates (not UTF-8) in text: responses.storable.
    json_type = {"Content-Type": "application/json"}
    for text in (r"\u0000", r"a\u0000", r"\ud800", r"x\udfff"):
        for field in ("input", "invalid_reason"):
            body = f'{{"choice": "real", "rt_ms": 5, "{field}": "{text}"}}'.encode()
            r = client.put(
                f"/api/v1/trials/{trial}/response", data=body, headers={**auth(token), **json_type}
            )
            assert (r.status_code, r.json["error"]) == (400, "bad_field"), body
        body = f'{{"consent": true, "user_agent": "{text}"}}'.encode()
        r = client.post("/api/v1/studies/t/participants", data=body, headers=json_type)
        assert (r.status_code, r.json["error"]) == (400, "bad_field"), body
    # A platform id with a trailing newline ($ matches before one; fullmatch does not).
    assert join(client, client_id="me-4\n").json["error"] == "bad_field"
    # NUL in a slug or an image id never reaches the database.
    assert (
        client.post("/api/v1/studies/%00/participants", json={"consent": True}).status_code == 404
    )
    assert client.get("/i/%00.png").status_code == 404
    assert client.get("/s/%00").status_code == 404
    assert db_snapshot(app) == before


# --- A whole session, audited -----------------------------------------------------------------


@dataclass
class Exchange:
    """One request of the session and its answer, as the participant's browser saw them."""

    method: str
    url: str
    status: int
    headers: dict[str, str]
    body: bytes


def run_session(app, slug: str) -> tuple[list[Exchange], dict[str, Any]]:
    """A participant's whole session: page, sign-up, session, images, every answer, completion."""
    client = app.test_client()
    log: list[Exchange] = []

    def call(method: str, url: str, **kwargs) -> Any:
        r = client.open(url, method=method, **kwargs)
        assert r.status_code < 400, (url, r.get_data()[:200])
        log.append(Exchange(method, url, r.status_code, dict(r.headers), r.get_data()))
        return r

    call("GET", f"/s/{slug}?client_id=audit-1")
    token = call("POST", f"/api/v1/studies/{slug}/participants", json={"consent": True}).json[
        "token"
    ]
    headers = auth(token)
    data = call("GET", "/api/v1/session", headers=headers).json
    for trial in data["trials"]:
        call("GET", trial["image"])
    with app.app_context():
        expected = dict(db.session.execute(select(Trial.id, Trial.expected)).all())
    for trial in data["trials"]:
        # Practice first, then the main block, as the runner does; answers right and wrong.
        choice = expected[trial["id"]] if trial["position"] % 3 else "fake"
        body = {"choice": choice, "rt_ms": 500.0 + trial["position"], "input": "key"}
        call("PUT", f"/api/v1/trials/{trial['id']}/response", json=body, headers=headers)
        call("GET", "/api/v1/session", headers=headers)
    call("POST", "/api/v1/session/complete", headers=headers)
    final = call("GET", "/api/v1/session", headers=headers).json
    assert final["state"] == "completed"
    return log, final


def secrets_of_the_study(app) -> list[str]:
    """What must never reach a participant: model and dataset names, hashes, file paths."""
    with app.app_context():
        words = set()
        for dataset, model in db.session.execute(select(Generator.dataset, Generator.model)):
            words |= {dataset, model, f"{dataset}/{model}"}
        for sha256, path, dataset in db.session.execute(
            select(Image.sha256, Image.original_path, Image.dataset)
        ):
            # The manifest's image_id is the hash's first 16 characters.
            words |= {sha256, sha256[:16], path, dataset}
        db.session.remove()
    # Every demo model and dataset too, not only those of this study.
    words |= {"colour-shift", "memoriser", "mild-degrade", "pca-gauss", "strong-degrade"}
    return sorted(words | {"scenes", "textures"})


def strings(value: Any, where: str = "") -> list[tuple[str, str]]:
    """(where, text) for every key and string value in a JSON value."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((f"{where}.{key} (key)", key))
            found += strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += strings(item, f"{where}[{i}]")
    elif isinstance(value, str):
        found.append((where, value))
    return found


def test_a_whole_session_reveals_nothing_about_the_images(app, make_study):
    slug = make_study(design="mixed", k=2, models=MODELS)
    log, final = run_session(app, slug)
    secrets = secrets_of_the_study(app)
    with app.app_context():
        fake_models = set(
            db.session.scalars(select(Image.generator_id).join(Trial).where(Image.source == "fake"))
        )
        # This participant's trials only, in their order (others signed up too).
        sources = db.session.execute(
            select(Trial.block, Image.source)
            .join(Image)
            .where(Trial.id.in_([t["id"] for t in final["trials"]]))
            .order_by(Trial.position)
        ).all()
    assert len(fake_models - {None}) == 2, "the session should show fakes of two models"

    # Nothing anywhere names a model, a dataset, a hash or a source file.
    for ex in log:
        texts = [ex.url, *ex.headers.keys(), *ex.headers.values()]
        if not ex.headers["Content-Type"].startswith("image/"):
            texts.append(ex.body.decode())
        for text in texts:
            for word in secrets:
                assert word.lower() not in text.lower(), (word, ex.method, ex.url)

    # "real" and "fake" appear in JSON only as the keys' names, the instruction of an
    # instructed attention check, the state and a practice image's feedback (its right
    # answer); never as a value tied to a main image.
    practice = {
        f"/api/v1/trials/{t['id']}/response" for t in final["trials"] if t["block"] == "practice"
    }
    for ex in log:
        if not ex.headers["Content-Type"].startswith("application/json"):
            continue
        for where, text in strings(json.loads(ex.body)):
            if re.search("real|fake", text, re.I):
                allowed = where.endswith((".real_key (key)", ".fake_key (key)", ".instruction"))
                allowed |= where == ".feedback.answer" and ex.url in practice
                assert allowed, (where, text, ex.url)
    instructed = [t for t in final["trials"] if t["instruction"] is not None]
    assert len(instructed) == 1 and set(final["trials"][0]) <= set(SCHEMAS["Trial"]["properties"])
    main_answers = [
        json.loads(ex.body)
        for ex in log
        if ex.method == "PUT" and ex.url.split("/")[4] in {str(t["id"]) for t in final["trials"]
                                                            if t["block"] == "main"}
    ]  # fmt: skip
    # `repeat` follows from the display's timing and focus alone (all valid here).
    assert main_answers and all(
        a.keys() == {"trial_id", "received_at", "repeat"} and a["repeat"] is False
        for a in main_answers
    )

    # Image URLs are opaque ids of one length; every image gets the very same headers,
    # Content-Length included (each is padded to the study's one length).
    images = [ex for ex in log if ex.url.startswith("/i/")]
    assert len(images) == len(final["trials"])
    assert {len(ex.url) for ex in images} == {len(images[0].url)}
    assert all(identifiers.PUBLIC_ID.fullmatch(ex.url[3:-4]) for ex in images)
    header_sets = {tuple(sorted(ex.headers.items())) for ex in images}
    assert len(header_sets) == 1, header_sets
    assert set(participant.IMAGE_HEADERS.items()) <= set(images[0].headers.items())
    assert {len(ex.body) for ex in images} == {int(images[0].headers["Content-Length"])}

    # Every PNG has the same size, mode and header chunk, and nothing but pixels in it.
    shapes, headers = set(), set()
    for ex in images:
        chunks = png_chunks(ex.body)
        kinds = [kind for kind, _ in chunks]
        assert kinds[0] == "IHDR" and kinds[-2:] == [PAD_CHUNK, "IEND"]
        assert set(kinds) == {"IHDR", "IDAT", PAD_CHUNK, "IEND"} and not any(chunks[-2][1])
        headers.add(chunks[0][1])
        with PILImage.open(io.BytesIO(ex.body)) as img:
            shapes.add((img.size, img.mode, tuple(sorted(img.info))))
    assert len(shapes) == 1 and len(headers) == 1, shapes

    # Real and fake are interleaved in the main block, not one after the other.
    main = [source for block, source in sources if block == "main"]
    runs = sum(1 for a, b in itertools.pairwise(main) if a != b)
    assert runs > 3, main


# --- Access control ---------------------------------------------------------------------------


def test_a_token_reaches_only_its_own_trials(app, make_study):
    make_study()
    client = app.test_client()
    me, them = (join(client, client_id=name).json["token"] for name in ("me-2", "them-2"))
    mine = {t["id"] for t in session(client, me)["trials"]}
    theirs = [t["id"] for t in session(client, them)["trials"]]
    assert not mine & set(theirs)
    assert answer(client, them, theirs[0], "fake").status_code == 200
    before = db_snapshot(app)
    # Their answered trial, with the very body they sent (a replay), or another body;
    # their unanswered trial; then their session through my token.
    for trial, choice in ((theirs[0], "fake"), (theirs[0], "real"), (theirs[1], "real")):
        r = answer(client, me, trial, choice)
        assert (r.status_code, r.json["error"]) == (404, "unknown_trial"), r.json
    assert {t["id"] for t in session(client, me)["trials"]} == mine
    assert db_snapshot(app)["response"] == before["response"]
    assert session(client, them)["trials"][0]["answered"] is True


TRAVERSALS = [
    "/i/../../etc/passwd",
    "/i/..%2f..%2fmanifest.csv.png",
    "/i/..%2F..%2Fmanifest.csv.png",
    "/i/%2e%2e/x.png",
    "/i/%2e%2e%2f%2e%2e%2fetc%2fpasswd.png",
    "/i/..%5c..%5cmanifest.csv.png",
    "/i/....%2f%2fx.png",
    "/i/%00.png",
    "/i/x%00.png",
    "/i/%252e%252e%252fx.png",
    "/i/manifest.csv.png",
    "/i/.png",
]


def test_image_urls_refuse_path_traversal_and_file_names(app, make_study, monkeypatch):
    make_study()
    client = app.test_client()
    token = join(client, client_id="me-3").json["token"]
    trial = session(client, token)["trials"][0]
    opened: list[str] = []
    real_read = participant.read_verified
    monkeypatch.setattr(
        participant,
        "read_verified",
        lambda store, sha: opened.append(sha) or real_read(store, sha),
    )
    with app.app_context():
        sha256 = db.session.scalar(select(Image.sha256).limit(1))
    # The files' own names (the hash, the manifest's image id) do not work either.
    for url in [*TRAVERSALS, f"/i/{sha256}.png", f"/i/{sha256[:16]}.png"]:
        r = client.get(url)
        assert r.status_code == 404 and r.is_json, (url, r.status_code)
    assert opened == []
    assert client.get(trial["image"]).status_code == 200 and len(opened) == 1
    # Only ids the database lists are looked up at all.
    assert Counter(map(len, opened)) == {64: 1}
