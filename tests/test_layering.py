"""The layering rules of DESIGN.md section 6, checked by parsing imports (no module is run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "transformers", "diffusers", "accelerate", "sentence_transformers", "skia"}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at_top_level) for every import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top))
    return found


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _files("pipelines"), ids=str)
def test_pipelines_never_import_persona_or_gradio(path: Path) -> None:
    for module, _ in _imports(path):
        root = module.split(".")[0]
        assert root not in {"persona", "gradio", "fastrtc", "app"}, f"{path} imports {module}"


@pytest.mark.parametrize("path", _files("persona"), ids=str)
def test_persona_imports_only_the_conditioning_types(path: Path) -> None:
    for module, _ in _imports(path):
        if module.split(".")[0] == "pipelines":
            assert module == "pipelines.conditioning", f"{path} imports {module}"
        assert module.split(".")[0] not in {"gradio", "fastrtc", "app"}, f"{path} imports {module}"


@pytest.mark.parametrize(
    "path",
    _files("persona")
    + [
        ROOT / "pipelines" / "conditioning.py",
        ROOT / "pipelines" / "base.py",
        ROOT / "pipelines" / "registry.py",
        ROOT / "pipelines" / "__main__.py",
        ROOT / "app.py",
    ],
    ids=str,
)
def test_heavy_libraries_are_imported_lazily(path: Path) -> None:
    for module, at_top in _imports(path):
        if module.split(".")[0] in HEAVY:
            assert not at_top, f"{path} imports {module} at module level; import it where used"
