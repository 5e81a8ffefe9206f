"""Importing edgeq changes nothing in the host process: no sys.modules entries, no environment
variables, no PIL limit, no matplotlib backend. Even using the image reader and the report's
chart leaves the host's own PIL and matplotlib settings as they were."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MODULES = ["edgeq", "edgeq.compile", "edgeq.quantization.pipeline", "edgeq.quantization.ptq",
           "edgeq.quantization.search", "edgeq.quantization.fallback", "edgeq.quantization.nncf_adapter",
           "edgeq.quantization.isolated", "edgeq.sources", "edgeq.data", "edgeq.data.images", "edgeq.report.html",
           "edgeq.jobs.runner", "edgeq.jobs.worker", "edgeq.store.bundle", "edgeq.runtime.registry", "edgeq.cli"]

SCRIPT = r"""
import importlib, io, json, os, sys
import matplotlib
import PIL.Image

PIL.Image.MAX_IMAGE_PIXELS = 1_234_567  # the host's own settings
matplotlib.use("svg")

def state():
    return {"none_modules": sorted(k for k, v in sys.modules.items() if v is None),
            "telemetry_blocked": "openvino_telemetry" in sys.modules and sys.modules["openvino_telemetry"] is None,
            "environ": dict(os.environ), "pil_limit": PIL.Image.MAX_IMAGE_PIXELS,
            "backend": dict.__getitem__(matplotlib.rcParams, "backend"), "pyplot": "matplotlib.pyplot" in sys.modules}

before = state()
for name in sys.argv[1:]:
    importlib.import_module(name)
imported = state()

from edgeq.data.images import preprocess_image
from edgeq.report.html import _sqnr_chart
from edgeq.sources.spec import Preprocess

png = io.BytesIO()
PIL.Image.new("RGB", (40, 30), (200, 10, 10)).save(png, format="PNG")
pixels = preprocess_image(png.getvalue(), Preprocess(size=(16, 16), channels=3, mean=(0.0,) * 3, std=(1.0,) * 3), "red.png")
chart = _sqnr_chart({"blocks.0.fc1": 12.5, "blocks.0.fc2": 31.0})
used = state()
print(json.dumps({"before": before, "imported": imported, "used": used, "pixels": pixels.shape, "chart": len(chart)}))
"""


def test_importing_and_using_edgeq_leaves_the_host_process_as_it_was() -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT, *MODULES], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    before = result["before"]
    assert before["pil_limit"] == 1_234_567 and before["backend"] == "svg" and not before["telemetry_blocked"]
    assert result["imported"] == before
    assert result["used"] == before
    assert result["pixels"] == [3, 16, 16] and result["chart"] > 1000  # both really ran


def test_an_image_over_the_pixel_cap_is_refused_without_touching_pil(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io

    import PIL.Image
    import pytest

    from edgeq.data import images
    from edgeq.errors import InvalidArgument
    from edgeq.sources.spec import Preprocess

    png = io.BytesIO()
    PIL.Image.new("L", (50, 40)).save(png, format="PNG")
    host_limit = PIL.Image.MAX_IMAGE_PIXELS
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1999)
    with pytest.raises(InvalidArgument, match="image big.png: 50x40 pixels is more than the 1,999 edgeq decodes"):
        images.preprocess_image(png.getvalue(), Preprocess(size=(8, 8), channels=1, mean=(0.0,), std=(1.0,)), "big.png")
    assert PIL.Image.MAX_IMAGE_PIXELS == host_limit
