"""The numbers behind the admin pages: per-model progress and per-participant quality.

Read-only queries, and the words the pages put around them; nothing here knows about
HTTP. Exclusions come from `study_server.exclusions`, so the dashboard and the export
always agree on who is out. Every list is read with a fixed number of queries, however
many participants a study has.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from xml.sax.saxutils import escape

from sqlalchemy import and_, case, func, or_, select

from study_server.db import db, utcnow
from study_server.exclusions import (
    RULES,
    ParticipantStats,
    excluded_rules,
    exclusion_reasons,
    participant_stats,
)
from study_server.models import (
    ACTIVE_STATES,
    Generator,
    Participant,
    Response,
    Study,
    Trial,
    participant_generator,
)
from study_server.studies import study_config
from study_server.studyconfig import StudyConfig

# The study page lists at most this many participants, newest first; the export has them all.
PARTICIPANT_ROWS = 500
# What each exclusion rule (exclusions.RULES) is called on the dashboard.
RULE_NAMES = {
    "attention": "Attention checks",
    "invalid_display": "Invalid trials",
    "fast": "Median response time",
    "pace": "Pacing",
}
# Prolific fills these in when the study's URL-parameters option is on (docs/deploy.md).
PROLIFIC_QUERY = (
    "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
)
EXTERNAL_QUESTION = """\
<ExternalQuestion xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd">
  <ExternalURL>{url}</ExternalURL>
  <FrameHeight>0</FrameHeight>
</ExternalQuestion>"""


@dataclass
class Checks:
    """Answered attention checks (catch and instructed trials) and how many were wrong."""

    answered: int = 0
    failed: int = 0

    def add(self, other: Checks) -> None:
        self.answered += other.answered
        self.failed += other.failed

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.answered if self.answered else None


@dataclass
class ModelRow:
    """One model (generator) of a study on the dashboard."""

    generator_id: int
    name: str
    target: int
    active: int = 0
    completed: int = 0
    excluded: int = 0
    checks: Checks = field(default_factory=Checks)

    @property
    def usable(self) -> int:
        """Completed and not excluded: what the analysis uses, and with `replace_excluded`
        what counts against the target (exclusions.usable_counts)."""
        return self.completed - self.excluded

    @property
    def bar(self) -> Bar:
        return progress_bar(self)


@dataclass(frozen=True)
class Segment:
    """One part of a progress bar: `kind` is usable, excluded or active; in % of the bar."""

    kind: str
    start: float
    width: float


@dataclass(frozen=True)
class Bar:
    """A model's progress bar: usable, then excluded, then active participants, and the
    target as a mark; the bar spans the target or, when more hold places, all of them."""

    segments: list[Segment]
    target_at: float
    label: str


def progress_bar(row: ModelRow) -> Bar:
    """The bar of one model row, with its numbers in words (the bar's accessible name)."""
    scale = max(row.target, row.completed + row.active, 1)
    segments, start = [], 0
    for kind, n in (("usable", row.usable), ("excluded", row.excluded), ("active", row.active)):
        if n:
            segments.append(Segment(kind, 100 * start / scale, 100 * n / scale))
        start += n
    label = (
        f"{row.usable} usable of target {row.target}; {row.completed} completed "
        f"({row.excluded} excluded); {row.active} active"
    )
    return Bar(segments, 100 * row.target / scale, label)


@dataclass
class StudyTotals:
    """Distinct participants of a study by status (a participant may judge several models)."""

    participants: int = 0
    active: int = 0
    idle: int = 0
    completed: int = 0
    excluded: int = 0
    abandoned: int = 0
    returned: int = 0
    checks: Checks = field(default_factory=Checks)


@dataclass
class StudySummary:
    slug: str
    title: str
    created_at: datetime
    idle_timeout_minutes: int
    models: list[ModelRow]
    totals: StudyTotals
    # draft, open, paused or closed (study_server/lifecycle.py)
    state: str = "open"
    # pilot or main
    kind: str = "main"
    platform: str = "link"
    # What sessions in progress do when the study is paused or closed: finish or stop.
    on_pause: str = "finish"
    design: str = ""
    timing: str = ""
    exposure: str = ""
    # Completed participants each exclusion rule drops (one may break several), by rule.
    excluded_by_rule: dict[str, int] = field(default_factory=dict)
    # Each rule in words, with the study's threshold; by rule (RULES order).
    rules: dict[str, str] = field(default_factory=dict)


@dataclass
class ParticipantRow:
    """One participant on the study page. Deliberately no token, token hash or platform id."""

    id: int
    state: str
    idle: bool
    models: list[str]
    created_at: datetime
    last_seen_at: datetime
    answered_main: int
    main_trials: int
    checks: Checks
    # None while the participant has not completed: exclusions apply to completed sessions.
    excluded: bool | None
    reasons: list[str]


def all_studies() -> list[Study]:
    """Every study, oldest first."""
    return list(db.session.scalars(select(Study).order_by(Study.id)))


def summarise(study: Study, now: datetime | None = None) -> StudySummary:
    """Per-model and whole-study counts for one study, as of `now` (default: the current time)."""
    config = study_config(study)
    cutoff = (now or utcnow()) - timedelta(minutes=config.recruitment.idle_timeout_minutes)
    models = {g.id: ModelRow(g.id, g.name, g.target) for g in study.generators}
    totals = StudyTotals()

    status = statuses(study, cutoff)
    excluded = excluded_rules(study)
    checks = attention_checks(study)
    for participant_id, generator_id in _assigned(study):
        # .get: someone who joined since `status` was read is counted on the next load.
        row, state = models[generator_id], status.get(participant_id)
        row.active += state in ACTIVE_STATES
        row.completed += state == "completed"
        row.excluded += state == "completed" and participant_id in excluded
        row.checks.add(checks.get(participant_id, Checks()))

    for participant_id, state in status.items():
        totals.participants += 1
        name = "active" if state in ACTIVE_STATES else state
        setattr(totals, name, getattr(totals, name) + 1)
        totals.checks.add(checks.get(participant_id, Checks()))
    totals.excluded = len(excluded)
    by_rule = Counter(rule for broken in excluded.values() for rule in broken)

    return StudySummary(
        slug=study.slug,
        title=study.title,
        created_at=study.created_at,
        idle_timeout_minutes=config.recruitment.idle_timeout_minutes,
        models=list(models.values()),
        totals=totals,
        state=study.state,
        kind=study.kind,
        platform=config.recruitment.platform,
        on_pause=config.recruitment.on_pause,
        design=design_text(config),
        timing=config.timing.mode,
        exposure=exposure_text(config),
        excluded_by_rule={rule: by_rule[rule] for rule in RULES},
        rules=rule_texts(config),
    )


def attention_checks(study: Study, participant_ids: list[int] | None = None) -> dict[int, Checks]:
    """Answered and failed attention checks per participant of the study (or of those ids)."""
    query = (
        select(
            Trial.participant_id,
            func.count(Response.id),
            func.sum(case((Response.correct.is_(False), 1), else_=0)),
        )
        .join(Response, Response.trial_id == Trial.id)
        .join(Participant, Participant.id == Trial.participant_id)
        .where(
            Participant.study_id == study.id,
            Trial.block == "main",
            Trial.kind != "stimulus",
        )
        .group_by(Trial.participant_id)
    )
    if participant_ids is not None:
        query = query.where(Trial.participant_id.in_(participant_ids))
    return {
        pid: Checks(answered, failed or 0) for pid, answered, failed in db.session.execute(query)
    }


def participants(
    study: Study, limit: int = PARTICIPANT_ROWS, now: datetime | None = None
) -> tuple[list[ParticipantRow], int]:
    """The newest `limit` participants of the study, and how many it has in all."""
    config = study_config(study)
    cutoff = (now or utcnow()) - timedelta(minutes=config.recruitment.idle_timeout_minutes)
    total = db.session.scalar(
        select(func.count()).select_from(Participant).where(Participant.study_id == study.id)
    )
    people = db.session.execute(
        select(Participant.id, Participant.state, Participant.created_at, Participant.last_seen_at)
        .where(Participant.study_id == study.id)
        .order_by(Participant.created_at.desc(), Participant.id.desc())
        .limit(limit)
    ).all()
    ids = [p.id for p in people]
    if not ids:
        return [], total
    models = models_of(ids)
    stats = {s.participant_id: s for s in participant_stats(ids)}
    checks = attention_checks(study, ids)
    rows = []
    for p in people:
        s = stats.get(p.id) or ParticipantStats(p.id)
        reasons = exclusion_reasons(s, config)
        rows.append(
            ParticipantRow(
                id=p.id,
                state=p.state,
                idle=p.state in ACTIVE_STATES and p.last_seen_at < cutoff,
                models=models[p.id],
                created_at=p.created_at,
                last_seen_at=p.last_seen_at,
                answered_main=s.answered_main,
                main_trials=s.main_trials,
                checks=checks.get(p.id, Checks()),
                excluded=bool(reasons) if p.state == "completed" else None,
                reasons=reasons,
            )
        )
    return rows, total


@dataclass
class ActiveRow:
    """A participant in a session (or just finished) on the study page. No platform id."""

    id: int
    # consent, practice n/N, main n/N or done (see `stage`)
    stage: str
    idle: bool
    models: list[str]
    last_seen_at: datetime
    last_seen: str
    screen: str


def active_participants(
    study: Study, limit: int = PARTICIPANT_ROWS, now: datetime | None = None
) -> tuple[list[ActiveRow], int]:
    """Participants in a session (idle ones too) and those who completed within the idle
    timeout, most recently seen first (at most `limit`), and how many there are in all."""
    now = now or utcnow()
    config = study_config(study)
    cutoff = now - timedelta(minutes=config.recruitment.idle_timeout_minutes)
    which = and_(
        Participant.study_id == study.id,
        or_(
            Participant.state.in_(ACTIVE_STATES),
            and_(Participant.state == "completed", Participant.completed_at >= cutoff),
        ),
    )
    total = db.session.scalar(select(func.count()).select_from(Participant).where(which))
    people = db.session.execute(
        select(
            Participant.id,
            Participant.state,
            Participant.last_seen_at,
            Participant.screen_width,
            Participant.screen_height,
            Participant.device_pixel_ratio,
        )
        .where(which)
        .order_by(Participant.last_seen_at.desc(), Participant.id.desc())
        .limit(limit)
    ).all()
    ids = [p.id for p in people]
    answered = answered_by_block(ids)
    models = models_of(ids)
    return [
        ActiveRow(
            id=p.id,
            stage=stage(p.state, answered.get(p.id, {})),
            idle=p.state in ACTIVE_STATES and p.last_seen_at < cutoff,
            models=models[p.id],
            last_seen_at=p.last_seen_at,
            last_seen=ago(p.last_seen_at, now),
            screen=screen_text(p.screen_width, p.screen_height, p.device_pixel_ratio),
        )
        for p in people
    ], total


def answered_by_block(ids: list[int]) -> dict[int, dict[str, tuple[int, int]]]:
    """(answered, planned) trials per block of each participant, in one grouped query."""
    out: dict[int, dict[str, tuple[int, int]]] = defaultdict(dict)
    if not ids:
        return out
    rows = db.session.execute(
        select(Trial.participant_id, Trial.block, func.count(Response.id), func.count(Trial.id))
        .outerjoin(Response, Response.trial_id == Trial.id)
        .where(Trial.participant_id.in_(ids))
        .group_by(Trial.participant_id, Trial.block)
    )
    for participant_id, block, answered, planned in rows:
        out[participant_id][block] = (answered, planned)
    return out


def stage(state: str, answered: dict[str, tuple[int, int]]) -> str:
    """Where a participant is: consent (signed up, nothing answered yet), practice n/N,
    main n/N (answered of planned trials of that block) or done; else their state."""
    if state == "consented":
        return "consent"
    if state in ("practice", "main"):
        done, planned = answered.get(state, (0, 0))
        return f"{state} {done}/{planned}"
    if state == "completed":
        return "done"
    return state


def models_of(ids: list[int]) -> dict[int, list[str]]:
    """The models (dataset/model) assigned to each of these participants, in one query."""
    models: dict[int, list[str]] = defaultdict(list)
    if not ids:
        return models
    for participant_id, dataset, model in db.session.execute(
        select(participant_generator.c.participant_id, Generator.dataset, Generator.model)
        .join(Generator, Generator.id == participant_generator.c.generator_id)
        .where(participant_generator.c.participant_id.in_(ids))
        .order_by(Generator.id)
    ):
        models[participant_id].append(f"{dataset}/{model}")
    return models


def statuses(study: Study, cutoff: datetime) -> dict[int, str]:
    """Each participant's state, with an active session idle since before `cutoff` as 'idle'.

    Computed on read: the assigner marks idle sessions abandoned only when someone joins.
    """
    rows = db.session.execute(
        select(Participant.id, Participant.state, Participant.last_seen_at).where(
            Participant.study_id == study.id
        )
    )
    return {
        pid: "idle" if state in ACTIVE_STATES and last_seen < cutoff else state
        for pid, state, last_seen in rows
    }


def _assigned(study: Study) -> list[tuple[int, int]]:
    """(participant id, generator id) for every model assignment in the study."""
    query = (
        select(participant_generator.c.participant_id, participant_generator.c.generator_id)
        .join(Participant, Participant.id == participant_generator.c.participant_id)
        .where(Participant.study_id == study.id)
    )
    return [(pid, gid) for pid, gid in db.session.execute(query)]


# --- Words around the numbers -----------------------------------------------------------------


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """ "1 participant", "0 participants", "2 entries" (with plural_form)."""
    return f"{n} {singular if n == 1 else plural_form or singular + 's'}"


def ago(then: datetime, now: datetime) -> str:
    """How long ago `then` was, in words: "under a minute ago", "3 min ago", "2 h 5 min ago",
    "4 days ago"."""
    minutes = int((now - then).total_seconds() // 60)
    if minutes < 1:
        return "under a minute ago"
    if minutes < 60:
        return f"{minutes} min ago"
    if minutes < 24 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min ago" if rest else f"{hours} h ago"
    return f"{plural(minutes // (24 * 60), 'day')} ago"


def screen_text(width: int | None, height: int | None, pixel_ratio: float | None) -> str:
    """The participant's screen in CSS pixels, e.g. "1280x800" or "390x844 @3x"."""
    if not width or not height:
        return "unknown"
    text = f"{width}x{height}"
    if pixel_ratio and pixel_ratio != 1:
        text += f" @{pixel_ratio:g}x"
    return text


def design_text(config: StudyConfig) -> str:
    """The study design in one line: models per participant and trials per block."""
    d, a = config.design, config.attention
    models = (
        "one model per participant"
        if d.type == "one-model"
        else f"mixed, {d.models_per_participant} models per participant"
    )
    checks = a.catch_trials + a.instructed_trials
    return (
        f"{models}; {d.real_trials} real and {d.fake_trials} fake main trials, "
        f"{plural(checks, 'attention check')} ({a.catch_trials} catch, "
        f"{a.instructed_trials} instructed), {plural(config.practice.trials, 'practice trial')}"
    )


def exposure_text(config: StudyConfig) -> str:
    """How long each image is shown, with the fixation before it and the mask after it."""
    t = config.timing
    if t.mode == "fixed":
        shown = f"{t.exposure_ms} ms"
    elif t.mode == "unlimited":
        shown = "until the answer"
    else:
        s = t.staircase
        shown = (
            f"from {s.start_ms} ms, between {s.min_ms} and {s.max_ms} ms in steps of "
            f"{s.step_ms} ms ({s.interleaved} interleaved staircases)"
        )
    mask = f"mask {t.mask_ms} ms" if t.mask_ms else "no mask"
    return f"{shown}; fixation {t.fixation_ms} ms, {mask}"


def rule_texts(config: StudyConfig) -> dict[str, str]:
    """Each exclusion rule (RULES) with this study's threshold, in words."""
    r = config.exclusions
    if r.max_answers_per_second is None:
        pace = "answers faster than the trials can be shown"
    elif r.max_answers_per_second:
        pace = f"more than {r.max_answers_per_second:g} answers per second"
    else:
        pace = "off"
    if r.min_session_seconds:
        pace = f"{pace}; main block answered in under {r.min_session_seconds} s"
    return {
        "attention": f"more than {plural(r.max_attention_failures, 'attention check')} failed",
        "invalid_display": f"more than {r.max_invalid_fraction:.0%} of answered main trials "
        "invalid",
        "fast": f"median response time under {r.min_median_rt_ms} ms"
        if r.min_median_rt_ms
        else "off",
        "pace": pace,
    }


def participant_url(base: str, slug: str, platform: str) -> str:
    """The study's link to give the recruitment platform: Prolific's with its URL
    parameters; MTurk's ExternalURL (MTurk appends its own); a plain link as it is."""
    url = f"{base.rstrip('/')}/s/{slug}"
    return f"{url}?{PROLIFIC_QUERY}" if platform == "prolific" else url


def external_question(url: str) -> str:
    """The ExternalQuestion XML of an MTurk HIT showing `url`."""
    return EXTERNAL_QUESTION.format(url=escape(url))
