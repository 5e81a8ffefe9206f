"""mypy over the library and the transport (generated stubs excluded), as CI runs it."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_is_clean() -> None:
    assert importlib.util.find_spec("mypy") is not None, "mypy is not installed (the dev extra; bash .ci/setup)"
    run = subprocess.run([sys.executable, "-m", "mypy", "edgeq", "server", "--exclude", "server/gen"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:]
