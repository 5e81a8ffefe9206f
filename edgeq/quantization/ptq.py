"""Post-training quantization with NNCF on the OpenVINO backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edgeq._boundary import dependency
from edgeq.quantization.recipe import Recipe


def nncf_arguments(recipe: Recipe, ignored: list[str]) -> dict[str, Any]:
    """The keyword arguments shared by nncf.quantize and nncf.quantize_with_accuracy_control."""
    import nncf
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters, AdvancedSmoothQuantParameters,
                                                       QuantizationParameters)
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    advanced: dict[str, Any] = {}
    if recipe.smooth_quant_alpha is not None:
        advanced["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(matmul=recipe.smooth_quant_alpha)
    if recipe.activations_range != "default":
        estimators = {
            "minmax": RangeEstimatorParametersSet.MINMAX,
            "mean_minmax": RangeEstimatorParametersSet.MEAN_MINMAX,
            "histogram": RangeEstimatorParametersSet.HISTOGRAM,
        }
        advanced["activations_range_estimator_params"] = estimators[recipe.activations_range]
    if recipe.per_channel_activations:
        advanced["activations_quantization_params"] = QuantizationParameters(per_channel=True)
    return dict(
        preset=nncf.QuantizationPreset.PERFORMANCE if recipe.preset == "performance" else nncf.QuantizationPreset.MIXED,
        subset_size=recipe.subset_size,
        fast_bias_correction=recipe.fast_bias_correction,
        model_type=nncf.ModelType.TRANSFORMER if recipe.transformer else None,
        ignored_scope=nncf.IgnoredScope(names=list(ignored)) if ignored else None,
        advanced_parameters=AdvancedQuantizationParameters(**advanced) if advanced else None,
    )


def calibration_dataset(inputs: Any) -> Any:
    """An nncf.Dataset over samples (anything with `.input`) or raw arrays, batch size 1."""
    import nncf

    def transform(item: Any) -> np.ndarray:
        array = item.input if hasattr(item, "input") else item
        return np.asarray(array, dtype=np.float32)[None]

    return nncf.Dataset(inputs, transform)


def quantize(model: ov.Model, calibration: Any, recipe: Recipe, ignored: list[str]) -> ov.Model:
    import nncf

    from edgeq._offline import quiet_nncf

    quiet_nncf()
    with dependency("NNCF post-training quantization"):
        return nncf.quantize(model, calibration_dataset(calibration), **nncf_arguments(recipe, ignored))


# ---- the same, in a child process ------------------------------------------------------------
def _quantize_files(workdir: str, float_xml: str, calibration_npy: str) -> None:
    """Child side: float IR + calibration .npy + params.json -> int8.xml in `workdir`."""
    import json

    root = Path(workdir)
    params = json.loads((root / "params.json").read_text())
    calibration = np.load(calibration_npy, mmap_mode="r")
    model = ov.Core().read_model(float_xml)
    int8 = quantize(model, [calibration[i] for i in range(len(calibration))], Recipe.from_dict(params["recipe"]),
                    params["ignored"])
    ov.save_model(int8, str(root / "int8.xml"), compress_to_fp16=False)


def ptq_task(workdir: Path, name: str, float_xml: Path, calibration_npy: Path, recipe: Recipe,
             ignored: list[str]) -> Any:
    """An isolated.Task quantizing into `workdir/int8.xml` (workdir is created)."""
    import json

    from edgeq.quantization.isolated import Task

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.json").write_text(json.dumps({"recipe": recipe.to_dict(), "ignored": list(ignored)}))
    return Task(name, _quantize_files, (str(workdir), str(float_xml), str(calibration_npy)), str(workdir))


def quantize_isolated(workdir: Path, float_xml: Path, calibration_npy: Path, recipe: Recipe, ignored: list[str],
                      cancelled: Any = lambda: False) -> ov.Model:
    """`quantize` in a spawned child (retried once if it dies by a signal); raises InternalError if it fails."""
    from edgeq.errors import InternalError
    from edgeq.quantization.isolated import run_tasks

    task = ptq_task(workdir, "ptq", float_xml, calibration_npy, recipe, ignored)
    (outcome,) = run_tasks([task], cancelled=cancelled)
    if not outcome.ok:
        raise InternalError(f"NNCF quantization failed in its child process ({outcome.reason}) after "
                            f"{outcome.attempts} attempt(s)")
    return ov.Core().read_model(str(workdir / "int8.xml"))
