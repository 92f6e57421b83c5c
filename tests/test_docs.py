"""The docs stay true: every public name documents its arguments, every code block marked
runnable runs, and the quickstart notebook executes without an error.

A code block in README.md or docs/*.md runs in this test when the line before its opening fence
is ``<!-- test: run -->``. The blocks of one page run in order in one namespace (like a
notebook), in a temporary directory, with ``GENAI_QUICK=1`` in the environment: blocks that
train read it themselves and train for a few steps only.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import genai

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_MARKER = "<!-- test: run -->"
SECTION = re.compile(r"^(\s*)(Args|Arguments|Attributes|Parameters):\s*$")


def documented_names(doc: str) -> set[str]:
    """Names listed in the Google-style Args/Attributes sections of ``doc``."""
    names: set[str] = set()
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        header = SECTION.match(line)
        if not header:
            continue
        indent = len(header.group(1))
        item_indent = None
        for entry in lines[i + 1 :]:
            if not entry.strip():
                continue
            width = len(entry) - len(entry.lstrip())
            if width <= indent:
                break
            item_indent = item_indent or width
            item = re.match(r"\s*\**(\w+)\s*(\([^)]*\))?\s*:", entry)
            if width == item_indent and item:
                names.add(item.group(1))
    return names


def required_names(obj) -> tuple[set[str], str]:
    """The argument names ``obj``'s docstring must list, and the docstring to look in."""
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj):
            # a field inherited from a config base class is documented there, once
            docs = [inspect.getdoc(c) or "" for c in obj.__mro__ if dataclasses.is_dataclass(c)]
            fields = {f.name for f in dataclasses.fields(obj) if f.init}
            return fields, "\n".join(docs)
        if issubclass(obj, BaseException) and not inspect.isfunction(obj.__init__):
            return set(), inspect.getdoc(obj)  # the builtin constructor: a message
        doc = inspect.getdoc(obj) + "\n" + (inspect.getdoc(obj.__init__) or "")
        signature = inspect.signature(obj)
    else:
        doc, signature = inspect.getdoc(obj), inspect.signature(obj)
    params = {
        name
        for name, p in signature.parameters.items()
        if name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    return params, doc


PUBLIC = [name for name in genai.__all__ if name != "__version__"]


SAME_ARGUMENTS = re.compile(r"Arguments as in :func:`(?:genai\.)?(\w+)`")


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_documents_its_arguments(name):
    obj = getattr(genai, name)
    required, doc = required_names(obj)
    assert doc and doc.strip(), f"genai.{name} has no docstring"
    documented = documented_names(doc)
    # "Arguments as in :func:`generate_text`": one list of arguments, documented once
    for other in SAME_ARGUMENTS.findall(doc):
        documented |= documented_names(inspect.getdoc(getattr(genai, other)))
    missing = sorted(required - documented)
    assert not missing, f"genai.{name}: its docstring's Args/Attributes lack {missing}"


def test_documented_names_reads_google_sections():
    doc = """Summary.

    Args:
        n: how many.
        labels (Tensor): ``(N,)`` class indices,
            continued: not a name.
        **kwargs: passed on.

    Returns:
        nothing: not an argument.
    """
    assert documented_names(inspect.cleandoc(doc)) == {"n", "labels", "kwargs"}


def test_api_reference_lists_every_public_name():
    api = (ROOT / "docs" / "api.md").read_text()
    listed = set(re.findall(r"^::: genai\.(\w+)\s*$", api, flags=re.MULTILINE))
    assert set(genai.__all__) <= listed, sorted(set(genai.__all__) - listed)


def runnable_blocks(page: Path) -> list[str]:
    """The code blocks of ``page`` marked runnable, in order."""
    lines = page.read_text().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() == RUN_MARKER:
            fence = lines[i + 1]
            assert fence.startswith("```python"), (
                f"{page.name}:{i + 2}: marker not before ```python"
            )
            end = lines.index("```", i + 2)
            blocks.append("\n".join(lines[i + 2 : end]))
    return blocks


RUNNABLE = [page for page in PAGES if runnable_blocks(page)]


def test_the_marked_pages_are_found():
    assert {p.name for p in RUNNABLE} >= {"README.md", "quickstart.md"}


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.name)
def test_runnable_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.setenv("GENAI_QUICK", "1")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for n, block in enumerate(runnable_blocks(page)):
        code = compile(block, f"{page.name} (runnable block {n + 1})", "exec")
        exec(code, namespace)  # noqa: S102 - the docs' own code, as a reader would run it


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert not any(cell.outputs for cell in code_cells), "commit the notebook without outputs"
    monkeypatch.setenv("GENAI_QUICK", "1")
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the cell that failed
    pictures = [
        cell
        for cell in code_cells
        if "genai.show(" in cell.source
        and any("image/png" in out.get("data", {}) for out in cell.outputs)
    ]
    assert len(pictures) == sum("genai.show(" in c.source for c in code_cells) == 4
    text = "".join(out.get("text", "") for cell in code_cells for out in cell.outputs)
    assert "identical samples: True" in text
    assert (tmp_path / "runs" / "quickstart-gpt" / "model.safetensors").is_file()


# The site check of `make docs-build`, as the Makefile writes it: the test runs that same command
# (with the venv's mkdocs and a temporary --site-dir) on the real docs and on broken copies, so a
# check that cannot fail (`--quiet` hid the warnings that `--strict` counts) fails here.
MAKEFILE = (ROOT / "Makefile").read_text()


def docs_check_command(site_dir: Path) -> list[str]:
    """The Makefile's `docs-build` recipe, with ``python -m mkdocs`` and ``site_dir``."""
    recipe = re.search(r"^docs-build:.*\n((?:\t.*\n)+)", MAKEFILE, flags=re.MULTILINE)
    assert recipe, "Makefile: no docs-build recipe"
    (line,) = [cmd for cmd in recipe.group(1).split("\n") if "mkdocs build" in cmd]
    args = shlex.split(line.strip())
    assert args[:2] == ["$(VENV)/bin/mkdocs", "build"], line
    args = [sys.executable, "-m", "mkdocs", *args[1:]]
    args[args.index("--site-dir") + 1] = str(site_dir)
    return args


def run_docs_check(root: Path, site_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(re.findall(r"^export (\w+) := (.*)$", MAKEFILE, flags=re.MULTILINE))
    return subprocess.run(
        docs_check_command(site_dir), cwd=root, env=env, capture_output=True, text=True
    )


def docs_copy(tmp_path: Path) -> Path:
    """mkdocs.yml and docs/ copied (symlinked pages resolved), src/ linked: a site to break."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", root)
    shutil.copytree(ROOT / "docs", root / "docs", ignore=shutil.ignore_patterns("runs"))
    (root / "src").symlink_to(ROOT / "src", target_is_directory=True)
    return root


def test_docs_check_counts_every_warning():
    args = docs_check_command(Path("site"))
    assert "--strict" in args, "mkdocs build without --strict passes with warnings"
    assert not {"-q", "--quiet"} & set(args), "--quiet drops the warnings --strict counts"


def test_docs_check_passes_on_the_docs(tmp_path):
    result = run_docs_check(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNING" not in result.stderr, result.stderr[-3000:]


def _broken_link(docs: Path):
    page = docs / "training.md"
    page.write_text(page.read_text() + "\nSee [nowhere](no-such-page.md).\n")


def _api_entry_left_out(docs: Path):
    page = docs / "api.md"
    text = page.read_text()
    first = re.search(r"^::: genai\.\w+\s*\n", text, flags=re.MULTILINE)
    page.write_text(text[: first.start()] + text[first.end() :])


@pytest.mark.parametrize(
    ("breakage", "message"),
    [(_broken_link, "no-such-page.md"), (_api_entry_left_out, "docs/api.md lacks")],
    ids=["broken-link", "api-entry-left-out"],
)
def test_docs_check_fails_on_a_broken_copy(tmp_path, breakage, message):
    root = docs_copy(tmp_path)
    breakage(root / "docs")
    result = run_docs_check(root, tmp_path / "site")
    assert result.returncode != 0, "the docs check passed on broken docs"
    assert message in result.stderr, result.stderr[-3000:]
