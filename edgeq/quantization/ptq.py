"""Post-training quantization with NNCF on the OpenVINO backend."""

from __future__ import annotations

from typing import Any

import numpy as np
import openvino as ov

from edgeq._boundary import dependency
from edgeq.quantization.recipe import Recipe


def nncf_arguments(recipe: Recipe, ignored: list[str]) -> dict[str, Any]:
    """The keyword arguments shared by nncf.quantize and nncf.quantize_with_accuracy_control."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
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
