"""The package: public names load lazily, the pure parts import without PyTorch Lightning, imports run one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lightning_selrel"

#: The folders in the order data flows; a module may import from its own folder and the folders before it.
#: Top-level modules (files, _lazy, _compat, _lightning) are the foundation every folder may use.
LAYERS = ("data", "mitigation", "models", "relevance", "metrics", "monitor", "commands")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every lightning_selrel module ``path`` imports, at the top or inside a function (relative ones resolved).

    ``from package import module`` is an import of the module (its package's ``__init__`` runs first, as for any
    submodule); ``from module import name`` of the module."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(base)
    return {m for m in found if m.startswith("lightning_selrel")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path, set(modules)) if m in modules and m != name}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) + 1 if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else 0


def test_every_module_of_the_package_is_in_a_folder_or_is_the_foundation():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == {"__init__", "__main__", "_compat", "_lazy", "_lightning", "files"}, top
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(LAYERS)


def test_imports_run_one_way_without_circles():
    graph = _graph()
    upward = [
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if a not in ("lightning_selrel", "lightning_selrel.__main__") and _layer(b) > _layer(a)
    ]
    assert not upward, "imports against the flow (LAYERS): " + "; ".join(sorted(upward))

    # A circle: a module that reaches itself (depth-first search from every module).
    def reach(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*path, nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    circles = [" -> ".join(c) for m in graph if (c := reach(m))]
    assert not circles, "import circles: " + "; ".join(circles)


def test_the_graph_check_finds_a_circle_and_an_upward_import(tmp_path, monkeypatch):
    """The two checks above can fail: a fake package with both defects is caught."""
    fake = tmp_path / "lightning_selrel"
    (fake / "data").mkdir(parents=True)
    (fake / "models").mkdir()
    (fake / "data" / "a.py").write_text("from lightning_selrel.models.b import x\n")
    (fake / "models" / "b.py").write_text("from lightning_selrel.data import a\nx = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError, match="against the flow.*data.a -> lightning_selrel.models.b"):
        test_imports_run_one_way_without_circles()
    graph = _graph()
    assert "lightning_selrel.models.b" in graph["lightning_selrel.data.a"]
    assert "lightning_selrel.data.a" in graph["lightning_selrel.models.b"]


def test_every_public_name_resolves_and_explain_is_the_function():
    import lightning_selrel

    for name in lightning_selrel.__all__:
        assert getattr(lightning_selrel, name) is not None, name
    assert callable(lightning_selrel.explain)
    assert lightning_selrel.explain.__module__ == "lightning_selrel.relevance.methods"
    from lightning_selrel import explain

    assert explain is lightning_selrel.explain


@pytest.mark.parametrize("package", LAYERS)
def test_every_public_name_of_a_folder_resolves(package):
    import importlib

    module = importlib.import_module(f"lightning_selrel.{package}")
    for name in module.__all__:
        assert getattr(module, name) is not None, (package, name)


def test_the_pure_parts_import_without_lightning_or_captum():
    """One fresh interpreter for all of them: what an import loads only shows in a new process."""
    pure = (
        "lightning_selrel.files",
        "lightning_selrel.data.frames",
        "lightning_selrel.models.c3d",
        "lightning_selrel.models.resnet3d",
        "lightning_selrel.relevance.selective",
        "lightning_selrel.relevance.dtd",
        "lightning_selrel.metrics.functional",
        "lightning_selrel.metrics.modules",
        "lightning_selrel.metrics.flow",
        "lightning_selrel.metrics.tags",
    )
    code = (
        "import importlib, sys\n"
        f"for name in {pure!r}:\n"
        "    importlib.import_module(name)\n"
        "import lightning_selrel.metrics as m\n"
        "[getattr(m, n) for n in m.__all__]\n"
        "heavy = [m for m in ('pytorch_lightning', 'lightning', 'captum', 'tensorboard') if m in sys.modules]\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_selective_imports_nothing_of_the_package():
    source = (PACKAGE / "relevance" / "selective.py").read_text()
    assert "from ." not in source and "import lightning_selrel" not in source
