"""Tables of the study server. Times are naive UTC; correctness lives only here.

Study ─< Generator (dataset + model, with its participant target)
Study ─< Image (per-study opaque public id; source, generator, role)
Study ─< Participant >─< Generator (assigned models) ; Participant ─< Trial ─ Response
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from study_server.db import db, utcnow

SOURCES = ("real", "fake")
ROLES = ("main", "practice", "catch")
BLOCKS = ("practice", "main")
# stimulus: an image judged for the study; catch: an unmistakable fake shown without a
# time limit; instructed: "press REAL (or FAKE) for this one".
KINDS = ("stimulus", "catch", "instructed")
CHOICES = ("real", "fake")
ACTIVE_STATES = ("consented", "practice", "main")
STATES = (*ACTIVE_STATES, "completed", "abandoned", "returned")
PLATFORMS = ("prolific", "mturk", "link")
# A study's life (study_server/lifecycle.py): only an open study takes newcomers.
STUDY_STATES = ("draft", "open", "paused", "closed")
# A pilot comes first, with a few participants; `percept study copy` makes the main study.
STUDY_KINDS = ("pilot", "main")


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=f"{column}_valid")


participant_generator = db.Table(
    "participant_generator",
    db.Column("participant_id", ForeignKey("participant.id"), primary_key=True),
    db.Column("generator_id", ForeignKey("generator.id"), primary_key=True),
)


class Study(db.Model):
    __table_args__ = (_one_of("state", STUDY_STATES), _one_of("kind", STUDY_KINDS))

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    # The validated study config (study_server.studyconfig.StudyConfig.to_dict()).
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    stimuli_dir: Mapped[str] = mapped_column(Text)
    # Secret salt for hashing platform ids in exports.
    salt: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Bumped by every assignment: the UPDATE takes the study's write lock on both databases.
    assignments: Mapped[int] = mapped_column(default=0)
    # draft, open, paused or closed; changed only by study_server.lifecycle.change_state.
    state: Mapped[str] = mapped_column(String(8), default="open", server_default="open")
    # pilot or main: from the config's `pilot` at creation; `percept study copy` makes main.
    kind: Mapped[str] = mapped_column(String(8), default="main", server_default="main")

    generators: Mapped[list[Generator]] = relationship(
        back_populates="study", order_by="Generator.id"
    )


class Generator(db.Model):
    __table_args__ = (UniqueConstraint("study_id", "dataset", "model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100))
    target: Mapped[int]

    study: Mapped[Study] = relationship(back_populates="generators")

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.model}"


class Image(db.Model):
    __table_args__ = (
        UniqueConstraint("study_id", "sha256"),
        _one_of("source", SOURCES),
        _one_of("role", ROLES),
        Index("ix_image_pool", "study_id", "dataset", "role", "source"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    # What participants see in URLs: random, unrelated to content, source or model.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the bytes served: the stimulus padded to the study's one length, stored
    # in the image store under this name (study_server/imagestore.py).
    served_sha256: Mapped[str | None] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(8))
    generator_id: Mapped[int | None] = mapped_column(ForeignKey("generator.id"))
    role: Mapped[str] = mapped_column(String(8))
    original_path: Mapped[str] = mapped_column(Text)
    width: Mapped[int]
    height: Mapped[int]

    study: Mapped[Study] = relationship()
    generator: Mapped[Generator | None] = relationship()


class Participant(db.Model):
    __table_args__ = (
        # One session per platform identity and study, even under concurrent sign-ups.
        UniqueConstraint("study_id", "platform", "platform_pid"),
        _one_of("state", STATES),
        _one_of("platform", PLATFORMS),
        # The per-study sign-up cap counts the last minute's newcomers.
        Index("ix_participant_study_created", "study_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    # PROLIFIC_PID, MTurk workerId, or for plain links the browser's own client id.
    platform_pid: Mapped[str | None] = mapped_column(String(200))
    platform_study_id: Mapped[str | None] = mapped_column(String(200))
    platform_session_id: Mapped[str | None] = mapped_column(String(200))
    assignment_id: Mapped[str | None] = mapped_column(String(200))
    hit_id: Mapped[str | None] = mapped_column(String(200))
    turk_submit_to: Mapped[str | None] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(16), default="consented")
    seed: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    completion_code: Mapped[str | None] = mapped_column(String(100))
    screen_width: Mapped[int | None]
    screen_height: Mapped[int | None]
    device_pixel_ratio: Mapped[float | None]
    user_agent: Mapped[str | None] = mapped_column(String(1000))

    study: Mapped[Study] = relationship()
    generators: Mapped[list[Generator]] = relationship(
        secondary=participant_generator, order_by="Generator.id"
    )
    trials: Mapped[list[Trial]] = relationship(
        back_populates="participant", order_by="Trial.position"
    )


class Token(db.Model):
    """A bearer token of a participant, stored as its sha256 (the token itself never is).

    Each sign-up of the same platform id adds one, and earlier ones stay valid, so two
    tabs or a retried sign-up never lock a participant out of their own session.
    """

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # MTurk: the assignment this token's sign-up came with. The completion form of the
    # browser holding the token goes to it; the participant row keeps the first one.
    assignment_id: Mapped[str | None] = mapped_column(String(200))
    turk_submit_to: Mapped[str | None] = mapped_column(String(500))

    participant: Mapped[Participant] = relationship()


class Trial(db.Model):
    __table_args__ = (
        UniqueConstraint("participant_id", "position"),
        _one_of("block", BLOCKS),
        _one_of("kind", KINDS),
        _one_of("expected", CHOICES),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"))
    position: Mapped[int]
    block: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(12))
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"))
    # The right answer: the image's source, "fake" for catch images, the instructed choice.
    expected: Mapped[str] = mapped_column(String(4))
    # None: the image stays until the response (unlimited exposure).
    planned_exposure_ms: Mapped[float | None]
    # Staircase studies, main block: which of the participant's interleaved staircases
    # gives this trial its exposure (never sent to the browser).
    staircase: Mapped[int | None]
    # A repeat: the trial whose invalid answer added this one at the end of its block,
    # with the same image, kind and expected answer (responses.record); else None.
    repeat_of: Mapped[int | None] = mapped_column(ForeignKey("trial.id"))

    participant: Mapped[Participant] = relationship(back_populates="trials")
    image: Mapped[Image] = relationship()
    response: Mapped[Response | None] = relationship(back_populates="trial")


class Response(db.Model):
    __table_args__ = (_one_of("choice", CHOICES),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique: a trial is answered at most once, whatever the network does.
    trial_id: Mapped[int] = mapped_column(ForeignKey("trial.id"), unique=True)
    choice: Mapped[str] = mapped_column(String(4))
    correct: Mapped[bool]
    rt_ms: Mapped[float]
    onset_ms: Mapped[float | None]
    displayed_ms: Mapped[float | None]
    frames: Mapped[int | None]
    frame_ms: Mapped[float | None]
    valid: Mapped[bool] = mapped_column(default=True)
    invalid_reason: Mapped[str | None] = mapped_column(String(200))
    input: Mapped[str | None] = mapped_column(String(16))
    client_sent_at: Mapped[float | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The request body as received, to tell a replay (same body) from a conflict.
    body: Mapped[dict[str, Any]] = mapped_column(JSON)

    trial: Mapped[Trial] = relationship(back_populates="response")


class AdminSession(db.Model):
    """One admin login. The cookie holds the random id; ending the row ends the login.

    `password` is a keyed fingerprint of the admin password it was opened with
    (study_server.admin.password_fingerprint): a new password ends every older login.
    """

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    password: Mapped[str] = mapped_column(String(64))


class AuditEntry(db.Model):
    """One line of the audit log: who changed what about a study, and when.

    `who` is "cli" or the admin login ("admin " + the start of its admin_session id).
    Never a participant's raw platform id: a withdrawal names them by a salted hash.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    who: Mapped[str] = mapped_column(String(100))
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    # e.g. "pause", "participant_delete"
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")

    study: Mapped[Study] = relationship()
