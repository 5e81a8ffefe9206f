"""The serving machine decides between the INT8 and the float IR: a job keeps the float IR, a bundle
carries it, `edgeq models import` measures both here (or takes --choose / --no-measure) and records
the choice, and the server loads the chosen one. Real OpenVINO, the shipped Fashion-MNIST ViT."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeq
from edgeq.cli import exits, main
from edgeq.compile import compile_cpu, core, cpu_description
from edgeq.runtime.choice import NO_FLOAT
from edgeq.store import ModelStore, VersionInfo
from edgeq.store.bundle import export_bundle
from edgeq.store.repository import FLOAT_FILES, MANIFEST, STAGING, write_manifest
from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as edgeq_pb
from edgeq_server.gen.edgeq.v1 import edgeq_pb2_grpc as edgeq_pb_grpc
from edgeq_server.gen.inference import grpc_service_pb2 as pb
from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import fmnist_arrays
from tests.integration.server_process import ServerProcess

MODEL = "vit-fmnist"
FAST = ["--measure-seconds", "0.2"]


@pytest.fixture(scope="module")
def bundle(fmnist_result, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    info = VersionInfo(MODEL, fmnist_result.version, fmnist_result.path)
    return export_bundle(info, tmp_path_factory.mktemp("bundle") / "vit-fmnist.edgeq.tar")


def _rows(count: int = 16) -> np.ndarray:
    return fmnist_arrays()[0][:count]


def _run_ir(folder: Path, names: tuple[str, str], rows: np.ndarray, precision: str = "default") -> np.ndarray:
    model = core().read_model(str(folder / names[0]), str(folder / names[1]))
    return np.asarray(compile_cpu(model, precision=precision)({0: rows})[0])


def _rewrite(bundle: Path, out: Path, change: Any) -> Path:
    """A copy of `bundle` whose members pass through `change(name, data) -> data | None` (None drops it)."""
    with tarfile.open(bundle) as source, tarfile.open(out, "w") as target:
        for member in source.getmembers():
            data = change(member.name, source.extractfile(member).read())  # type: ignore[union-attr]
            if data is not None:
                member.size = len(data)
                target.addfile(member, io.BytesIO(data))
    return out


def _import(bundle: Path, store: Path, *flags: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["models", "import", str(bundle), "--store", str(store), *flags])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_job_keeps_the_float_ir_with_fp16_weights_matching_the_float_model(fmnist_result) -> None:  # type: ignore[no-untyped-def]
    from edgeq.quantization.speed import model_size_bytes
    from edgeq.sources import load_model

    folder = fmnist_result.path
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(FLOAT_FILES) <= set(manifest["files"])  # covered by the sha256 manifest, so by bundles too
    float_model = load_model("timm:edgeq_vit_fmnist").model
    rows = _rows(64)
    reference = np.asarray(compile_cpu(float_model, precision="f32")({0: rows})[0])
    stored = _run_ir(folder, FLOAT_FILES, rows, precision="f32")
    assert np.abs(stored - reference).max() < 1e-2 * np.abs(reference).max()  # FP16 weights: rounding only
    assert (stored.argmax(1) == reference.argmax(1)).all()
    assert (folder / FLOAT_FILES[1]).stat().st_size < 0.55 * model_size_bytes(float_model)  # FP16, not FP32
    # The CPU plugin runs the FP16-stored weights at its default float precision, as it runs the float model.
    compiled = compile_cpu(core().read_model(str(folder / FLOAT_FILES[0]), str(folder / FLOAT_FILES[1])))
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == cpu_description()["default_inference_precision"]


def test_no_float_ir_leaves_it_out(tmp_path: Path) -> None:
    inputs, labels = fmnist_arrays()
    np.savez(tmp_path / "calibration.npz", inputs=inputs[:48])
    result = edgeq.quantize("timm:edgeq_vit_fmnist", calibration=str(tmp_path / "calibration.npz"),
                            store=str(tmp_path / "store"), name="bare", max_drop=0.5, no_fallback=True,
                            speed_seconds=0, sensitivity_samples=1, subset_size=48, no_float_ir=True)
    assert sorted(json.loads((result.path / MANIFEST).read_text())["files"]) == [
        "edgeq.json", "model.bin", "model.xml", "report.html"]


def test_import_measures_both_irs_and_records_the_choice(bundle: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "edge"
    code, out, _ = _import(bundle, store, *FAST, capsys=capsys)
    assert code == exits.OK
    info = ModelStore(store).get(MODEL)
    choice = info.serve_choice()
    assert choice is not None and choice["measured"] is True
    assert choice["int8_per_s"] > 0 and choice["float_per_s"] > 0 and choice["speedup"] > 0
    assert choice["cpu_flags"] == cpu_description()["isa_flags"] and choice["cpu"] == cpu_description()["name"]
    gate = json.loads((info.path / "edgeq.json").read_text())["speed_gate"]["min_speedup"]
    assert choice["min_speedup"] == gate
    assert choice["speedup"] == pytest.approx(choice["int8_per_s"] / choice["float_per_s"], rel=1e-3)  # rates: 0.1/s
    assert choice["ir"] == ("int8" if choice["speedup"] >= gate else "float") == info.served_ir  # the gate's rule
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"imported {MODEL} version 1") and f"serves the {'INT8' if choice['ir'] == 'int8' else 'float'} IR" in line
    assert f"INT8 {choice['int8_per_s']:.0f}/s, float {choice['float_per_s']:.0f}/s" in line
    # `models list` says what is served and why
    assert main(["models", "list", "--store", str(store), "--json"]) == exits.OK
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["serves"]["ir"] == choice["ir"] and listed[0]["serves"]["why"] == choice["why"]
    # re-importing the same bundle measures nothing and keeps the choice
    code, out, _ = _import(bundle, store, *FAST, capsys=capsys)
    assert code == exits.OK and "(already there)" in out
    assert [v.version for v in ModelStore(store).versions(MODEL)] == [1]
    assert ModelStore(store).get(MODEL).serve_choice() == choice


def _serve_rows(store: Path, rows: np.ndarray, capsys: pytest.CaptureFixture[str]) -> tuple[np.ndarray, dict[str, str]]:
    """The server's answer for `rows`, and ModelConfig's parameters; checks that the server's Models.List
    (its stub and `edgeq models list --target`) names the same IR and reason."""
    server = ServerProcess(store).start()
    try:
        stub = pb_grpc.GRPCInferenceServiceStub(server.channel())
        request = pb.ModelInferRequest(model_name=MODEL)
        request.inputs.add(name="x", datatype="FP32", shape=list(rows.shape))
        request.raw_input_contents.append(np.ascontiguousarray(rows).tobytes())
        response = stub.ModelInfer(request)
        config = stub.ModelConfig(pb.ModelConfigRequest(name=MODEL)).config
        (listed,) = edgeq_pb_grpc.ModelsStub(server.channel()).List(edgeq_pb.ListModelsRequest()).models
        capsys.readouterr()
        assert main(["models", "list", "--target", server.target, "--json"]) == exits.OK
        remote = json.loads(capsys.readouterr().out)
    finally:
        assert server.stop() == 0
    served = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(list(response.outputs[0].shape))
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    (version,) = listed.versions
    assert version.served_ir == parameters["ir"] and version.ir_choice == parameters["ir_choice"]
    has_float = ModelStore(store).get(MODEL).has_float
    assert version.has_float_ir is has_float and version.loaded is True
    assert remote[0]["serves"] == {"ir": version.served_ir, "float_ir": has_float, "why": version.ir_choice}
    return served, parameters


def test_choose_float_makes_the_server_serve_the_float_ir(bundle: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "edge"
    code, out, _ = _import(bundle, store, "--choose", "float", capsys=capsys)
    assert code == exits.OK and "serves the float IR (chosen by hand (--choose float))" in out
    info = ModelStore(store).get(MODEL)
    assert info.served_ir == "float" and info.serve_choice()["measured"] is False  # type: ignore[index]
    rows = _rows(16)
    served, parameters = _serve_rows(store, rows, capsys)
    float_out = _run_ir(info.path, FLOAT_FILES, rows)
    int8_out = _run_ir(info.path, ("model.xml", "model.bin"), rows)
    np.testing.assert_allclose(served, float_out, rtol=0, atol=1e-5)
    assert np.abs(served - int8_out).max() > 1e-2
    assert parameters["ir"] == "float" and "--choose float" in parameters["ir_choice"]
    # --choose on the version already there re-records the choice; the server then loads INT8
    code, out, _ = _import(bundle, store, "--choose", "int8", capsys=capsys)
    assert code == exits.OK and "(already there)" in out and "serves the INT8 IR" in out
    assert ModelStore(store).get(MODEL).served_ir == "int8" and ModelStore(store).validate() == []
    served, parameters = _serve_rows(store, rows, capsys)
    np.testing.assert_allclose(served, int8_out, rtol=0, atol=1e-5)
    assert parameters["ir"] == "int8"


def test_no_measure_serves_int8_and_records_that_nothing_was_measured(bundle: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _import(bundle, tmp_path / "edge", "--no-measure", capsys=capsys)
    assert code == exits.OK and "serves the INT8 IR (not measured (--no-measure)" in out
    choice = ModelStore(tmp_path / "edge").get(MODEL).serve_choice()
    assert choice is not None and choice["ir"] == "int8" and choice["measured"] is False
    assert choice["int8_per_s"] is None and choice["float_per_s"] is None
    assert choice["cpu_flags"] == cpu_description()["isa_flags"]
    code, _, err = _import(bundle, tmp_path / "other", "--no-measure", "--choose", "float", capsys=capsys)
    assert code == exits.USAGE and "not both" in err


def test_tampered_float_weights_are_refused(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def flip(name: str, data: bytes) -> bytes:
        return bytes([data[0] ^ 1]) + data[1:] if name.endswith(FLOAT_FILES[1]) else data

    tampered = _rewrite(bundle, tmp_path / "tampered.tar", flip)
    code, _, err = _import(tampered, tmp_path / "edge", capsys=capsys)
    assert code == exits.USAGE and FLOAT_FILES[1] in err and "does not match the manifest" in err
    store = ModelStore(tmp_path / "edge")
    assert store.names() == [] and not any((tmp_path / "edge" / STAGING).iterdir())


def test_a_bundle_without_the_float_ir_imports_as_int8(bundle: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """As a bundle made before versions kept the float IR, or with --no-float-ir."""
    unpacked = tmp_path / "unpacked"
    with tarfile.open(bundle) as source:
        source.extractall(unpacked, filter="data")
    folder = next(unpacked.glob(f"{MODEL}/*"))
    for name in FLOAT_FILES:
        (folder / name).unlink()
    manifest = json.loads((folder / MANIFEST).read_text())
    write_manifest(folder, {k: v for k, v in manifest.items() if k not in ("files", "format")})
    old = tmp_path / "old.tar"
    with tarfile.open(old, "w") as archive:
        for item in sorted(folder.iterdir()):
            archive.add(item, arcname=f"{MODEL}/{folder.name}/{item.name}")
    code, _, err = _import(old, tmp_path / "edge", "--choose", "float", capsys=capsys)
    assert code == exits.USER_ERROR and NO_FLOAT in err and ModelStore(tmp_path / "edge").names() == []
    code, out, _ = _import(old, tmp_path / "edge", capsys=capsys)
    assert code == exits.OK and f"serves the INT8 IR ({NO_FLOAT})" in out
    info = ModelStore(tmp_path / "edge").get(MODEL)
    assert info.served_ir == "int8" and not info.has_float and info.serve_choice()["measured"] is False  # type: ignore[index]
    rows = _rows(4)
    served, parameters = _serve_rows(tmp_path / "edge", rows, capsys)
    np.testing.assert_allclose(served, _run_ir(info.path, ("model.xml", "model.bin"), rows), rtol=0, atol=1e-5)
    assert parameters["ir"] == "int8" and parameters["ir_choice"] == NO_FLOAT


def test_an_ir_openvino_cannot_compile_is_a_clear_error(tmp_path: Path) -> None:
    from edgeq.errors import FailedPrecondition
    from edgeq.runtime.choice import choose

    (tmp_path / "model.xml").write_text("<net/>")
    (tmp_path / "model.bin").write_bytes(b"")
    for name in FLOAT_FILES:
        (tmp_path / name).write_bytes(b"not an IR")
    with pytest.raises(FailedPrecondition, match=re.escape("--choose int8|float or --no-measure")):
        choose(tmp_path, "measure", seconds=0.1)
    assert choose(tmp_path, "none")["ir"] == "int8"
