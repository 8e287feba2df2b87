"""The package: public names load lazily, the pure parts import without PyTorch Lightning, the layout holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves_and_explain_is_the_function():
    import lightning_selrel.explain  # the submodule of the same name must not hide the function

    for name in lightning_selrel.__all__:
        assert getattr(lightning_selrel, name) is not None, name
    assert callable(lightning_selrel.explain) and lightning_selrel.explain.__module__ == "lightning_selrel.explain"
    from lightning_selrel import explain

    assert explain is lightning_selrel.explain


def test_the_pure_parts_import_without_lightning_or_captum():
    """One fresh interpreter for all of them: what an import loads only shows in a new process."""
    code = (
        "import sys\n"
        "import lightning_selrel.selective, lightning_selrel.metrics, lightning_selrel.flow, lightning_selrel.tags\n"
        "heavy = [m for m in ('pytorch_lightning', 'captum', 'tensorboard') if m in sys.modules]\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_selective_imports_nothing_of_the_package():
    source = (REPO / "lightning_selrel" / "selective.py").read_text()
    assert "from ." not in source and "import lightning_selrel" not in source
