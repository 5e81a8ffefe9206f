"""16 validation samples against a 1 % budget: the fallback is skipped at once, and the report says why."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import edgeq


def test_a_budget_finer_than_one_sample_skips_the_fallback(fmnist_result, fmnist_npz: dict[str, Path],  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    import openvino as ov

    from edgeq.compile import compile_cpu
    from edgeq.quantization.accuracy import run
    from edgeq.sources import load_model

    # build the case: 16 validation samples, one of which INT8 answers differently from float
    data = np.load(fmnist_npz["validation"])
    inputs = data["inputs"]
    float_top = run(compile_cpu(load_model("timm:edgeq_vit_fmnist").model), inputs, len(inputs)).argmax(-1)
    int8_top = run(compile_cpu(ov.Core().read_model(fmnist_result.path / "model.xml")), inputs, len(inputs)).argmax(-1)
    differ, agree = np.flatnonzero(float_top != int8_top), np.flatnonzero(float_top == int8_top)
    assert differ.size, "INT8 agrees with float on all 200 samples: no sample to build the case with"
    chosen = np.concatenate([differ[:1], agree[:15]])
    np.savez(tmp_path / "val16.npz", inputs=inputs[chosen], labels=data["labels"][chosen])

    started = time.perf_counter()
    result = edgeq.quantize("timm:edgeq_vit_fmnist", calibration=str(fmnist_npz["calibration"]),
                            validation=str(tmp_path / "val16.npz"), store=str(tmp_path / "store"), name="coarse",
                            metric="agreement", max_drop=0.01, speed_seconds=0, sensitivity_samples=1,
                            time_budget=600)
    seconds = time.perf_counter() - started
    fallback = result.report.fallback
    assert result.report.accuracy.int8_ptq == 15 / 16, result.report.accuracy
    assert fallback.ran is False and fallback.status == "skipped", fallback
    assert fallback.reason and "16 validation samples" in fallback.reason and "at least 100 samples" in fallback.reason
    assert any(w.startswith("accuracy fallback skipped") for w in result.report.warnings)
    assert not result.budget_met and result.version == 1  # published, marked as not meeting the budget
    assert seconds < 300, seconds
