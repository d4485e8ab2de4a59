"""`percept stimuli ingest`: folders in, one clean stimulus folder out, or one clear error."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from imagefiles import make_folder, pattern, save, with_header_size
from PIL import Image

from percept.cli import cli
from percept.errors import PerceptError
from stimuli import audit, ingest
from stimuli.manifest import MANIFEST_COLUMNS, read_manifest


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """real/ with 12 images (mixed formats, sizes), two model folders of 8."""
    make_folder(tmp_path / "real", 10, size=(48, 40), seed=1)
    save(tmp_path / "real" / "sub" / "photo.jpg", pattern(64, 50, seed=99), quality=95)
    save(tmp_path / "real" / "scan.tif", pattern(40, 60, seed=98))
    make_folder(tmp_path / "gan", 8, size=(56, 56), seed=2)
    make_folder(tmp_path / "diffusion", 8, size=(40, 40), seed=3, ext=".webp")
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def ingest_args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "stimuli",
        "ingest",
        "--real",
        root / "real",
        "--model",
        f"gan={root / 'gan'}",
        "--model",
        f"diffusion={root / 'diffusion'}",
        "--practice",
        "2",
        "--catch",
        "3",
        "--out",
        out,
        *extra,
    ]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_ingest_writes_manifest_and_clean_images(sources):
    out = sources / "stim"
    result = run(*ingest_args(sources, out))
    assert result.exit_code == 0, result.output
    assert "gan" in result.output and "diffusion" in result.output

    with open(out / "manifest.csv", newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == MANIFEST_COLUMNS
    rows = read_manifest(out)
    # Default size: the smallest side of the real images (48x40 -> 40).
    assert {(r["width"], r["height"]) for r in rows} == {("40", "40")}
    assert len(rows) == 12 + 8 + 8 + 3
    for row in rows:
        data = (out / "images" / f"{row['sha256']}.png").read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert row["image_id"] == row["sha256"][:16]
        with Image.open(out / "images" / f"{row['sha256']}.png") as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (40, 40))
    assert {r["original_path"] for r in rows if r["source"] == "real"} >= {
        f"{sources / 'real'}/sub/photo.jpg",
        f"{sources / 'real'}/scan.tif",
    }
    assert audit(out) == []


def test_roles_practice_pool_and_catch(sources):
    out = sources / "stim"
    report = ingest(
        sources / "real",
        {"gan": sources / "gan", "diffusion": sources / "diffusion"},
        out,
        practice=2,
        catch=3,
    )
    rows = report.rows
    count = {(r["source"], r["model"], r["role"]): 0 for r in rows}
    for r in rows:
        count[(r["source"], r["model"], r["role"])] += 1
    assert count[("real", "", "practice")] == 2 and count[("real", "", "main")] == 10
    # Practice fakes come from the models in turn: 2 fakes, one from each model.
    assert count[("fake", "diffusion", "practice")] == 1 and count[("fake", "gan", "practice")] == 1
    assert count[("fake", "", "catch")] == 3
    practice = {r["sha256"] for r in rows if r["role"] == "practice"}
    main = {r["sha256"] for r in rows if r["role"] == "main"}
    assert not practice & main
    catch_sources = {r["original_path"] for r in rows if r["role"] == "catch"}
    main_real = {r["original_path"] for r in rows if r["role"] == "main" and r["source"] == "real"}
    assert catch_sources <= main_real


def test_catch_images_are_unmistakably_different_from_their_source(sources):
    report = ingest(sources / "real", {"gan": sources / "gan"}, sources / "stim", catch=3)
    by_path = {(r["original_path"], r["role"]): r["sha256"] for r in report.rows}
    for (path, role), sha in by_path.items():
        if role != "catch":
            continue
        src = np.asarray(Image.open(sources / "stim" / "images" / f"{by_path[(path, 'main')]}.png"))
        catch = np.asarray(Image.open(sources / "stim" / "images" / f"{sha}.png"))
        assert catch.shape == src.shape
        assert np.abs(catch.astype(int) - src).mean() > 40
        # Flat blocks: far fewer distinct colours than a photograph.
        assert len(np.unique(catch.reshape(-1, 3), axis=0)) <= 64


def test_rerun_is_byte_identical_and_workers_do_not_matter(sources):
    first, second = sources / "a", sources / "b"
    ingest(sources / "real", {"gan": sources / "gan"}, first, workers=1, catch=2)
    before = folder_bytes(first)
    ingest(sources / "real", {"gan": sources / "gan"}, first, workers=2, catch=2)
    assert folder_bytes(first) == before
    ingest(sources / "real", {"gan": sources / "gan"}, second, workers=2, catch=2)
    assert folder_bytes(second) == before


def test_duplicates_are_reported_and_kept_once(sources):
    dup = (sources / "real" / "img_003.png").read_bytes()
    (sources / "gan" / "copy_of_real.png").write_bytes(dup)
    (sources / "real" / "again.png").write_bytes(dup)
    result = run(*ingest_args(sources, sources / "stim"))
    assert result.exit_code == 0, result.output
    assert "2 exact duplicate(s)" in result.output
    rows = read_manifest(sources / "stim")
    assert len({r["sha256"] for r in rows}) == len(rows)
    with open(sources / "stim" / "duplicates.csv", newline="") as f:
        dups = list(csv.DictReader(f))
    assert {d["dropped_path"].rsplit("/", 1)[1] for d in dups} == {
        "img_003.png",
        "copy_of_real.png",
    }
    assert all(d["kept_path"].endswith("real/again.png") for d in dups)


def test_explicit_size_and_a_second_dataset_in_the_same_folder(sources):
    out = sources / "stim"
    ingest(sources / "real", {"gan": sources / "gan"}, out, dataset="faces", size=32, catch=2)
    ingest(
        sources / "diffusion",
        {"gan": sources / "gan"},
        out,
        dataset="other",
        size=24,
        practice=1,
        catch=1,
    )
    rows = read_manifest(out)
    assert {(r["dataset"], r["width"]) for r in rows} == {("faces", "32"), ("other", "24")}
    assert audit(out) == []
    # Re-ingesting one dataset replaces its rows and keeps the other's, and the user's files.
    (out / "notes.txt").write_text("mine")
    ingest(sources / "real", {"gan": sources / "gan"}, out, dataset="faces", size=36, catch=2)
    rows = read_manifest(out)
    assert {(r["dataset"], r["width"]) for r in rows} == {("faces", "36"), ("other", "24")}
    assert len(list((out / "images").iterdir())) == len(rows)
    assert (out / "notes.txt").read_text() == "mine"
    assert audit(out) == []


def bad_input_cases(root: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (CLI arguments, words the one-line error must contain)."""
    good = (root / "real" / "img_000.png").read_bytes()
    (root / "empty").mkdir()
    make_folder(root / "tiny", 3, size=(20, 20), seed=7)
    (root / "with_text").mkdir()
    make_folder(root / "with_text", 3, seed=8)
    (root / "with_text" / "notes.txt").write_text("not an image")
    cases = {}
    for seed, (name, data, words) in enumerate(
        [
            ("zero", b"", "empty (0 bytes)"),
            ("garbage", b"this is not a png", "not an image"),
            ("truncated", good[: len(good) // 2], "truncated"),
            ("bomb", with_header_size(good, 40000, 40000), "decompression bomb"),
        ],
        start=10,
    ):
        folder = make_folder(root / name, 3, seed=seed)
        (folder / f"{name}.png").write_bytes(data)
        cases[name] = (["--model", f"m={folder}"], words)
    cases["missing"] = (["--model", f"m={root / 'nowhere'}"], "folder not found")
    cases["empty"] = (["--model", f"m={root / 'empty'}"], "no files found")
    cases["not-image"] = (["--model", f"m={root / 'with_text'}"], "notes.txt: not an image file")
    cases["smaller"] = (["--model", f"m={root / 'tiny'}"], "smaller than the target size 40")
    cases["dup-name"] = (
        ["--model", f"gan={root / 'gan'}", "--model", f"gan={root / 'diffusion'}"],
        "given twice",
    )
    cases["bad-model-arg"] = (["--model", "gan"], "NAME=DIR")
    cases["same-folder"] = (["--model", f"m={root / 'real'}"], "overlap")
    return cases


def test_every_bad_input_gives_one_line_exit_2_and_no_output(sources):
    out = sources / "stim"
    for name, (models, words) in bad_input_cases(sources).items():
        result = run("stimuli", "ingest", "--real", sources / "real", *models, "--out", out)
        assert result.exit_code == 2, (name, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), (name, result.output)
        assert words in lines[0], (name, lines[0])
        assert "Traceback" not in result.output
        assert not out.exists(), name
        assert not [p for p in sources.iterdir() if p.name.startswith(".stim")], name


def test_output_inside_an_input_folder_is_refused(sources):
    result = run(*ingest_args(sources, sources / "real" / "stim"))
    assert result.exit_code == 2
    assert "is inside input folder" in result.output
    assert not (sources / "real" / "stim").exists()
    result = run(
        "stimuli",
        "ingest",
        "--real",
        sources / "real",
        "--model",
        f"gan={sources / 'gan'}",
        "--out",
        sources,
    )
    assert result.exit_code == 2 and "inside the output folder" in result.output


def test_a_failed_rerun_keeps_the_previous_output(sources):
    out = sources / "stim"
    assert run(*ingest_args(sources, out)).exit_code == 0
    before = folder_bytes(out)
    (sources / "gan" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result = run(*ingest_args(sources, out))
    assert result.exit_code == 2 and "broken.png" in result.output
    assert folder_bytes(out) == before


def test_a_non_empty_folder_that_is_not_a_stimulus_folder_is_not_overwritten(sources):
    out = sources / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    result = run(*ingest_args(sources, out))
    assert result.exit_code == 2 and "not empty" in result.output
    assert (out / "thesis.tex").read_text() == "precious"


def test_skip_bad_lists_every_skipped_file(sources):
    cases = bad_input_cases(sources)
    models = [
        *cases["zero"][0],
        *cases["garbage"][0][:1],
        cases["garbage"][0][1].replace("m=", "g="),
        *cases["truncated"][0][:1],
        cases["truncated"][0][1].replace("m=", "t="),
        "--model",
        f"w={sources / 'with_text'}",
        "--model",
        f"s={sources / 'tiny'}",
        "--model",
        f"gan={sources / 'gan'}",
    ]
    save(sources / "tiny" / "big_enough.png", pattern(40, 40, seed=77))
    save(sources / "tiny" / "big_enough_too.png", pattern(40, 40, seed=78))
    result = run(
        "stimuli",
        "ingest",
        "--real",
        sources / "real",
        *models,
        "--skip-bad",
        "--catch",
        "2",
        "--out",
        sources / "stim",
    )
    assert result.exit_code == 0, result.output
    with open(sources / "stim" / "skipped.csv", newline="") as f:
        skipped = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}
    assert set(skipped) == {
        "zero.png",
        "garbage.png",
        "truncated.png",
        "notes.txt",
        "img_000.png",
        "img_001.png",
        "img_002.png",
    }
    assert "6 bad file(s) skipped" not in result.output and "7 bad file(s) skipped" in result.output
    assert audit(sources / "stim") == []


def test_skip_bad_still_fails_when_a_folder_has_nothing_usable(sources):
    result = run(
        "stimuli",
        "ingest",
        "--real",
        sources / "real",
        "--model",
        f"s={make_folder(sources / 'tiny', 2, size=(10, 10))}",
        "--skip-bad",
        "--out",
        sources / "stim",
    )
    assert result.exit_code == 2 and "no usable images left" in result.output
    assert not (sources / "stim").exists()


def test_library_raises_percept_error(sources):
    with pytest.raises(PerceptError, match="folder not found"):
        ingest(sources / "nope", {"gan": sources / "gan"}, sources / "stim")
    with pytest.raises(PerceptError, match="model name"):
        ingest(sources / "real", {"has space": sources / "gan"}, sources / "stim")


def test_real_entry_point_prints_no_traceback(sources):
    percept = Path(sys.executable).with_name("percept")
    proc = subprocess.run(
        [
            percept,
            "stimuli",
            "ingest",
            "--real",
            sources / "nowhere",
            "--model",
            f"gan={sources / 'gan'}",
            "--out",
            sources / "stim",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"Error: {sources / 'nowhere'}: folder not found; check the path"
    ]


# --- Symbolic links: resolved, kept inside their input folder, never skipped silently --------


def linked_sources(sources: Path) -> Path:
    """gan/ with a link to a file inside it, a linked folder inside it, a link out of it
    (to a real image), a broken link and a link to a folder above it."""
    gan = sources / "gan"
    (gan / "inner").mkdir()
    save(gan / "inner" / "deep.png", pattern(56, 56, seed=500))
    (gan / "linked-inner").symlink_to(gan / "inner", target_is_directory=True)
    save(sources / "kept-aside" / "aside.png", pattern(56, 56, seed=501))
    (gan / "aside-link.png").symlink_to(sources / "kept-aside" / "aside.png")
    (gan / "real-link.png").symlink_to(sources / "real" / "img_000.png")
    (gan / "same-link.png").symlink_to(gan / "img_000.png")
    (gan / "broken.png").symlink_to(sources / "nowhere.png")
    (gan / "inner" / "loop").symlink_to(gan, target_is_directory=True)
    return sources


def test_links_leaving_the_input_folder_or_broken_stop_ingest(sources):
    linked_sources(sources)
    result = run(*ingest_args(sources, sources / "stim"))
    assert result.exit_code == 2
    # The first refused link, and how many more: never a traceback, never silence.
    assert "aside-link.png: symbolic link to" in result.output
    assert "outside the input folder" in result.output and "4 more bad file(s)" in result.output
    assert not (sources / "stim").exists()


def test_skip_bad_lists_every_refused_link_and_follows_the_others(sources):
    linked_sources(sources)
    result = run(*ingest_args(sources, sources / "stim", "--skip-bad"))
    assert result.exit_code == 0, result.output
    with open(sources / "stim" / "skipped.csv", newline="") as f:
        skipped = {r["path"].split("/gan/")[-1]: r["reason"] for r in csv.DictReader(f)}
    # The loop shows twice: under inner/ and under the link to it.
    refused = {"aside-link.png", "real-link.png", "broken.png", "inner/loop", "linked-inner/loop"}
    assert set(skipped) == refused
    assert skipped["broken.png"].startswith("broken symbolic link")
    assert "outside the input folder" in skipped["real-link.png"]
    assert "loop" in skipped["inner/loop"]
    rows = read_manifest(sources / "stim")
    paths = {r["original_path"].split("/gan/")[-1] for r in rows if r["model"] == "gan"}
    # The link inside the folder and the linked folder are followed: their content is the
    # same as files ingested already, so it shows up as duplicates, not as silence.
    assert "inner/deep.png" in paths
    with open(sources / "stim" / "duplicates.csv", newline="") as f:
        dropped = {r["dropped_path"].split("/gan/")[-1] for r in csv.DictReader(f)}
    assert {"same-link.png", "linked-inner/deep.png"} <= dropped
    assert audit(sources / "stim") == []


def test_a_linked_input_folder_is_read(sources):
    (sources / "gan-link").symlink_to(sources / "gan", target_is_directory=True)
    args = ingest_args(sources, sources / "stim")
    args[args.index(f"gan={sources / 'gan'}")] = f"gan={sources / 'gan-link'}"
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert sum(r["model"] == "gan" for r in read_manifest(sources / "stim")) == 8
