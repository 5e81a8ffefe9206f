"""What the CLI prints: `edgeq quantize` into a pipe (a plain line per stage, none of the libraries'
noise), and `edgeq models list`'s line per version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


def test_models_list_says_when_a_report_is_from_another_schema(fmnist_result, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A version whose report this edgeq cannot read (an older schema) is listed as such, not as a
    version that missed its budget."""
    from edgeq.cli import exits, main
    from tests.integration.server_process import copy_store

    store = copy_store(fmnist_result.path.parent.parent, tmp_path / "store")
    assert main(["models", "list", "--store", str(store)]) == exits.OK
    (line,) = capsys.readouterr().out.splitlines()
    accuracy = fmnist_result.report.accuracy
    assert line.startswith(f"vit-fmnist:{fmnist_result.version}  top1 {accuracy.float:.4f} -> {accuracy.final:.4f}  "
                           f"{'ok' if accuracy.met else 'BUDGET NOT MET'}  timm:edgeq_vit_fmnist")
    report = store / "vit-fmnist" / str(fmnist_result.version) / "edgeq.json"
    old = json.loads(report.read_text())
    del old["schema_version"]
    report.write_text(json.dumps(old))
    assert main(["models", "list", "--store", str(store)]) == exits.OK
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"vit-fmnist:{fmnist_result.version}  report unreadable by this edgeq") and "BUDGET" not in line
