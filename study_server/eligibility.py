"""May this person take the study? Asked before consent, answered without storing anything.

The trial runner asks before it shows the consent form, so nobody reads a consent
form for a study they cannot take. The reasons are the sign-up's own refusals
(same codes; the study's state comes from study_server.lifecycle.admission), plus
a screen smaller than the study needs and a touch-only device where the study
needs a mouse (`[device] allow_touch_only = false`). Nothing here writes: a session idle past
the timeout is counted as free, as the next sign-up would count it.
"""

from __future__ import annotations

from datetime import timedelta

from study_server.assignment import (
    FULL,
    AssignmentError,
    Identity,
    filled,
    find_existing,
    resume,
    with_room,
)
from study_server.db import utcnow
from study_server.lifecycle import Refusal, admission
from study_server.models import Study
from study_server.studyconfig import StudyConfig


def refusal(
    study: Study,
    config: StudyConfig,
    identity: Identity,
    screen: tuple[int | None, int | None] = (None, None),
    *,
    touch_only: bool = False,
) -> Refusal | None:
    """The first reason this person cannot take part, or None when they may.

    `touch_only`: the device has no fine pointer (a phone or tablet without a mouse).
    In the order a person should hear them: the study itself, their own earlier
    session, their screen, their device, then room. Someone resuming their own open session is
    never told the study is full: their place is theirs.
    """
    existing = find_existing(study, config, identity)
    # The study's state first (draft, paused, closed), as the sign-up decides it: someone
    # with a session may go on in a paused study unless the study says stop.
    closed = admission(study, newcomer=existing is None)
    if closed is not None:
        return closed
    if existing is not None:
        try:
            resume(existing)  # the sign-up's own check of an earlier session; writes nothing
        except AssignmentError as e:
            return Refusal(e.status, e.code, str(e))
    width, height = screen
    device = config.device
    if (width is not None and width < device.min_width) or (
        height is not None and height < device.min_height
    ):
        return Refusal(
            409,
            "screen_too_small",
            f"this study needs a screen of at least {device.min_width} x {device.min_height} "
            "pixels",
        )
    if touch_only and not device.allow_touch_only:
        return Refusal(
            409, "device_unsupported", "this study needs a mouse or trackpad, not a touch screen"
        )
    if existing is None and not has_room(study, config):
        return Refusal(409, "study_full", FULL)
    return None


def has_room(study: Study, config: StudyConfig) -> bool:
    """Whether a newcomer would get models now (the read-only twin of `least_filled`)."""
    cutoff = utcnow() - timedelta(minutes=config.recruitment.idle_timeout_minutes)
    room = with_room(study, filled(study, idle_before=cutoff))
    return len(room) >= config.design.models_per_participant
