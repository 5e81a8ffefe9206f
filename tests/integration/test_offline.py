"""edgeq never phones home: a whole quantization job makes no DNS look-up and no connection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, sys
events = []
def hook(event, args):
    if event in ("socket.getaddrinfo", "socket.connect", "socket.gethostbyname"):
        events.append([event, repr(args)[:200]])
sys.addaudithook(hook)
import edgeq
if __name__ == "__main__":
    edgeq.quantize("timm:edgeq_vit_fmnist", calibration=sys.argv[1], store=sys.argv[2], name="quiet",
                   max_drop=0.5, speed_seconds=0, sensitivity_samples=1)
    print(json.dumps({"events": events, "telemetry_module": repr(sys.modules.get("openvino_telemetry"))}))
"""


def test_quantization_makes_no_network_calls(fmnist_npz: dict[str, Path], tmp_path: Path) -> None:
    script = tmp_path / "quiet.py"
    script.write_text(SCRIPT)
    env_free = subprocess.run([sys.executable, str(script), str(fmnist_npz["calibration"]), str(tmp_path / "s")],
                              capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                              cwd=Path(__file__).resolve().parents[2], timeout=600)
    assert env_free.returncode == 0, env_free.stderr[-2000:]
    result = json.loads(env_free.stdout.strip().splitlines()[-1])
    assert result["telemetry_module"] == "None", "openvino_telemetry was importable"
    outside = [e for e in result["events"] if "127.0.0.1" not in e[1] and "localhost" not in e[1]]
    assert outside == [], outside
