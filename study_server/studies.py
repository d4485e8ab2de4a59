"""Registering a study: its config, its generators and its images from a stimulus folder;
copying a pilot's into a main study."""

from __future__ import annotations

import functools
import json
import secrets
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

from sqlalchemy import func, select

from percept.errors import PerceptError
from stimuli.manifest import MANIFEST, image_path, read_manifest
from study_server.db import db
from study_server.imagestore import audit_folder, copy_into_store, store_dir, stored_path
from study_server.models import AuditEntry, Generator, Image, Participant, Study
from study_server.studyconfig import SLUG, StudyConfig, parse_config


def create_study(config: StudyConfig, *, draft: bool = False, who: str = "cli") -> Study:
    """Add a study and its images to the database; nothing is written if a check fails.

    The study is open (takes participants at once), or a draft when `draft` is true
    (`percept study open SLUG` opens it); a pilot when the config says `pilot = true`.
    Its creation is the first line of its audit log.
    """
    if db.session.scalar(select(Study.id).where(Study.slug == config.slug)) is not None:
        raise PerceptError(
            f"slug: a study called {config.slug!r} already exists; choose another slug"
        )
    stimdir = Path(config.stimuli)
    rows = read_manifest(stimdir)
    models = _chosen_models(config, rows, stimdir)
    chosen_datasets = {name.split("/")[0] for name in models}
    rows = [r for r in rows if r["dataset"] in chosen_datasets]
    _check_pools(config, rows, models, stimdir)
    missing = [r for r in rows if not image_path(stimdir, r["sha256"]).is_file()]
    if missing:
        raise PerceptError(
            f"{image_path(stimdir, missing[0]['sha256'])}: missing image file "
            f"({len(missing)} listed in {MANIFEST} are missing); re-run `percept stimuli ingest`"
        )
    audit_folder(stimdir)

    study = Study(
        slug=config.slug,
        title=config.title,
        config=config.to_dict(),
        stimuli_dir=str(stimdir.resolve()),
        salt=secrets.token_hex(16),
        state="draft" if draft else "open",
        kind="pilot" if config.pilot else "main",
    )
    db.session.add(study)
    db.session.add(AuditEntry(who=who, study=study, action="create", detail=study.state))
    generators = {}
    for name in models:
        dataset, model = name.split("/")
        generators[name] = Generator(
            study=study, dataset=dataset, model=model, target=config.recruitment.target_per_model
        )
        db.session.add(generators[name])
    for r in rows:
        name = f"{r['dataset']}/{r['model']}"
        if r["source"] == "fake" and r["role"] != "catch" and name not in generators:
            continue  # another model of the same dataset, not in this study
        db.session.add(
            Image(
                study=study,
                public_id=new_public_id(),
                sha256=r["sha256"],
                dataset=r["dataset"],
                source=r["source"],
                generator=generators.get(name) if r["role"] != "catch" else None,
                role=r["role"],
                original_path=r["original_path"],
                width=int(r["width"]),
                height=int(r["height"]),
            )
        )
    # The study's own copies: what participants see no longer depends on the folder.
    images = [obj for obj in db.session.new if isinstance(obj, Image)]
    served = copy_into_store(stimdir, (image.sha256 for image in images), store_dir())
    for image in images:
        image.served_sha256 = served[image.sha256]
    db.session.commit()
    return study


def copy_study(source: Study, slug: str, *, draft: bool = True, who: str = "cli") -> Study:
    """A main study made from `source` (a pilot): its config under a new slug, its images.

    The copy serves the same images from the image store (the same served bytes, under
    new public ids), so it needs no stimulus folder. Its targets are the config's
    `target_per_model`. It is a draft unless `draft` is false. Both studies' audit logs
    say so; nothing is written if a check fails.
    """
    if db.session.scalar(select(Study.id).where(Study.slug == slug)) is not None:
        raise PerceptError(f"a study called {slug!r} already exists; choose another slug")
    config = study_config(source)
    copied = replace(config, slug=slug, pilot=False)
    # The new slug goes through the config's own check.
    copied = parse_config(copied.to_dict(), where=f"the copy of study {source.slug}")
    images = list(
        db.session.scalars(select(Image).where(Image.study_id == source.id).order_by(Image.id))
    )
    _check_stored(source, images)
    study = Study(
        slug=slug,
        title=source.title,
        config=copied.to_dict(),
        stimuli_dir=source.stimuli_dir,
        salt=secrets.token_hex(16),
        state="draft" if draft else "open",
        kind="main",
    )
    db.session.add(study)
    db.session.add(
        AuditEntry(
            who=who, study=study, action="create", detail=f"{study.state}, copy of {source.slug}"
        )
    )
    db.session.add(AuditEntry(who=who, study=source, action="copy", detail=f"main study {slug}"))
    generators = {}
    for g in source.generators:
        generators[g.id] = Generator(
            study=study,
            dataset=g.dataset,
            model=g.model,
            target=copied.recruitment.target_per_model,
        )
        db.session.add(generators[g.id])
    for image in images:
        db.session.add(
            Image(
                study=study,
                public_id=new_public_id(),
                sha256=image.sha256,
                served_sha256=image.served_sha256,
                dataset=image.dataset,
                source=image.source,
                generator=generators.get(image.generator_id),
                role=image.role,
                original_path=image.original_path,
                width=image.width,
                height=image.height,
            )
        )
    db.session.commit()
    return study


def _check_stored(study: Study, images: list[Image]) -> None:
    """PerceptError unless every image of the study is in the image store (by name)."""
    store = store_dir()
    missing = [
        image
        for image in images
        if image.served_sha256 is None or not stored_path(store, image.served_sha256).is_file()
    ]
    if missing:
        raise PerceptError(
            f"{len(missing)} of the {len(images)} images of study {study.slug!r} are not in "
            f"the image store {store}; run `percept study check {study.slug} --restore-from "
            "STIMDIR` first"
        )


def new_public_id() -> str:
    """A random image id for URLs; never starting with `-`, so the export need not guard it
    against spreadsheet formulas (docs/export.md)."""
    while True:
        public_id = secrets.token_urlsafe(12)
        if not public_id.startswith("-"):
            return public_id


def find_study(slug: str) -> Study | None:
    """The study with this slug, or None."""
    # A slug that cannot exist is not looked up (PostgreSQL refuses NUL in a query).
    if not SLUG.fullmatch(slug):
        return None
    return db.session.scalar(select(Study).where(Study.slug == slug))


def study_summary(study: Study) -> str:
    """Lines naming each model with its participant target and image count."""
    counts = dict(
        db.session.execute(
            select(Image.generator_id, func.count())
            .where(Image.study_id == study.id)
            .group_by(Image.generator_id)
        ).all()
    )
    lines = [
        f"  {g.name}: {counts.get(g.id, 0)} images, target {g.target} participants"
        for g in study.generators
    ]
    lines.append(f"  real and catch images: {counts.get(None, 0)}")
    return "\n".join(lines)


def list_studies() -> list[str]:
    """One line per study: slug, platform, state, kind, title and its participants by state."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for study_id, state, n in db.session.execute(
        select(Participant.study_id, Participant.state, func.count()).group_by(
            Participant.study_id, Participant.state
        )
    ):
        counts[study_id][state] = n
    lines = []
    for study in db.session.scalars(select(Study).order_by(Study.created_at, Study.id)):
        by_state = sorted(counts[study.id].items())
        people = ", ".join(f"{n} {state}" for state, n in by_state) or "nobody yet"
        platform = study_config(study).recruitment.platform
        lines.append(
            f"{study.slug}  [{platform}, {study.state}, {study.kind}]  {study.title}: {people}"
        )
    return lines


def study_config(study: Study) -> StudyConfig:
    """The validated config a study was created with (parsed once per process: stored_config)."""
    return stored_config(study.id, study.slug, json.dumps(study.config, sort_keys=True))


@functools.lru_cache(maxsize=64)
def stored_config(study_id: int, slug: str, text: str) -> StudyConfig:
    """The validated config of a study from its stored JSON text.

    Cached per process by study and text: every answer needs its study's config, and
    parsing it costs more than the rest of the answer's Python. A changed config is a
    different text, so it is parsed afresh; a StudyConfig is frozen, so sharing it is safe.
    """
    return parse_config(json.loads(text), where=f"study {slug}")


def _chosen_models(config: StudyConfig, rows: list[dict[str, str]], stimdir: Path) -> list[str]:
    available = sorted(
        {f"{r['dataset']}/{r['model']}" for r in rows if r["source"] == "fake" and r["model"]}
    )
    if config.models == "all":
        return available
    unknown = [m for m in config.models if m not in available]
    if unknown:
        raise PerceptError(
            f"models: {unknown[0]!r} is not in {stimdir / MANIFEST}; "
            f"it has {', '.join(available) or 'no models'}"
        )
    return list(config.models)


def _check_pools(
    config: StudyConfig, rows: list[dict[str, str]], models: list[str], stimdir: Path
) -> None:
    """Every participant must be able to get a full trial list with no image twice."""
    k = config.design.models_per_participant
    if len(models) < k:
        raise PerceptError(
            f"design.models_per_participant: {k} models per participant, "
            f"but the study has only {len(models)}"
        )
    count = Counter(
        (r["dataset"], r["role"], r["source"], r["model"] if r["source"] == "fake" else "")
        for r in rows
    )
    where = stimdir / MANIFEST

    def need(key: str, needed: int, have: int, what: str) -> None:
        if have < needed:
            raise PerceptError(
                f"{key}: each participant needs {needed} {what}, but {where} has only {have}"
            )

    per_model_fakes = config.design.fake_trials // k
    for name in models:
        dataset, model = name.split("/")
        need(
            "design.fake_trials",
            per_model_fakes,
            count[dataset, "main", "fake", model],
            f"main images of {name}",
        )
    for dataset in sorted({m.split("/")[0] for m in models}):
        need(
            "design.real_trials",
            config.design.real_trials,
            count[dataset, "main", "real", ""],
            f"real main images of dataset {dataset}",
        )
        practice_fakes = sum(
            count[dataset, "practice", "fake", m.split("/")[1]]
            for m in models
            if m.split("/")[0] == dataset
        )
        need(
            "practice.trials",
            config.practice.trials - config.practice.trials // 2,
            count[dataset, "practice", "real", ""],
            f"real practice images of dataset {dataset}",
        )
        need(
            "practice.trials",
            config.practice.trials // 2,
            practice_fakes,
            f"fake practice images of dataset {dataset}",
        )
        catch = sum(n for key, n in count.items() if key[:2] == (dataset, "catch"))
        need(
            "attention.catch_trials",
            config.attention.catch_trials + config.attention.instructed_trials,
            catch,
            f"catch images of dataset {dataset} (catch_trials + instructed_trials)",
        )
