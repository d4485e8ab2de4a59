"""Production settings, and docs/deploy.md naming only commands and options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from percept.cli import cli
from study_server import create_app

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
PRODUCTION = {"PRODUCTION": True, "SECRET_KEY": "x" * 40, "ADMIN_PASSWORD": "admin-password"}


@pytest.fixture(autouse=True)
def no_cookie_setting_from_the_environment(monkeypatch, tmp_path):
    # The tests decide SESSION_COOKIE_SECURE and the instance folder; the caller's shell does not.
    monkeypatch.delenv("PERCEPT_SESSION_COOKIE_SECURE", raising=False)
    monkeypatch.delenv("PERCEPT_PRODUCTION", raising=False)
    monkeypatch.setenv("PERCEPT_INSTANCE", str(tmp_path / "instance"))


def test_production_sends_the_session_cookie_over_https_only():
    app = create_app(PRODUCTION)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    response = app.test_client().get("/admin/login")
    assert "Secure" in response.headers["Set-Cookie"]


def test_an_explicit_setting_wins_in_production(monkeypatch, tmp_path):
    app = create_app({**PRODUCTION, "SESSION_COOKIE_SECURE": False})
    assert app.config["SESSION_COOKIE_SECURE"] is False
    # From the instance file, and from the environment, too.
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    (instance / "config.py").write_text("SESSION_COOKIE_SECURE = False\n")
    assert create_app(PRODUCTION).config["SESSION_COOKIE_SECURE"] is False
    (instance / "config.py").unlink()
    monkeypatch.setenv("PERCEPT_SESSION_COOKIE_SECURE", "false")
    assert create_app(PRODUCTION).config["SESSION_COOKIE_SECURE"] is False


def test_development_keeps_the_cookie_usable_over_http():
    app = create_app({"SECRET_KEY": "test", "ADMIN_PASSWORD": "admin-password"})
    assert app.config["SESSION_COOKIE_SECURE"] is False
    assert "Secure" not in app.test_client().get("/admin/login").headers["Set-Cookie"]
    explicit = create_app({"SECRET_KEY": "test", "SESSION_COOKIE_SECURE": True})
    assert explicit.config["SESSION_COOKIE_SECURE"] is True


# --- docs/deploy.md ------------------------------------------------------------------------


FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)


def percept_commands(text: str) -> list[tuple[list[str], bool]]:
    """(arguments, whole command line?) of every `percept ...` shown in `text` (markdown).

    In fenced code blocks a line counts when, after any leading `VAR=value`
    assignments, its first word is `percept` or a path ending in `/bin/percept`
    (`\\` continuations are joined): whole command lines. In the prose, an inline
    code span that starts with `percept ` names a command and perhaps some options.
    """
    blocks = [block.replace("\\\n", " ") for block in FENCED.findall(text)]
    lines = [(line, True) for block in blocks for line in block.splitlines()]
    lines += [(span, False) for span in re.findall(r"`(percept [^`]+)`", FENCED.sub("", text))]
    commands = []
    for line, whole in lines:
        try:
            words = shlex.split(line.strip().removeprefix("$ "), comments=True)
        except ValueError:
            continue
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            words.pop(0)
        if words and (words[0] == "percept" or words[0].endswith("/bin/percept")):
            commands += [(args, whole) for args in alternatives(words[1:])]
    return commands


def alternatives(words: list[str]) -> list[list[str]]:
    """Each command that `a|b|c` sub-command notation names: `study open|close` is two."""
    for i, word in enumerate(words):
        if "|" in word and not word.startswith("-"):
            return [
                [*words[:i], choice, *rest]
                for choice in word.split("|")
                for rest in alternatives(words[i + 1 :])
            ]
    return [words]


def check_command(args: list[str], whole: bool = True) -> None:
    """Resolve sub-commands and check the options; parse a whole command line as click would.

    Nothing runs: parsing checks required options and arguments, value types and ranges.
    """
    command: click.Command = cli
    ctx = click.Context(cli, info_name="percept")
    path = ["percept"]
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        name, args = args[0], args[1:]
        sub = command.get_command(ctx, name)
        assert sub is not None, f"`{' '.join(path)}` has no command {name!r}"
        path.append(name)
        command, ctx = sub, click.Context(sub, info_name=name, parent=ctx)
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    known |= {"-h", "--help"}
    for word in args:
        if word.startswith("-"):
            option = word.split("=", 1)[0]
            assert option in known, f"`{' '.join(path)}` has no option {option}"
    if not whole or "-h" in args or "--help" in args or isinstance(command, click.Group):
        return
    command.make_context(path[-1], list(args), parent=ctx.parent)


def test_every_percept_command_in_the_deploy_doc_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    commands = percept_commands(DEPLOY_DOC.read_text())
    assert sum(whole for _, whole in commands) >= 6
    for args, whole in commands:
        try:
            check_command(args, whole)
        except click.ClickException as e:
            pytest.fail(f"docs/deploy.md: `percept {shlex.join(args)}`: {e.format_message()}")


def test_the_checker_catches_what_does_not_exist():
    assert percept_commands("```\n$ DATABASE_URL=x percept export \\\n  --out e\n```\n") == [
        (["export", "--out", "e"], True)
    ]
    assert percept_commands("text percept nothing\n```\ncreatedb -O percept percept\n```") == []
    assert percept_commands("Run `percept study create` first.") == [(["study", "create"], False)]
    assert percept_commands("`percept study open|close S`") == [
        (["study", "open", "S"], False),
        (["study", "close", "S"], False),
    ]
    check_command(["study", "create"], whole=False)
    for bad in (["exprt", "--out", "x"], ["export", "--outdir", "x"], ["export"]):
        with pytest.raises((AssertionError, click.ClickException)):
            check_command(bad)
    check_command(["export", "--out", "x", "--study", "s", "--include-platform-ids"])
    check_command(["study", "create", "study.toml", "--db", "sqlite:///x"])
