"""The unified ``lightning`` package (``lightning.pytorch``) runs the monitor, the mitigation, the classifier and the
command line, in a process of its own (the two namespaces never mix in one process); the rest of the suite runs on
``pytorch_lightning``. Skipped where ``lightning`` is not installed (the test extras install it)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_selrel.metrics import tags

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("lightning") is None, reason="pip install lightning (in the test extras)")
def test_a_lightning_pytorch_user_trains_with_the_monitor_and_the_cli(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LIGHTNING_SELREL_LIGHTNING"}  # chosen by what is imported
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, str(HERE / "lightning_package_run.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    found = json.loads(line.removeprefix("RESULT "))
    assert found["package"] == "lightning.pytorch" and not found["pytorch_lightning_imported"]
    assert tags.method_tag("dtd", "spatial_bias") in found["metrics"]
    assert tags.behaviour_tag("acc_frozen") in found["metrics"]
    assert found["events"], "Lightning's TensorBoardLogger got the monitor's events"
    assert found["cli_trainer"].startswith("lightning.pytorch") and found["cli_finished"]
