"""The layers import one way (DESIGN.md, "Layout"); read from the source, so it cannot drift.

percept may import every layer. study_server, analysis and stimuli may import
percept.errors (the shared error type) and percept.rules (the rules answers are
judged by, which the server and the analysis share) and nothing else of percept; study_server
is the app only (no torch, no analysis, no HTTP client of itself); analysis knows
nothing of Flask or the server; stimuli imports none of the other layers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# For each layer, the imported module prefixes it must never use. `percept.errors` and
# `percept.rules` are the parts of percept every layer may import, so they are listed as
# allowed, not forbidden.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "study_server": (
        "percept",
        "analysis",
        "torch",
        "torchvision",
        "timm",
        "open_clip",
        "requests",
    ),
    "analysis": (
        "percept",
        "study_server",
        "flask",
        "flask_sqlalchemy",
        "flask_migrate",
        "werkzeug",
    ),
    "stimuli": ("percept", "study_server", "analysis", "flask", "torch"),
}
# percept.rules: the rules answers are judged by (invalid trials, pacing), which the server
# and the analysis must share and cannot import from each other; standard library only.
ALLOWED = ("percept.errors", "percept.rules")


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """Every module a file imports, anywhere in it (also inside functions), as absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = list(path.relative_to(root).parent.parts)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            # Named per alias: `from percept import errors` is percept.errors, which is allowed.
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _is_within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_violations(root: Path) -> list[str]:
    """Every import in root/<layer>/ that breaks the layer rules, as 'file:line: module'."""
    problems = []
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((root / layer).rglob("*.py")):
            for line, module in imported_modules(path, root):
                if any(_is_within(module, ok) for ok in ALLOWED):
                    continue
                if any(_is_within(module, bad) for bad in forbidden):
                    problems.append(f"{path.relative_to(root)}:{line}: imports {module}")
    return problems


def test_layers_import_one_way():
    assert layer_violations(ROOT) == []


@pytest.mark.parametrize(
    ("layer", "line"),
    [
        ("study_server", "from percept.simulate.crowd import simulate_crowd"),
        ("study_server", "import analysis.report"),
        ("study_server", "import torch"),
        ("study_server", "from percept import cli"),
        ("analysis", "from flask import Flask"),
        ("analysis", "from study_server.models import Study"),
        ("analysis", "from percept import demo"),
        ("stimuli", "from study_server import create_app"),
        ("stimuli", "from analysis.metrics import fd"),
        ("stimuli", "    from percept.simulate import crowd"),
    ],
)
def test_a_planted_forbidden_import_is_found(tmp_path, layer, line):
    for name in FORBIDDEN:
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "__init__.py").write_text("from percept.errors import PerceptError\n")
        (tmp_path / name / "sub" / "__init__.py").write_text("")
    assert layer_violations(tmp_path) == []
    body = f"def f():\n{line}\n" if line.startswith(" ") else f"{line}\n"
    (tmp_path / layer / "sub" / "planted.py").write_text(body)
    problems = layer_violations(tmp_path)
    assert len(problems) == 1 and problems[0].startswith(f"{layer}/sub/planted.py:"), problems


def test_the_shared_modules_import_only_the_standard_library():
    """percept.errors and percept.rules are imported by the server and the analysis alike:
    they may not pull in anything else (the server runs without numpy or pandas)."""
    for name in ("errors.py", "rules.py"):
        modules = {m.split(".")[0] for _, m in imported_modules(ROOT / "percept" / name, ROOT)}
        assert modules <= set(sys.stdlib_module_names) | {"__future__"}, (name, modules)


def test_the_old_cli_module_is_gone():
    done = subprocess.run(
        [sys.executable, "-c", "import study_server.cli"], capture_output=True, cwd=ROOT
    )
    assert done.returncode != 0


def test_no_file_in_the_app_is_a_client_of_the_server():
    clients = {"crowd.py", "loadtest.py", "server_process.py", "demo.py", "cli.py"}
    assert not clients & {p.name for p in (ROOT / "study_server").glob("*.py")}
