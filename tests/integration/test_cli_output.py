"""`edgeq quantize` into a pipe: a plain line per stage, none of the libraries' noise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from edgeq.cli.progress import plain_progress
from edgeq.quantization.events import ProgressEvent
from tests.integration.server_process import ROOT


def test_plain_progress_writes_one_line_per_stage(tmp_path: Path) -> None:
    with open(tmp_path / "out", "w") as stream:
        sink = plain_progress(stream)
        for stage, message in (("import", "a"), ("import", "b"), ("quantize", "c"), ("done", "d")):
            sink(ProgressEvent(stage, 0.5, message, {}))
    assert (tmp_path / "out").read_text().splitlines() == ["import    a", "quantize  c", "done      d"]


def test_quantize_output_in_a_pipe_is_plain_and_quiet(fmnist_npz: dict[str, Path], tmp_path: Path) -> None:
    data = np.load(fmnist_npz["calibration"])
    np.savez(tmp_path / "calib.npz", inputs=data["inputs"][:48])  # fewer than NNCF's subset size of 300
    run = subprocess.run([sys.executable, "-m", "edgeq.cli", "quantize", "--model", "timm:edgeq_vit_fmnist",
                          "--calibration", str(tmp_path / "calib.npz"), "--store", str(tmp_path / "store"),
                          "--name", "v", "--speed-seconds", "0", "--sensitivity-samples", "1", "--max-drop", "0.5"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    lines = run.stdout.splitlines()
    for stage in ("import", "data", "reference", "quantize", "accuracy", "publish", "done"):
        assert any(line.startswith(f"{stage} ") for line in lines), (stage, run.stdout)
    for noise in ("TracerWarning", "FutureWarning", "No CUDA runtime", "smaller than the requested subset size",
                  "Traceback"):
        assert noise not in output, (noise, output)
    assert not any("…" in line or line.startswith(("Statistics", "Applying")) for line in lines), run.stdout  # NNCF's bars
