"""edgeq.quantize from Python with everything in memory, as nncf.quantize is called."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgeq
from edgeq.sources import load_model
from tests.conftest import fmnist_arrays


def test_an_openvino_model_and_arrays_in_memory(tmp_path: Path) -> None:
    model = load_model("timm:edgeq_vit_fmnist").model
    inputs, labels = fmnist_arrays()
    calibration = (inputs[:120], labels[:120])
    validation = ((x, int(y)) for x, y in zip(inputs[120:220], labels[120:220]))  # an iterable of samples
    result = edgeq.quantize(model, calibration, validation=validation, store=tmp_path / "store", name="in-memory",
                            metric="top1", max_drop=0.5, no_fallback=True, speed_seconds=0, sensitivity_samples=1,
                            subset_size=64)
    assert result.version == 1 and (result.path / "model.xml").exists()
    data = result.report.data
    assert data.calibration.samples == 120 and data.calibration.used == 64
    assert data.validation.samples == 100 and data.validation.labelled
    assert not data.validation.held_out_from_calibration
    accuracy = result.report.accuracy
    assert accuracy.metric == "top1" and accuracy.budget.max_drop == 0.5 and accuracy.float > 0.5
    assert result.report.recipe.subset_size == 64
    # unlabelled inputs as one array: the calibration set is split for validation
    plain = edgeq.quantize(model, inputs[:60], store=tmp_path / "store", name="in-memory", max_drop=0.5,
                           no_fallback=True, speed_seconds=0, sensitivity_samples=1, holdout_fraction=0.25)
    assert plain.version == 2 and plain.report.data.validation.samples == 15


def test_bad_options_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(edgeq.InvalidArgument, match="invalid option max_drop"):
        edgeq.quantize("timm:edgeq_vit_fmnist", np.zeros((4, 1, 28, 28), np.float32), store=tmp_path, name="x",
                       max_drop=float("nan"))
    with pytest.raises(edgeq.InvalidArgument, match="invalid option batch_sizes"):
        edgeq.quantize("timm:edgeq_vit_fmnist", np.zeros((4, 1, 28, 28), np.float32), store=tmp_path, name="x",
                       batch_sizes=(0,))
    assert not any(tmp_path.iterdir())
