"""The import contract in pyproject.toml ([tool.importlinter], run by `lint-imports`) can fail.

The real tree meets the contract once One house's layout lands (then `make test` runs
`lint-imports`); until then these tests hold the contract to a toy skeleton of the target
layout: clean, it passes; an import up the layers or of the root package, made inside a
function body (where genai's lazy imports live), fails it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import importlinter  # noqa: F401 - the dev extra installs it (PyPI import-linter): no skip
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def lint_imports(where: Path, config: Path) -> subprocess.CompletedProcess:
    """`lint-imports --config config` with ``where`` first on the import path."""
    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        [sys.executable, "-c", code, str(config), "--no-cache", "--no-logo"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
    )


def skeleton(tmp_path: Path) -> Path:
    """An empty package ``genai`` with one subpackage per layer of the contract."""
    package = tmp_path / "genai"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "version.py").write_text('__version__ = "0"\n')
    (layers,) = [c["layers"] for c in CONTRACT["contracts"] if c["type"] == "layers"]
    for line in layers:
        for name in line.split("|"):
            name = name.strip().strip("()")
            (package / name).mkdir()
            (package / name / "__init__.py").write_text("")
    return package


def test_import_linter_counts_imports_inside_function_bodies(tmp_path):
    """import-linter's own behaviour, on a package of two modules and a two-layer contract."""
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "__init__.py").write_text("")
    (tmp_path / "toy" / "high.py").write_text("import toy.low\n")
    (tmp_path / "toy" / "low.py").write_text("def f():\n    from toy import high\n")
    config = tmp_path / "toy.ini"
    config.write_text(
        "[importlinter]\nroot_package = toy\n\n"
        "[importlinter:contract:layers]\nname = layers\ntype = layers\n"
        "layers =\n    toy.high\n    toy.low\n"
    )
    result = lint_imports(tmp_path, config)
    assert result.returncode == 1, result.stdout
    assert "toy.low -> toy.high (l.2)" in result.stdout


def test_the_contract_holds_on_a_clean_skeleton(tmp_path):
    package = skeleton(tmp_path)
    (package / "core" / "files.py").write_text("def f():\n    import torch\n")  # extras: free
    (package / "training" / "engine.py").write_text("from genai.core import files\n")
    (package / "vae" / "train.py").write_text("def f():\n    from genai.training import engine\n")
    result = lint_imports(tmp_path, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "reported"),
    [
        ("core/files.py", "def f():\n    from genai.training import x\n", "genai.core.files ->"),
        ("gan/train.py", "def f():\n    from genai.vae import model\n", "genai.gan.train ->"),
        ("data/text.py", "def f():\n    from genai import load\n", "genai.data.text -> genai"),
        ("generation.py", "", "genai.generation"),  # a module on no layer
    ],
    ids=["up-a-layer", "sideways", "the-root-package", "undeclared-module"],
)
def test_the_contract_fails_on_a_function_body_import(tmp_path, module, source, reported):
    package = skeleton(tmp_path)
    (package / module).write_text(source)
    (package / "vae" / "model.py").write_text("")
    (package / "training" / "x.py").write_text("")
    result = lint_imports(tmp_path, ROOT / "pyproject.toml")
    assert result.returncode == 1, result.stdout
    assert reported in result.stdout, result.stdout
