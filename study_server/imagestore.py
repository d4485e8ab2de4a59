"""The image store: every study's own copies of its images, as served, named by content.

`percept study create` audits the stimulus folder, then writes each image of the
study here, padded to the study's one byte length (stimuli/padding.py), as
`<IMAGE_STORE>/<sha256 of the served bytes>.png`. `/i/<id>.png` reads only from
here and checks the hash of what it read, so regenerating, editing or deleting
the stimulus folder after creation changes nothing a participant sees, and no
manifest entry can make the server open a file elsewhere. The store lives at the
IMAGE_STORE setting, by default `images/` in the instance folder (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from percept.errors import PerceptError
from stimuli.manifest import MANIFEST, image_path
from study_server.db import db
from study_server.models import Image, Study

SHA256 = re.compile(r"^[0-9a-f]{64}$")
# 2000-01-01T00:00:00Z: the modification time of every file in the store (see `put`).
STORE_MTIME = 946_684_800


def store_dir() -> Path:
    """The image store of the current app (the IMAGE_STORE setting)."""
    return Path(current_app.config["IMAGE_STORE"])


def stored_path(store: Path, sha256: str) -> Path:
    """The file of the served image with this hash; only 64 hex digits name one."""
    if not SHA256.fullmatch(sha256 or ""):
        raise ValueError(f"{sha256!r} is not a sha256")
    return store / f"{sha256}.png"


def read_verified(store: Path, sha256: str) -> bytes | None:
    """The bytes stored under this hash, or None when the file is missing or changed."""
    try:
        data = stored_path(store, sha256).read_bytes()
    except (OSError, ValueError):
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def put(store: Path, data: bytes) -> str:
    """Store bytes under their sha256 (atomically); returns the hash. A damaged copy is replaced."""
    sha = hashlib.sha256(data).hexdigest()
    if read_verified(store, sha) is None:
        store.mkdir(parents=True, exist_ok=True)
        tmp = store / f".{sha}.{os.getpid()}.tmp"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, stored_path(store, sha))
        finally:
            tmp.unlink(missing_ok=True)
    # One modification time for every stored image: a web server sending the files
    # itself (X-Accel-Redirect) derives Last-Modified and ETag from it, and the time an
    # image was written (real and generated sets are often made apart) must not show.
    os.utime(stored_path(store, sha), (STORE_MTIME, STORE_MTIME))
    return sha


def audit_folder(stimdir: Path) -> None:
    """`percept stimuli audit` of the folder a study is made from; PerceptError on a problem."""
    # Imported here: serving images needs none of Pillow and numpy, which these load.
    from stimuli.leaks import audit

    problems = audit(stimdir)
    if problems:
        raise PerceptError(
            f"{stimdir}: the stimulus audit found {len(problems)} problem(s), the first: "
            f"{problems[0]}; run `percept stimuli audit {stimdir}` for all of them"
        )


def copy_into_store(stimdir: Path, sha256s: Iterable[str], store: Path) -> dict[str, str]:
    """Pad each stimulus (by its manifest hash) to one length and store it.

    Returns {stimulus sha256: served sha256}. Each file is read once its name is
    checked (64 hex digits: a manifest entry like `../../elsewhere` names no file)
    and its content matches the hash.
    """
    from stimuli.padding import pad_png, padded_length

    wanted = sorted(set(sha256s))
    for sha in wanted:
        if not SHA256.fullmatch(sha):
            raise PerceptError(
                f"{stimdir / MANIFEST}: sha256 {sha!r} is not 64 hex digits; "
                "re-run `percept stimuli ingest`"
            )
    # Two passes keep memory flat however many images there are: lengths, then padding.
    lengths = {sha: len(_read_stimulus(stimdir, sha)) for sha in wanted}
    if not lengths:
        return {}
    length = padded_length(lengths.values())
    return {sha: put(store, pad_png(_read_stimulus(stimdir, sha), length)) for sha in wanted}


def _read_stimulus(stimdir: Path, sha: str) -> bytes:
    path = image_path(stimdir, sha)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PerceptError(f"{path}: cannot read ({e.strerror}); re-run ingest") from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise PerceptError(f"{path}: content does not match its sha256; re-run ingest")
    return data


@dataclass(frozen=True)
class StoreCheck:
    """What `percept study check` found: problems (empty when all is well) and the numbers."""

    images: int
    length: int | None
    problems: list[str]


def check_study(study: Study, store: Path) -> StoreCheck:
    """Verify that every image of the study is in the store, unchanged, padded and one length."""
    from stimuli.leaks import served_problems
    from stimuli.padding import unpad_png

    rows = db.session.execute(
        select(Image.public_id, Image.sha256, Image.served_sha256)
        .where(Image.study_id == study.id)
        .order_by(Image.id)
    ).all()
    problems: list[str] = []
    served: dict[str, bytes] = {}
    for public_id, sha, served_sha in rows:
        where = f"image {public_id} ({sha[:16]})"
        if served_sha is None:
            problems.append(
                f"{where}: the study was created before the image store; run "
                f"`percept study check {study.slug} --restore-from STIMDIR`"
            )
            continue
        data = read_verified(store, served_sha)
        if data is None:
            problems.append(
                f"{stored_path(store, served_sha)}: missing or changed; restore the store "
                f"from a backup or run `percept study check {study.slug} --restore-from STIMDIR`"
            )
            continue
        try:
            original = unpad_png(data)
        except ValueError as e:
            problems.append(f"{stored_path(store, served_sha)}: {e}")
            continue
        if hashlib.sha256(original).hexdigest() != sha:
            problems.append(f"{stored_path(store, served_sha)}: is not the stimulus {sha}")
        served[str(stored_path(store, served_sha))] = data
    problems += [str(p) for p in served_problems(served)]
    lengths = {len(data) for data in served.values()}
    return StoreCheck(len(rows), lengths.pop() if len(lengths) == 1 else None, problems)


def restore_study(study: Study, stimdir: Path, store: Path) -> int:
    """Write the study's images into the store again from a stimulus folder; returns how many.

    The padded bytes depend only on the study's set of stimuli, so they come out as
    they were; a study created before the store gets its served hashes now.
    """
    images = list(db.session.scalars(select(Image).where(Image.study_id == study.id)))
    served = copy_into_store(stimdir, (image.sha256 for image in images), store)
    for image in images:
        if image.served_sha256 not in (None, served[image.sha256]):
            raise PerceptError(
                f"{stimdir}: image {image.sha256} pads to other bytes than the study served "
                "(is this the study's own stimulus folder?); nothing was changed in the database"
            )
        image.served_sha256 = served[image.sha256]
    db.session.commit()
    return len(images)
