"""Deployment paths: migrations, `percept db upgrade`, `percept serve`, gunicorn, secrets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from percept.cli import cli
from percept.errors import PerceptError
from percept.simulate.server_process import free_port
from study_server import create_app
from study_server.db import db

BIN = Path(sys.executable).parent


def test_migrations_build_exactly_the_models(db_url):
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url})
    with app.app_context():
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
        db.engine.dispose()
    assert diff == [], "models changed without a migration: run `flask db migrate`"


def test_db_upgrade_then_serve_check(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    runner = CliRunner()
    refused = runner.invoke(cli, ["serve", "--db", url])
    assert refused.exit_code == 2
    assert "run `percept db upgrade --db" in refused.output and refused.output.count("\n") == 1
    done = runner.invoke(cli, ["db", "upgrade", "--db", url])
    assert done.exit_code == 0 and "at the current schema" in done.output
    # Twice is fine: nothing left to apply.
    assert runner.invoke(cli, ["db", "upgrade", "--db", url]).exit_code == 0


def test_flask_cli_runs_the_same_migrations(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'f.sqlite3'}"}
    result = subprocess.run(
        [BIN / "flask", "--app", "study_server", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "f.sqlite3").stat().st_size > 0


@pytest.mark.parametrize("secret", [None, "dev", "short"])
def test_production_refuses_a_missing_or_default_secret(secret):
    config = {"PRODUCTION": True, "SECRET_KEY": secret}
    with pytest.raises(PerceptError, match="SECRET_KEY"):
        create_app(config)


def test_plain_admin_password_is_kept_only_as_a_hash():
    app = create_app({"ADMIN_PASSWORD": "hunter2-correct-horse"})
    assert app.config["ADMIN_PASSWORD"] is None
    assert app.config["ADMIN_PASSWORD_HASH"].startswith(("scrypt:", "pbkdf2:"))
    assert "hunter2" not in repr(dict(app.config))


def gunicorn(env: dict[str, str], port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            BIN / "gunicorn",
            "-c",
            "study_server/gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "study_server.wsgi:app",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_gunicorn_serves_with_a_secret_and_refuses_without(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.sqlite3'}"
    assert CliRunner().invoke(cli, ["db", "upgrade", "--db", url]).exit_code == 0
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "PERCEPT_SECRET_KEY")}
    env["DATABASE_URL"] = url

    refused = gunicorn(env, free_port())
    output, _ = refused.communicate(timeout=60)
    assert refused.returncode != 0 and "SECRET_KEY is missing" in output

    # A database nobody upgraded: refused at start, not with an error on every request.
    empty = {**env, "SECRET_KEY": "x" * 40, "DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}
    refused = gunicorn(empty, free_port())
    output, _ = refused.communicate(timeout=60)
    assert refused.returncode != 0 and "run `percept db upgrade" in output

    port = free_port()
    server = gunicorn({**env, "SECRET_KEY": "x" * 40}, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/i/unknown.png", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None, (
                    "gunicorn did not start"
                )
                time.sleep(0.2)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_settings_come_from_instance_file_then_environment_then_caller(tmp_path, monkeypatch):
    (tmp_path / "config.py").write_text(
        "SECRET_KEY = 'from-instance-file-0123456789'\nMAX_CONTENT_LENGTH = 1000\n"
        "ADMIN_PASSWORD = 'from-file'\n"
    )
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    app = create_app(instance_path=str(tmp_path))
    assert app.config["SECRET_KEY"] == "from-instance-file-0123456789"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'percept.sqlite3'}"
    assert app.config["ADMIN_PASSWORD_HASH"] and app.config["ADMIN_PASSWORD"] is None
    monkeypatch.setenv("SECRET_KEY", "from-environment-0123456789")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("PERCEPT_MAX_CONTENT_LENGTH", "2000")
    app = create_app(instance_path=str(tmp_path))
    assert app.config["SECRET_KEY"] == "from-environment-0123456789"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"
    assert app.config["MAX_CONTENT_LENGTH"] == 2000
    app = create_app({"MAX_CONTENT_LENGTH": 3000}, instance_path=str(tmp_path))
    assert app.config["MAX_CONTENT_LENGTH"] == 3000


def test_numeric_secrets_from_the_environment_stay_text(monkeypatch, tmp_path):
    monkeypatch.setenv("PERCEPT_ADMIN_PASSWORD", "12345678")
    monkeypatch.setenv("PERCEPT_SECRET_KEY", "1234567890123456789012")
    app = create_app(instance_path=str(tmp_path))
    assert app.config["SECRET_KEY"] == "1234567890123456789012"
    assert app.config["ADMIN_PASSWORD_HASH"]


def test_the_server_and_help_never_load_the_analysis_stack():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from percept.cli import cli\n"
        "from study_server import create_app\n"
        "create_app()\n"
        "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
        "heavy = sorted({'torch', 'pandas', 'timm', 'open_clip', 'scipy'} & set(sys.modules))\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
