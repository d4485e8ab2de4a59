"""Who judges which model, and the trial list each participant gets.

A newcomer gets the least-filled model(s) of the study (active + completed
participants, less those the exclusion rules drop when the study replaces them; a
session idle past the timeout stops counting), a trial list balanced between real
and fake with no image twice, in an order seeded per participant. The same platform
id coming back resumes its own session.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from study_server import staircase
from study_server.db import db, utcnow
from study_server.exclusions import usable_counts
from study_server.lifecycle import admission
from study_server.models import (
    ACTIVE_STATES,
    Generator,
    Image,
    Participant,
    Response,
    Study,
    Token,
    Trial,
    participant_generator,
)
from study_server.studies import study_config
from study_server.studyconfig import StudyConfig

FULL = "this study has all the participants it needs"


class AssignmentError(Exception):
    """Why a participant cannot start: `code` is the API's error code, `status` its HTTP status."""

    def __init__(self, code: str, message: str, status: int = 409):
        super().__init__(message)
        self.code, self.status = code, status


@dataclass(frozen=True)
class Identity:
    """Who is asking, as the recruitment platform names them (all optional)."""

    platform_pid: str | None = None
    platform_study_id: str | None = None
    platform_session_id: str | None = None
    assignment_id: str | None = None
    hit_id: str | None = None
    turk_submit_to: str | None = None


@dataclass(frozen=True)
class ClientInfo:
    screen_width: int | None = None
    screen_height: int | None = None
    device_pixel_ratio: float | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class Planned:
    block: str
    kind: str
    image_id: int
    expected: str
    planned_exposure_ms: float | None
    staircase: int | None = None


def hash_token(token: str) -> str:
    """What is stored of a bearer token: its sha256 (tokens are long and random)."""
    return hashlib.sha256(token.encode()).hexdigest()


def assign(study: Study, identity: Identity, client: ClientInfo) -> tuple[Participant, str, bool]:
    """(participant, new bearer token, resumed?) for someone opening the study.

    Raises AssignmentError when the study is not open to this person (draft, paused or
    closed: lifecycle.admission), full, busy (too many newcomers this minute) or this
    identity may not go on. Commits. Only choosing the models is
    serialised on the study's row (a few short queries); the trial list is made when
    the session is first read (`ensure_trials`).
    """
    config = study_config(study)
    now = utcnow()
    existing = find_existing(study, config, identity)
    check_admission(study, newcomer=existing is None)
    if existing is None:
        check_signup_rate(study, config, now)
        existing, participant = new_participant(study, config, identity, client, now)
    if existing is not None:
        resume(existing)
        update_attempt(existing, identity)
        participant = existing
    token = secrets.token_urlsafe(32)
    db.session.add(new_token(token, participant, identity, now))
    db.session.commit()
    return participant, token, existing is not None


def find_existing(study: Study, config: StudyConfig, identity: Identity) -> Participant | None:
    """The session this platform id already has in the study, if any."""
    if identity.platform_pid is None:
        return None
    return db.session.scalar(
        select(Participant).where(
            Participant.study_id == study.id,
            Participant.platform == config.recruitment.platform,
            Participant.platform_pid == identity.platform_pid,
        )
    )


def new_participant(
    study: Study, config: StudyConfig, identity: Identity, client: ClientInfo, now: datetime
) -> tuple[Participant | None, Participant | None]:
    """(existing, None) when the id signed up meanwhile, else (None, the new participant).

    Freeing idle places, counting places and inserting the newcomer are one step under
    the study's write lock (a row lock on PostgreSQL, the database write lock on
    SQLite), committed at once; a full study rolls it all back.
    """
    db.session.execute(
        update(Study).where(Study.id == study.id).values(assignments=Study.assignments + 1)
    )
    # Under the lock: a concurrent sign-up of the same id has committed by now.
    existing = find_existing(study, config, identity)
    if existing is not None:
        db.session.rollback()  # nothing to count: release the lock, change nothing
        return existing, None
    # A pause or close committed since the first check counts (it took the same lock).
    db.session.refresh(study, ["state"])
    try:
        check_admission(study, newcomer=True)
    except AssignmentError:
        db.session.rollback()
        raise
    mark_abandoned(study, config, now)
    seed = secrets.randbelow(2**31)
    try:
        generators = least_filled(study, config, random.Random(seed))
    except AssignmentError:
        db.session.rollback()
        raise
    participant = Participant(
        study=study,
        platform=config.recruitment.platform,
        platform_pid=identity.platform_pid,
        platform_study_id=identity.platform_study_id,
        platform_session_id=identity.platform_session_id,
        assignment_id=identity.assignment_id,
        hit_id=identity.hit_id,
        turk_submit_to=identity.turk_submit_to,
        state="consented",
        seed=seed,
        created_at=now,
        last_seen_at=now,
        screen_width=client.screen_width,
        screen_height=client.screen_height,
        device_pixel_ratio=client.device_pixel_ratio,
        user_agent=client.user_agent,
        generators=generators,
    )
    db.session.add(participant)
    db.session.commit()
    return None, participant


def check_admission(study: Study, *, newcomer: bool) -> None:
    """AssignmentError (409 study_draft, study_paused, study_closed) unless the study's
    state lets this person start (newcomer) or go on."""
    refusal = admission(study, newcomer=newcomer)
    if refusal is not None:
        raise AssignmentError(refusal.code, refusal.message, refusal.status)


def check_signup_rate(study: Study, config: StudyConfig, now: datetime) -> None:
    """Refuse a newcomer (429) when the study took its cap of newcomers in the last minute.

    Counted in the database, so the cap holds across workers; concurrent sign-ups may
    pass it by a few. 0 switches it off.
    """
    cap = config.recruitment.max_signups_per_minute
    if not cap:
        return
    recent = db.session.scalar(
        select(func.count())
        .select_from(Participant)
        .where(Participant.study_id == study.id, Participant.created_at > now - MINUTE)
    )
    if recent >= cap:
        raise AssignmentError(
            "busy", "too many people are starting this study right now; try again shortly", 429
        )


MINUTE = timedelta(minutes=1)


def ensure_trials(participant: Participant) -> None:
    """Give the participant their trial list, if they have none yet (commits).

    The list is a pure function of the seed, the models and the study's images, so
    it is the same whenever it is made. Two requests making it at once: the first
    insert stands, the other rolls back (unique participant + position).
    """
    has_trials = db.session.scalar(
        select(Trial.id).where(Trial.participant_id == participant.id).limit(1)
    )
    if has_trials is not None or participant.state == "returned":
        return
    study = participant.study
    config = study_config(study)
    generators = participant.generators
    pools = image_pools(study, {g.dataset for g in generators})
    db.session.add_all(
        Trial(
            participant_id=participant.id,
            position=position,
            block=p.block,
            kind=p.kind,
            image_id=p.image_id,
            expected=p.expected,
            planned_exposure_ms=p.planned_exposure_ms,
            staircase=p.staircase,
        )
        for position, p in enumerate(plan_trials(config, generators, pools, participant.seed))
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()


def resume(participant: Participant) -> None:
    """Let a returning participant go on with their own session, if it is still open.

    Nothing changes: an abandoned session becomes active again with its next answer
    (only answers keep or take back a place).
    """
    if participant.state == "completed":
        raise AssignmentError("already_completed", "this study is already completed")
    if participant.state == "returned":
        raise AssignmentError("returned", "this session was returned and cannot go on")


def new_token(
    token: str, participant: Participant, identity: Identity, now: datetime | None = None
) -> Token:
    """The stored form of a new bearer token, with the MTurk assignment it came with."""
    return Token(
        token_hash=hash_token(token),
        participant=participant,
        created_at=now or utcnow(),
        assignment_id=identity.assignment_id,
        turk_submit_to=identity.turk_submit_to,
    )


def update_attempt(participant: Participant, identity: Identity) -> None:
    """Keep Prolific's session id of this attempt.

    MTurk's ids are not changed: anyone can send another worker's id, and nothing MTurk
    sends proves who accepted which assignment. The participant keeps the assignment that
    started the session, and each token keeps its own (see `new_token`), so a worker who
    returned the HIT and took it again submits from the new tab to the new assignment,
    while a sign-up with someone else's worker id never changes where their form goes.
    """
    if identity.platform_session_id is not None:
        participant.platform_session_id = identity.platform_session_id


def resumed_state(participant_id: int) -> str:
    """The state an abandoned session goes back to, from what it has answered."""
    blocks = set(
        db.session.scalars(
            select(Trial.block).join(Response).where(Trial.participant_id == participant_id)
        )
    )
    return "main" if "main" in blocks else "practice" if "practice" in blocks else "consented"


def mark_abandoned(study: Study, config: StudyConfig, now: datetime) -> None:
    """Sessions without an answer for the idle timeout stop holding a place.

    They may still come back: their next answer makes them active again.
    """
    cutoff = now - timedelta(minutes=config.recruitment.idle_timeout_minutes)
    db.session.execute(
        update(Participant)
        .where(
            Participant.study_id == study.id,
            Participant.state.in_(ACTIVE_STATES),
            Participant.last_seen_at < cutoff,
        )
        .values(state="abandoned")
    )


def filled(study: Study, idle_before: datetime | None = None) -> dict[int, int]:
    """Participants holding a place per generator id: active, or completed and usable.

    Completed participants whom the study's exclusion rules drop hold no place when
    its `[recruitment] replace_excluded` is true (the default): the next newcomer
    takes it. With `idle_before`, active sessions without an answer since then are
    not counted: the places `mark_abandoned` would free, read without writing anything.
    """
    replace_excluded = study_config(study).recruitment.replace_excluded
    active = Participant.state.in_(ACTIVE_STATES)
    if idle_before is not None:
        active = and_(active, Participant.last_seen_at >= idle_before)
    holding = active if replace_excluded else or_(active, Participant.state == "completed")
    rows = db.session.execute(
        select(participant_generator.c.generator_id, func.count())
        .join(Participant, Participant.id == participant_generator.c.participant_id)
        .where(Participant.study_id == study.id, holding)
        .group_by(participant_generator.c.generator_id)
    )
    counts = dict(rows.all())
    if replace_excluded:
        for generator_id, n in usable_counts(study).items():
            counts[generator_id] = counts.get(generator_id, 0) + n
    return counts


def with_room(study: Study, counts: dict[int, int]) -> list[Generator]:
    """The study's generators that hold fewer participants than their target."""
    return [g for g in study.generators if counts.get(g.id, 0) < g.target]


def least_filled(study: Study, config: StudyConfig, rng: random.Random) -> list[Generator]:
    """The k generators with most room left, ties broken at random; full when fewer have room."""
    k = config.design.models_per_participant
    counts = filled(study)
    open_ = with_room(study, counts)
    if len(open_) < k:
        raise AssignmentError("study_full", FULL)
    order = sorted(open_, key=lambda g: (counts.get(g.id, 0), rng.random()))
    return sorted(order[:k], key=lambda g: g.id)


Pools = dict[tuple[str, str, str, int | None], list[int]]


def image_pools(study: Study, datasets: set[str]) -> Pools:
    """Image ids by (dataset, role, source, generator id), sorted for reproducible draws."""
    pools: Pools = defaultdict(list)
    rows = db.session.execute(
        select(Image.id, Image.dataset, Image.role, Image.source, Image.generator_id)
        .where(Image.study_id == study.id, Image.dataset.in_(datasets))
        .order_by(Image.id)
    )
    for image_id, dataset, role, source, generator_id in rows:
        pools[dataset, role, source, generator_id].append(image_id)
    return pools


def plan_trials(
    config: StudyConfig, generators: list[Generator], pools: Pools, seed: int
) -> list[Planned]:
    """Practice block then main block, each shuffled; a pure function of its inputs."""
    rng = random.Random(seed)
    k = len(generators)
    datasets = sorted({g.dataset for g in generators})
    timing = config.timing
    # Staircase: practice runs at the starting exposure; main trials get theirs from the
    # staircase when they are shown (None here), see responses.record. Attention checks
    # are timed like every other trial, so nothing but an instruction tells them apart.
    exposure = {"fixed": float(timing.exposure_ms), "unlimited": None}.get(
        timing.mode, float(timing.staircase.start_ms)
    )
    main_exposure = None if timing.mode == "staircase" else exposure

    def draw(pool: list[int], n: int) -> list[int]:
        return rng.sample(pool, n)

    def merged(role: str, source: str) -> list[int]:
        return sorted(
            i
            for (dataset, r, s, _), ids in pools.items()
            if dataset in datasets and r == role and s == source
            for i in ids
        )

    n_fake = config.practice.trials // 2
    practice = [
        Planned("practice", "stimulus", i, "real", exposure)
        for i in draw(merged("practice", "real"), config.practice.trials - n_fake)
    ] + [
        Planned("practice", "stimulus", i, "fake", exposure)
        for i in draw(merged("practice", "fake"), n_fake)
    ]
    rng.shuffle(practice)

    main: list[Planned] = []
    reals_per_dataset: dict[str, int] = defaultdict(int)
    for g in generators:
        reals_per_dataset[g.dataset] += config.design.real_trials // k
        fakes = draw(
            pools.get((g.dataset, "main", "fake", g.id), []), config.design.fake_trials // k
        )
        main += [Planned("main", "stimulus", i, "fake", main_exposure) for i in fakes]
    for dataset in datasets:
        reals = draw(pools.get((dataset, "main", "real", None), []), reals_per_dataset[dataset])
        main += [Planned("main", "stimulus", i, "real", main_exposure) for i in reals]
    attention = config.attention
    checks = draw(merged("catch", "fake"), attention.catch_trials + attention.instructed_trials)
    main += [
        Planned("main", "catch", i, "fake", main_exposure) for i in checks[: attention.catch_trials]
    ]
    main += [
        Planned("main", "instructed", i, rng.choice(("real", "fake")), main_exposure)
        for i in checks[attention.catch_trials :]
    ]
    rng.shuffle(main)
    if timing.mode == "staircase":
        dealt = staircase.deal(rng, len(main), timing.staircase.interleaved)
        main = [replace(p, staircase=s) for p, s in zip(main, dealt, strict=True)]
    return practice + main
