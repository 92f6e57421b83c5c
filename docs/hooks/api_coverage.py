"""MkDocs hook: the build fails when api.md leaves out a name of `genai.__all__`.

`genai.__all__` is read from the source with `ast` (no import of torch), so the check costs
nothing; mkdocstrings then fails the strict build on a name that does not resolve.
"""

import ast
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

INIT = Path(__file__).resolve().parents[2] / "src" / "genai" / "__init__.py"


def public_names() -> list[str]:
    """The names listed in `genai.__all__`, read from `src/genai/__init__.py`."""
    for node in ast.parse(INIT.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [ast.literal_eval(e) for e in node.value.elts]
    raise PluginError(f"{INIT}: no __all__ list")


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    if page.file.src_uri == "api.md":
        documented = set(re.findall(r"^::: genai\.(\w+)\s*$", markdown, flags=re.MULTILINE))
        missing = [name for name in public_names() if name not in documented]
        if missing:
            raise PluginError(f"docs/api.md lacks '::: genai.NAME' for: {', '.join(missing)}")
    return markdown
