"""The study config file: every key checked, documented, and the example working as is."""

from __future__ import annotations

import dataclasses
import re
import shutil
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from percept.cli import cli
from percept.errors import PerceptError
from study_server.studyconfig import StudyConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "demo-study.toml"
DOC = ROOT / "docs" / "study-config.md"


def example() -> dict:
    return tomllib.loads(EXAMPLE.read_text())


def keys(cls, prefix: str = "") -> list[str]:
    """Dotted names of every config key, from the dataclasses themselves."""
    names = []
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        if dataclasses.is_dataclass(f.default):
            names += keys(type(f.default), name + ".")
        else:
            names.append(name)
    return names


def test_every_key_is_documented():
    doc = DOC.read_text()
    for name in keys(StudyConfig):
        *tables, key = name.split(".")
        if tables:
            assert f"## `[{'.'.join(tables)}]`" in doc, f"no section for [{'.'.join(tables)}]"
        assert re.search(rf"^\| `{key}` \|", doc, re.M), f"{name} is not documented"


def test_example_parses_and_round_trips():
    config = load_config(EXAMPLE)
    assert config.slug == "demo" and Path(config.stimuli) == (ROOT / "demo-stimuli").resolve()
    assert parse_config(config.to_dict(), "again") == config


def with_change(change: str) -> dict:
    """The example config with one dotted key set (or deleted when the value is DELETE)."""
    data = example()
    name, _, value = change.partition("=")
    *tables, key = name.split(".")
    table = data
    for t in tables:
        table = table.setdefault(t, {})
    if value == "DELETE":
        del table[key]
    else:
        table[key] = tomllib.loads(f"v = {value}")["v"]
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("slug=DELETE", "slug: is required"),
        ("slug='Has Spaces'", "slug: must be lower-case"),
        ("title=''", "title: must be a non-empty string"),
        ("models=['scenes']", 'models: must be "all" or a list'),
        ("models=['a/b', 'a/b']", "models: lists a model twice"),
        ("design.type='both'", "design.type: must be one of one-model, mixed"),
        ("design.models_per_participant=2", "design.models_per_participant: must be 1"),
        ("design.real_trials=-1", "design.real_trials: must be an integer from 0"),
        ("design.fake_trials=true", "design.fake_trials: must be an integer"),
        ("design.colour='red'", "design.colour: unknown key"),
        ("practice.feedback='yes'", "practice.feedback: must be true or false"),
        ("timing.exposure_ms='fast'", "timing.exposure_ms: must be an integer from 10 to 60000"),
        ("timing.mode='flash'", "timing.mode: must be one of fixed, unlimited, staircase"),
        ("timing.staircase.start_ms=50", "timing.staircase.start_ms: must lie between"),
        ("response.fake_key='f'", "response.fake_key: must differ from real_key"),
        ("response.real_key='ctrl'", "response.real_key: must be one letter or digit"),
        ("response.real_label=''", "response.real_label: must be a non-empty string"),
        ("response.fake_label='REAL'", "response.fake_label: must differ from real_label"),
        ('response.real_label="a\\nb"', "response.real_label: must be one line"),
        ("response.real_label='" + "x" * 31 + "'", "response.real_label: must be at most 30"),
        ("device.allow_touch_only=1", "device.allow_touch_only: must be true or false"),
        ("display.size_px=8", "display.size_px: must be an integer from 16 to 4096"),
        ("display.max_upscale=0.5", "display.max_upscale: must be a number from 1.0 to 16.0"),
        ("display.background='black'", "display.background: must be one of light, grey"),
        ("display.zoom=2", "display.zoom: unknown key"),
        ("recruitment.platform='prolific'", "recruitment.completion_code: is required"),
        ("recruitment.completion_url='ftp://x'", "recruitment.completion_url: must be an http"),
        ("exclusions.max_invalid_fraction=2", "exclusions.max_invalid_fraction: must be a number"),
        ("timing=3", "timing: must be a table"),
        ("extra='x'", "extra: unknown key"),
    ],
)
def test_bad_keys_give_one_clear_message(change, message):
    with pytest.raises(PerceptError) as e:
        parse_config(with_change(change), "study.toml")
    assert str(e.value).startswith("study.toml: ") and message in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_mixed_design_must_divide_evenly():
    data = with_change("design.type='mixed'")
    data["design"]["models_per_participant"] = 3
    with pytest.raises(PerceptError, match="divide evenly among 3"):
        parse_config(data, "study.toml")


@pytest.fixture
def example_layout(tmp_path, demo_stimuli) -> Path:
    """examples/demo-study.toml next to a demo-stimuli folder, as in the README."""
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "examples" / "demo-study.toml")
    (tmp_path / "demo-stimuli").symlink_to(demo_stimuli)
    return tmp_path / "examples" / "demo-study.toml"


def test_example_creates_a_study_as_is(example_layout, db_url):
    runner = CliRunner()
    result = runner.invoke(cli, ["study", "create", str(example_layout), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "Study 'demo' created" in result.output
    assert "scenes/memoriser: 205 images, target 5 participants" in result.output
    again = runner.invoke(cli, ["study", "create", str(example_layout), "--db", db_url])
    assert again.exit_code == 2
    assert "slug: a study called 'demo' already exists" in again.output
    listed = runner.invoke(cli, ["study", "list", "--db", db_url])
    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith("demo  [link, open, main]  ") and listed.output.endswith(
        ": nobody yet\n"
    )


def test_study_list_counts_participants_by_state(app, make_study, db_url):
    make_study(slug="pilot")
    make_study(slug="main")
    client = app.test_client()
    for n in range(2):
        client.post(
            "/api/v1/studies/main/participants", json={"consent": True, "client_id": f"p{n}"}
        )
    listed = CliRunner().invoke(cli, ["study", "list", "--db", db_url])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines() == [
        "pilot  [link, open, main]  Test study: nobody yet",
        "main  [link, open, main]  Test study: 2 consented",
    ]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('models = "all"', 'models = ["scenes/gan"]'), "models: 'scenes/gan' is not in"),
        (("real_trials = 100", "real_trials = 300"), "design.real_trials: each participant needs"),
        (("catch_trials = 5", "catch_trials = 20"), "attention.catch_trials: each participant"),
        (
            ("[practice]\ntrials = 10", "[practice]\ntrials = 40"),
            "practice.trials: each participant needs",
        ),
        (("../demo-stimuli", "../nowhere"), "no manifest.csv"),
    ],
)
def test_study_create_checks_the_stimulus_folder(example_layout, tmp_path, edit, message):
    text = example_layout.read_text()
    assert edit[0] in text
    example_layout.write_text(text.replace(edit[0], edit[1]))
    db = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    result = CliRunner().invoke(cli, ["study", "create", str(example_layout), "--db", db])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith(f"Error: {example_layout}: ") and message in line, line
    assert "\n" not in line
