"""The study config file (TOML): parsed and validated into frozen dataclasses.

Every key is documented in docs/study-config.md. Errors name the file and the
key, say what was expected and what was found. Unknown keys are errors too, so
a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from percept.errors import PerceptError

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
KEY = re.compile(r"^[a-z0-9]$|^(space|enter|arrowleft|arrowright|arrowup|arrowdown)$")
_REQUIRED = object()
# An answer's label: a short line of text (it goes on a button).
LABEL = {"pattern": re.compile(r"^[^\x00-\x1f\x7f]+$"), "max_len": 30, "hint": "must be one line"}


@dataclass(frozen=True)
class Design:
    type: str = "one-model"
    models_per_participant: int = 1
    real_trials: int = 100
    fake_trials: int = 100


@dataclass(frozen=True)
class Practice:
    trials: int = 10
    feedback: bool = True


@dataclass(frozen=True)
class Attention:
    catch_trials: int = 5
    instructed_trials: int = 2


@dataclass(frozen=True)
class Staircase:
    start_ms: int = 500
    min_ms: int = 100
    max_ms: int = 1000
    step_ms: int = 50
    down_after: int = 2
    # Staircases per participant, interleaved trial by trial (study_server/staircase.py).
    interleaved: int = 3


@dataclass(frozen=True)
class Timing:
    mode: str = "fixed"
    fixation_ms: int = 500
    exposure_ms: int = 500
    mask_ms: int = 0
    staircase: Staircase = Staircase()
    # An invalid main-block answer (hidden, blur, missed frames) adds the same image again
    # at the end of the block, at most `max_repeats` times per image (responses.record).
    repeat_invalid: bool = True
    max_repeats: int = 2


@dataclass(frozen=True)
class ResponseKeys:
    real_key: str = "f"
    fake_key: str = "j"
    buttons: bool = True
    break_every: int = 50
    # The words for the two answers: on the buttons, key reminders, instructions, feedback.
    real_label: str = "Real"
    fake_label: str = "Fake"


@dataclass(frozen=True)
class Device:
    min_width: int = 800
    min_height: int = 600
    fullscreen: bool = False
    # A device with no fine pointer (mouse, trackpad, pen), e.g. a phone, may take part.
    allow_touch_only: bool = True


@dataclass(frozen=True)
class Display:
    # The shown size of the longer side in CSS px; None: as large as fits (integer scales).
    size_px: int | None = None
    # Never shown larger than this many times the image's own size.
    max_upscale: float = 3.0
    # The page behind the trials: "light" (the pages' own) or "grey" (#808080).
    background: str = "light"


@dataclass(frozen=True)
class Recruitment:
    platform: str = "link"
    target_per_model: int = 30
    completion_code: str | None = None
    completion_url: str | None = None
    idle_timeout_minutes: int = 60
    # Newcomers the study takes per minute at most (0: no cap); the rest get 429 and retry.
    max_signups_per_minute: int = 60
    # Refuse ids that cannot be Prolific's (24 hex digits) or MTurk's (A + 12 or more).
    check_platform_ids: bool = True
    # Sessions in progress when the study is paused or closed: "finish" or "stop".
    on_pause: str = "finish"
    # A completed participant whom the exclusion rules drop frees their place.
    replace_excluded: bool = True


@dataclass(frozen=True)
class Exclusions:
    max_attention_failures: int = 0
    max_invalid_fraction: float = 0.2
    min_median_rt_ms: int = 150
    # Pacing, from the server's own arrival times (study_server/exclusions.py). None:
    # derived from the timing (nobody answers faster than fixation + exposure + mask);
    # 0: off.
    max_answers_per_second: float | None = None
    min_session_seconds: int = 0


@dataclass(frozen=True)
class StudyConfig:
    slug: str
    title: str
    stimuli: str
    models: tuple[str, ...] | str
    consent: str
    instructions: str = ""
    design: Design = Design()
    practice: Practice = Practice()
    attention: Attention = Attention()
    timing: Timing = Timing()
    response: ResponseKeys = ResponseKeys()
    device: Device = Device()
    display: Display = Display()
    recruitment: Recruitment = Recruitment()
    exclusions: Exclusions = Exclusions()
    # A pilot study (Study.kind "pilot"); `percept study copy` makes the main study from it.
    pilot: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data that `parse_config` turns back into this config."""
        data = dataclasses.asdict(self)
        if isinstance(self.models, tuple):
            data["models"] = list(self.models)
        return {k: v for k, v in _drop_none(data).items()}

    @property
    def models_per_participant(self) -> int:
        return self.design.models_per_participant


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    # TOML has no null: a key left out means "not set".
    return {
        k: _drop_none(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None
    }


class _Table:
    """Reads one TOML table, remembering which keys were used to reject the others."""

    def __init__(self, data: Any, path: str, where: str):
        self.where, self.path = where, path
        if not isinstance(data, Mapping):
            raise self.error(path or "the file", f"must be a table, got {_show(data)}")
        self.data, self.used = data, set[str]()

    def error(self, key: str, message: str) -> PerceptError:
        return PerceptError(f"{self.where}: {key}: {message}")

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, default: Any) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                raise self.error(self.name(key), "is required")
            return default
        return self.data[key]

    def text(
        self,
        key: str,
        default: Any = _REQUIRED,
        *,
        pattern: re.Pattern | None = None,
        max_len: int = 10_000,
        hint: str = "",
    ) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str) or not value.strip():
            raise self.error(self.name(key), f"must be a non-empty string, got {_show(value)}")
        if len(value) > max_len:
            raise self.error(self.name(key), f"must be at most {max_len} characters")
        if pattern is not None and not pattern.match(value):
            raise self.error(self.name(key), f"{hint}, got {_show(value)}")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(key, default)
        if value not in choices:
            raise self.error(
                self.name(key), f"must be one of {', '.join(choices)}, got {_show(value)}"
            )
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(
                self.name(key), f"must be an integer from {low} to {high}, got {_show(value)}"
            )
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.raw(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (low <= value <= high)
        ):
            raise self.error(
                self.name(key), f"must be a number from {low} to {high}, got {_show(value)}"
            )
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(self.name(key), f"must be true or false, got {_show(value)}")
        return value

    def table(self, key: str) -> _Table:
        return _Table(self.raw(key, {}), self.name(key), self.where)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(
                self.name(unknown[0]), "unknown key (see docs/study-config.md for the keys)"
            )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_config(data: Mapping[str, Any], where: str, base: Path | None = None) -> StudyConfig:
    """A validated StudyConfig from TOML data; `base` resolves a relative stimuli path."""
    top = _Table(data, "", where)
    slug = top.text(
        "slug",
        pattern=SLUG,
        max_len=64,
        hint="must be lower-case letters, digits and '-', at most 64",
    )
    title = top.text("title", max_len=200)
    stimuli = top.text("stimuli")
    if base is not None:
        stimuli = str((base / stimuli).resolve())
    models = _models(top)
    consent = top.text("consent")
    instructions = top.raw("instructions", "")
    if not isinstance(instructions, str):
        raise top.error("instructions", f"must be a string, got {_show(instructions)}")

    t = top.table("design")
    kind = t.choice("type", "one-model", ("one-model", "mixed"))
    k = t.integer("models_per_participant", 1 if kind == "one-model" else 2, 1, 50)
    if kind == "one-model" and k != 1:
        raise t.error(t.name("models_per_participant"), "must be 1 when design.type is one-model")
    if kind == "mixed" and k < 2:
        raise t.error(t.name("models_per_participant"), "must be 2 or more for a mixed design")
    design = Design(
        type=kind,
        models_per_participant=k,
        real_trials=t.integer("real_trials", 100, 0, 5000),
        fake_trials=t.integer("fake_trials", 100, 1, 5000),
    )
    if design.fake_trials % k or design.real_trials % k:
        raise t.error(
            t.name("fake_trials"),
            f"real_trials and fake_trials must divide evenly among {k} models per participant",
        )
    t.done()

    t = top.table("practice")
    practice = Practice(
        trials=t.integer("trials", 10, 0, 200), feedback=t.boolean("feedback", True)
    )
    t.done()

    t = top.table("attention")
    attention = Attention(
        catch_trials=t.integer("catch_trials", 5, 0, 100),
        instructed_trials=t.integer("instructed_trials", 2, 0, 100),
    )
    t.done()

    t = top.table("timing")
    s = t.table("staircase")
    staircase = Staircase(
        start_ms=s.integer("start_ms", 500, 10, 10_000),
        min_ms=s.integer("min_ms", 100, 10, 10_000),
        max_ms=s.integer("max_ms", 1000, 10, 10_000),
        step_ms=s.integer("step_ms", 50, 1, 5000),
        down_after=s.integer("down_after", 2, 1, 10),
        interleaved=s.integer("interleaved", 3, 2, 10),
    )
    if not staircase.min_ms <= staircase.start_ms <= staircase.max_ms:
        raise s.error(s.name("start_ms"), "must lie between min_ms and max_ms")
    s.done()
    timing = Timing(
        mode=t.choice("mode", "fixed", ("fixed", "unlimited", "staircase")),
        fixation_ms=t.integer("fixation_ms", 500, 0, 10_000),
        exposure_ms=t.integer("exposure_ms", 500, 10, 60_000),
        mask_ms=t.integer("mask_ms", 0, 0, 10_000),
        staircase=staircase,
        repeat_invalid=t.boolean("repeat_invalid", True),
        max_repeats=t.integer("max_repeats", 2, 1, 10),
    )
    t.done()

    t = top.table("response")
    keys = ResponseKeys(
        real_key=t.text(
            "real_key",
            "f",
            pattern=KEY,
            hint="must be one letter or digit, "
            "or space, enter, arrowleft, arrowright, arrowup, arrowdown",
        ).lower(),
        fake_key=t.text(
            "fake_key",
            "j",
            pattern=KEY,
            hint="must be one letter or digit, "
            "or space, enter, arrowleft, arrowright, arrowup, arrowdown",
        ).lower(),
        buttons=t.boolean("buttons", True),
        break_every=t.integer("break_every", 50, 0, 5000),
        real_label=t.text("real_label", "Real", **LABEL).strip(),
        fake_label=t.text("fake_label", "Fake", **LABEL).strip(),
    )
    if keys.real_key == keys.fake_key:
        raise t.error(t.name("fake_key"), "must differ from real_key")
    if keys.real_label.casefold() == keys.fake_label.casefold():
        raise t.error(t.name("fake_label"), "must differ from real_label")
    t.done()

    t = top.table("device")
    device = Device(
        min_width=t.integer("min_width", 800, 0, 10_000),
        min_height=t.integer("min_height", 600, 0, 10_000),
        fullscreen=t.boolean("fullscreen", False),
        allow_touch_only=t.boolean("allow_touch_only", True),
    )
    t.done()

    t = top.table("display")
    display = Display(
        size_px=t.integer("size_px", 0, 16, 4096) if "size_px" in t.data else None,
        max_upscale=t.number("max_upscale", 3.0, 1.0, 16.0),
        background=t.choice("background", "light", ("light", "grey")),
    )
    t.done()

    t = top.table("recruitment")
    platform = t.choice("platform", "link", ("prolific", "mturk", "link"))
    recruitment = Recruitment(
        platform=platform,
        target_per_model=t.integer("target_per_model", 30, 1, 100_000),
        completion_code=t.text(
            "completion_code",
            _REQUIRED if platform == "prolific" else None,
            pattern=re.compile(r"^[A-Za-z0-9_-]{1,100}$"),
            hint="must be letters, digits, '_' or '-'",
        ),
        completion_url=t.text(
            "completion_url",
            None,
            pattern=re.compile(r"^https?://\S+$"),
            hint="must be an http(s) URL",
        ),
        idle_timeout_minutes=t.integer("idle_timeout_minutes", 60, 1, 7 * 24 * 60),
        max_signups_per_minute=t.integer("max_signups_per_minute", 60, 0, 100_000),
        check_platform_ids=t.boolean("check_platform_ids", True),
        on_pause=t.choice("on_pause", "finish", ("finish", "stop")),
        replace_excluded=t.boolean("replace_excluded", True),
    )
    t.done()

    t = top.table("exclusions")
    exclusions = Exclusions(
        max_attention_failures=t.integer("max_attention_failures", 0, 0, 1000),
        max_invalid_fraction=t.number("max_invalid_fraction", 0.2, 0.0, 1.0),
        min_median_rt_ms=t.integer("min_median_rt_ms", 150, 0, 60_000),
        max_answers_per_second=(
            t.number("max_answers_per_second", 0.0, 0.0, 1000.0)
            if "max_answers_per_second" in t.data
            else None
        ),
        min_session_seconds=t.integer("min_session_seconds", 0, 0, 7 * 24 * 3600),
    )
    t.done()
    pilot = top.boolean("pilot", False)
    top.done()
    return StudyConfig(
        slug=slug,
        title=title,
        stimuli=stimuli,
        models=models,
        consent=consent,
        instructions=instructions,
        design=design,
        practice=practice,
        attention=attention,
        timing=timing,
        response=keys,
        device=device,
        display=display,
        recruitment=recruitment,
        exclusions=exclusions,
        pilot=pilot,
    )


def _models(top: _Table) -> tuple[str, ...] | str:
    value = top.raw("models", _REQUIRED)
    if value == "all":
        return "all"
    pattern = re.compile(r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and pattern.match(v) for v in value)
    ):
        raise top.error(
            "models", f'must be "all" or a list of "dataset/model" names, got {_show(value)}'
        )
    if len(set(value)) != len(value):
        raise top.error("models", "lists a model twice")
    return tuple(value)


def load_config(path: Path) -> StudyConfig:
    """Read and validate a study config file; paths in it are relative to the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise PerceptError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise PerceptError(f"{path}: not valid TOML ({e})") from None
    return parse_config(data, str(path), base=path.resolve().parent)
