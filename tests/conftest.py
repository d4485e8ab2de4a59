"""Shared fixtures: a headless Chromium, and the rule for tests whose tools are missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require(available: bool, reason: str) -> None:
    """Skip with a visible reason on a developer's machine; fail under CI=true."""
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium, headless, driven by Playwright (never Playwright's own download)."""
    require(
        shutil.which(CHROMIUM) is not None,
        f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)",
    )
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# --- Study server: the same tests on SQLite and on the real PostgreSQL ----------------------


def postgres_available() -> bool:
    try:
        import psycopg

        from study_server.db import LOCAL_POSTGRES

        psycopg.connect(LOCAL_POSTGRES, connect_timeout=3).close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of our own on the PostgreSQL server, migrated once, dropped at the end."""
    require(
        postgres_available(),
        "PostgreSQL is not answering at 127.0.0.1:5432 (start it with "
        "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`)",
    )
    from study_server import create_app
    from study_server.db import scratch_database
    from study_server.schema import upgrade_schema

    with scratch_database() as url:
        upgrade_schema(create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test"}))
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """A migrated, empty database: a fresh SQLite file, or the PostgreSQL test database emptied."""
    if request.param == "sqlite":
        from study_server import create_app
        from study_server.schema import upgrade_schema

        url = f"sqlite:///{tmp_path / 'percept.sqlite3'}"
        upgrade_schema(create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test"}))
        yield url
        return
    url = request.getfixturevalue("postgres_database")
    yield url
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


@pytest.fixture
def app(db_url, tmp_path):
    """The study server on `db_url`, with an admin password of 'secret-admin'."""
    from study_server import create_app
    from study_server.db import db

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url,
            "IMAGE_STORE": str(tmp_path / "image-store"),
            "SECRET_KEY": "test-secret-key-0123456789",
            "ADMIN_PASSWORD": "secret-admin",
            "TESTING": True,
            # Every test client comes from 127.0.0.1: the per-address limits have their
            # own tests (tests/test_limits.py), which switch them on.
            "RATELIMIT_ENABLED": False,
        }
    )
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def demo_stimuli(tmp_path_factory) -> Path:
    """The demo stimulus set at 32 px, made once per test session."""
    from stimuli.demo import make_demo

    stimdir = tmp_path_factory.mktemp("demo") / "stimuli"
    make_demo(stimdir, seed=0, size=32)
    return stimdir


SMALL_STUDY = """
slug = "{slug}"
title = "Test study"
stimuli = "{stimuli}"
models = {models}
consent = "I agree."

[design]
type = "{design}"
models_per_participant = {k}
real_trials = {real}
fake_trials = {fake}

[practice]
trials = 4

[attention]
catch_trials = 2
instructed_trials = 1

[exclusions]
{exclusions}

[recruitment]
platform = "{platform}"
target_per_model = {target}
{extra}
"""


def write_study_config(
    folder: Path,
    stimuli: Path,
    *,
    slug: str = "t",
    models: str = '["scenes/memoriser", "scenes/pca-gauss"]',
    design: str = "one-model",
    k: int = 1,
    real: int = 10,
    fake: int = 10,
    platform: str = "link",
    target: int = 3,
    extra: str = "",
    # Test clients answer at once, which the pacing rule takes for a bot: off unless a
    # test asks for it (exclusions="" keeps the derived default).
    exclusions: str = "max_answers_per_second = 0",
) -> Path:
    """A small study config file (few trials, two models) for tests."""
    path = folder / f"{slug}.toml"
    path.write_text(
        SMALL_STUDY.format(
            slug=slug,
            stimuli=stimuli,
            models=models,
            design=design,
            k=k,
            real=real,
            fake=fake,
            platform=platform,
            target=target,
            extra=extra,
            exclusions=exclusions,
        )
    )
    return path


@pytest.fixture
def make_study(app, demo_stimuli, tmp_path):
    """make_study(**options) registers a small study on the demo set and returns its slug."""
    from study_server.db import db
    from study_server.studies import create_study
    from study_server.studyconfig import load_config

    def make(**options) -> str:
        path = write_study_config(tmp_path, demo_stimuli, **options)
        with app.app_context():
            study = create_study(load_config(path))
            slug = study.slug
            db.session.remove()
        return slug

    return make


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The app on a real threaded HTTP server at 127.0.0.1 (random port); yields its base URL."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
