"""Deployment: the serve-only wheel in a fresh venv, and deploy/edge/install.sh into a temp root."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import grpc
import pytest

from edgeq.store.bundle import export_bundle
from edgeq.store.repository import ModelStore, VersionInfo

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deploy" / "edge" / "install.sh"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    return next(out.glob("edgeq-*.whl"))


@pytest.fixture(scope="module")
def bundle(fmnist_result, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    info = VersionInfo("vit-fmnist", fmnist_result.version, fmnist_result.path)
    return export_bundle(info, tmp_path_factory.mktemp("bundle") / "vit-fmnist-1.edgeq.tar")


@pytest.fixture(scope="module")
def edge_root(wheel: Path, bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("edge-root")
    run = subprocess.run(["bash", str(INSTALL), "--root", str(root), "--bundle", str(bundle), "--package", str(wheel),
                          "--no-systemd"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "smoke test passed" in run.stdout
    assert "imported vit-fmnist version 1 into" in run.stdout and "INT8 " in run.stdout  # measured on this CPU
    return root


def _python(root: Path) -> str:
    return str(root / "opt/edgeq/venv/bin/python")


def test_serve_only_install_has_no_torch_nncf_or_timm(edge_root: Path, tmp_path: Path) -> None:
    probe = subprocess.run([_python(edge_root), "-c", "import importlib.util, json; print(json.dumps("
                            "{m: importlib.util.find_spec(m) is not None for m in "
                            "['torch', 'nncf', 'timm', 'onnx', 'matplotlib', 'openvino', 'grpc', 'edgeq_server']}))"],
                           capture_output=True, text=True, check=True)
    present = json.loads(probe.stdout)
    assert present == {"torch": False, "nncf": False, "timm": False, "onnx": False, "matplotlib": False,
                       "openvino": True, "grpc": True, "edgeq_server": True}
    size = subprocess.run(["du", "-sm", str(edge_root / "opt/edgeq/venv")], capture_output=True, text=True).stdout.split()[0]
    (tmp_path / "venv-size.txt").write_text(size)
    print(f"serve-only venv: {size} MB")
    assert int(size) < 1500


def test_install_records_which_ir_this_cpu_serves(edge_root: Path) -> None:
    """The serve-only runtime (no NNCF, no quantization package) measured INT8 against float here."""
    from edgeq.compile import cpu_description

    info = ModelStore(edge_root / "var/lib/edgeq/models").get("vit-fmnist")
    choice = info.serve_choice()
    assert choice is not None and choice["measured"] is True and choice["ir"] == info.served_ir
    assert choice["int8_per_s"] > 0 and choice["float_per_s"] > 0
    assert choice["cpu_flags"] == cpu_description()["isa_flags"]


def test_serve_only_server_refuses_quantization_plainly(edge_root: Path, tmp_path: Path) -> None:
    from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb
    from edgeq_server.gen.edgeq.v1 import edgeq_pb2_grpc as pb_grpc
    from edgeq_server.launch import launch

    launched = launch([str(edge_root / "opt/edgeq/venv/bin/edgeq"), "serve", "--store",
                       str(edge_root / "var/lib/edgeq/models"), "--state-dir", str(tmp_path / "state"), "--port", "0",
                       "--http-port", "0"])
    server = launched.process
    try:
        with grpc.insecure_channel(f"127.0.0.1:{launched.port}") as channel:
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.QuantizationStub(channel).Submit(pb.JobSpec(target_name="x", model=pb.ModelSource(timm="t")))
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "edgeq[quantize]" in caught.value.details()
    finally:
        server.terminate()
        assert server.wait(30) == 0


def test_install_is_idempotent_and_refuses_tampered_bundles(edge_root: Path, bundle: Path, wheel: Path,
                                                           tmp_path: Path) -> None:
    store = edge_root / "var/lib/edgeq/models"
    again = subprocess.run(["bash", str(INSTALL), "--root", str(edge_root), "--bundle", str(bundle), "--package",
                            str(wheel), "--no-systemd", "--no-smoke"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert [v.version for v in ModelStore(store).versions("vit-fmnist")] == [1]
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(bundle) as source, tarfile.open(tampered, "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.endswith("model.bin"):
                data = bytes([data[0] ^ 1]) + data[1:]
            member.size = len(data)
            import io

            target.addfile(member, io.BytesIO(data))
    before = sorted(p.name for p in store.rglob("*"))
    refused = subprocess.run(["bash", str(INSTALL), "--root", str(edge_root), "--bundle", str(tampered), "--package",
                              str(wheel), "--no-systemd", "--no-smoke"], capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "does not match" in refused.stderr
    assert sorted(p.name for p in store.rglob("*")) == before


def test_dry_run_changes_nothing(bundle: Path, tmp_path: Path) -> None:
    run = subprocess.run(["bash", str(INSTALL), "--root", str(tmp_path / "root"), "--bundle", str(bundle), "--dry-run"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "+ " in run.stdout and "models import" in run.stdout and "edgeq-serve.service" in run.stdout
    assert not (tmp_path / "root").exists()


def test_systemd_unit_is_valid(edge_root: Path) -> None:
    unit = edge_root / "etc/systemd/system/edgeq-serve.service"
    text = unit.read_text()
    assert "User=edgeq" in text and "Restart=on-failure" in text and "ReadOnlyPaths=/var/lib/edgeq/models" in text
    assert shutil.which("systemd-analyze"), "systemd-analyze is not installed (apt-get install systemd)"
    run = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    problems = [line for line in (run.stdout + run.stderr).splitlines()
                if line.strip() and "edgeq/venv/bin/edgeq" not in line and "Failed to resolve" not in line
                and "Cannot add dependency" not in line and "User=" not in line and "not found" not in line]
    assert problems == [], problems
