"""The audit catches every way a file could tell real from fake besides its pixels."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from imagefiles import chunk, make_folder, pattern, with_chunk
from PIL import Image

from percept.cli import cli
from stimuli import audit, ingest
from stimuli.images import encode_png
from stimuli.manifest import MANIFEST_COLUMNS, read_manifest, write_csv


@pytest.fixture
def stimdir(tmp_path: Path) -> Path:
    make_folder(tmp_path / "real", 8, size=(40, 40), seed=1)
    make_folder(tmp_path / "gan", 6, size=(40, 40), seed=2)
    out = tmp_path / "stim"
    ingest(tmp_path / "real", {"gan": tmp_path / "gan"}, out, practice=1, catch=2, workers=1)
    assert audit(out) == []
    return out


def replace_image(stimdir: Path, index: int, data: bytes) -> str:
    """Swap one stimulus for other bytes, keeping the manifest consistent with the file name."""
    rows = read_manifest(stimdir)
    old = rows[index]["sha256"]
    new = hashlib.sha256(data).hexdigest()
    (stimdir / "images" / f"{old}.png").unlink()
    (stimdir / "images" / f"{new}.png").write_bytes(data)
    rows[index].update(sha256=new, image_id=new[:16])
    write_csv(stimdir / "manifest.csv", MANIFEST_COLUMNS, rows)
    return f"images/{new}.png"


def stimulus_bytes(stimdir: Path, index: int) -> bytes:
    return (stimdir / "images" / f"{read_manifest(stimdir)[index]['sha256']}.png").read_bytes()


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (b"tEXt", b"Software\x00StyleGAN2"),
        (b"iCCP", b"sRGB\x00\x00xyz"),
        (b"eXIf", b"MM\x00*"),
        (b"pHYs", b"\x00\x00\x0b\x13\x00\x00\x0b\x13\x01"),
    ],
)
def test_a_metadata_chunk_is_caught(stimdir, kind, payload):
    leaky = replace_image(stimdir, 3, with_chunk(stimulus_bytes(stimdir, 3), chunk(kind, payload)))
    problems = audit(stimdir)
    assert [p.path for p in problems] == [leaky]
    assert kind.decode() in problems[0].reason


def test_a_different_size_is_caught(stimdir):
    other = encode_png(Image.fromarray(pattern(30, 30, seed=5)))
    odd = replace_image(stimdir, 2, other)
    problems = audit(stimdir)
    assert [p.path for p in problems] == [odd]
    assert "30x30 px" in problems[0].reason and "40x40" in problems[0].reason


def test_a_jpeg_among_pngs_is_caught(stimdir):
    buffer = io.BytesIO()
    Image.fromarray(pattern(40, 40, seed=6)).save(buffer, format="JPEG")
    odd = replace_image(stimdir, 0, buffer.getvalue())
    problems = audit(stimdir)
    assert [p.path for p in problems] == [odd]
    assert "JPEG" in problems[0].reason


def test_a_palette_png_is_caught(stimdir):
    buffer = io.BytesIO()
    Image.fromarray(pattern(40, 40, seed=6)).quantize(8).save(buffer, format="PNG")
    odd = replace_image(stimdir, 1, buffer.getvalue())
    reasons = [p.reason for p in audit(stimdir) if p.path == odd]
    assert any("PLTE" in r for r in reasons)


def test_telling_file_names_and_stray_files_are_caught(stimdir):
    rows = read_manifest(stimdir)
    sha = rows[0]["sha256"]
    (stimdir / "images" / f"{sha}.png").rename(stimdir / "images" / "real_0001.png")
    problems = {p.path: p.reason for p in audit(stimdir)}
    assert "not listed in manifest.csv" in problems["images/real_0001.png"]
    assert "missing" in problems[f"images/{sha}.png"]


def test_content_that_does_not_match_its_name_is_caught(stimdir):
    rows = read_manifest(stimdir)
    path = stimdir / "images" / f"{rows[0]['sha256']}.png"
    path.write_bytes(encode_png(Image.fromarray(pattern(40, 40, seed=9))))
    problems = audit(stimdir)
    assert [p.path for p in problems] == [f"images/{rows[0]['sha256']}.png"]
    assert "does not match its sha256" in problems[0].reason


def test_trailing_bytes_and_manifest_mistakes_are_caught(stimdir):
    hidden = replace_image(stimdir, 4, stimulus_bytes(stimdir, 4) + b"label=fake")
    rows = read_manifest(stimdir)
    rows.append(dict(rows[0], role="practice"))
    rows[1]["model"] = "gan" if rows[1]["source"] == "real" else ""
    write_csv(stimdir / "manifest.csv", MANIFEST_COLUMNS, rows)
    problems = audit(stimdir)
    reasons = " | ".join(str(p) for p in problems)
    assert f"{hidden}: is not a clean PNG file" in reasons
    assert "listed more than once" in reasons
    assert "model must be set for fake images" in reasons


def test_cli_lists_offending_files_and_fails(stimdir):
    leaky = replace_image(
        stimdir, 3, with_chunk(stimulus_bytes(stimdir, 3), chunk(b"tEXt", b"Comment\x00fake"))
    )
    result = CliRunner().invoke(cli, ["stimuli", "audit", str(stimdir)])
    assert result.exit_code == 2
    assert f"{leaky}: has tEXt chunk(s)" in result.output
    assert "audit found 1 problem(s)" in result.output


def test_cli_passes_a_clean_folder_and_explains_a_missing_manifest(stimdir, tmp_path):
    result = CliRunner().invoke(cli, ["stimuli", "audit", str(stimdir)])
    assert result.exit_code == 0 and "audit passed" in result.output
    result = CliRunner().invoke(cli, ["stimuli", "audit", str(tmp_path / "real")])
    assert result.exit_code == 2 and "no manifest.csv" in result.output


def test_manifest_with_a_missing_column_is_one_clear_error(stimdir):
    with open(stimdir / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    write_csv(stimdir / "manifest.csv", [c for c in MANIFEST_COLUMNS if c != "role"], rows)
    result = CliRunner().invoke(cli, ["stimuli", "audit", str(stimdir)])
    assert result.exit_code == 2 and "missing column(s) role" in result.output
