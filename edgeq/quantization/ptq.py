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


def smoothing_alphas(recipe: Recipe) -> dict[str, float] | None:
    """SmoothQuant's alpha per layer type as NNCF's PTQ pipeline would use them; None if it does not smooth."""
    from nncf.quantization.advanced_parameters import AdvancedSmoothQuantParameters

    defaults = AdvancedSmoothQuantParameters()
    alphas = {"convolution": defaults.convolution,
              "matmul": defaults.matmul if recipe.smooth_quant_alpha is None else recipe.smooth_quant_alpha}
    return alphas if recipe.transformer and max(alphas.values()) >= 0 else None


def smooth(model: ov.Model, calibration: Any, recipe: Recipe) -> ov.Model:
    """NNCF's first PTQ step alone: SmoothQuant, with the alphas and subset size `recipe` gives it.

    SmoothQuant sees neither the ignored scope, the preset, the range estimator nor the bias
    correction, so recipes that differ only in those share its statistics pass (NNCF's own Pipeline
    class, one step); `quantize` of the smoothed model with SmoothQuant off runs the rest of NNCF's
    pipeline and gives the model `quantize` of the float one would.
    """
    from nncf.quantization.algorithms.pipeline import Pipeline
    from nncf.quantization.algorithms.smooth_quant.algorithm import SmoothQuant

    from edgeq._offline import quiet_nncf

    alphas = smoothing_alphas(recipe)
    if alphas is None:
        from edgeq.errors import InternalError

        raise InternalError("smooth() called for a recipe without SmoothQuant")
    quiet_nncf()
    with dependency("NNCF SmoothQuant"):
        step = SmoothQuant(recipe.subset_size, alpha_map=alphas)
        smoothed = Pipeline([[step]]).run(model, calibration_dataset(calibration))
    smoothed.set_rt_info(str(alphas), ["edgeq", "smooth_quant_alphas"])
    return smoothed


# ---- the same, in a child process ------------------------------------------------------------
def _child_inputs(workdir: str, model_xml: str, calibration_npy: str) -> tuple[dict[str, Any], ov.Model, list[Any]]:
    """Child side: what a task's files hold (params.json, the IR, the calibration samples)."""
    import json

    params = json.loads((Path(workdir) / "params.json").read_text())
    calibration = np.load(calibration_npy, mmap_mode="r")
    return params, ov.Core().read_model(model_xml), [calibration[i] for i in range(len(calibration))]


def _quantize_files(workdir: str, float_xml: str, calibration_npy: str) -> None:
    """Child side: float IR + calibration .npy + params.json -> int8.xml in `workdir`.

    With "smoothed" in params, `float_xml` is already smoothed (`smooth`): SmoothQuant is not run again.
    """
    import dataclasses

    params, model, calibration = _child_inputs(workdir, float_xml, calibration_npy)
    recipe = Recipe.from_dict(params["recipe"])
    if params.get("smoothed"):
        recipe = dataclasses.replace(recipe, smooth_quant_alpha=-1.0)
    int8 = quantize(model, calibration, recipe, params["ignored"])
    ov.save_model(int8, str(Path(workdir) / "int8.xml"), compress_to_fp16=False)


def _smooth_files(workdir: str, float_xml: str, calibration_npy: str) -> None:
    """Child side: float IR + calibration .npy + params.json -> smoothed.xml in `workdir`."""
    params, model, calibration = _child_inputs(workdir, float_xml, calibration_npy)
    smoothed = smooth(model, calibration, Recipe.from_dict(params["recipe"]))
    ov.save_model(smoothed, str(Path(workdir) / "smoothed.xml"), compress_to_fp16=False)


def _task(name: str, target: Any, workdir: Path, params: dict[str, Any], model_xml: Path, calibration_npy: Path) -> Any:
    """An isolated.Task whose child reads `params` (written here), the IR and the calibration samples."""
    import json

    from edgeq.quantization.isolated import Task

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.json").write_text(json.dumps(params))
    return Task(name, target, (str(workdir), str(model_xml), str(calibration_npy)), str(workdir))


def ptq_task(workdir: Path, name: str, float_xml: Path, calibration_npy: Path, recipe: Recipe,
             ignored: list[str], smoothed_xml: Path | None = None) -> Any:
    """An isolated.Task quantizing into `workdir/int8.xml` (workdir is created); from `smoothed_xml`
    (the output of a `smoothing_task` with the same SmoothQuant settings) instead of the float IR if given."""
    params = {"recipe": recipe.to_dict(), "ignored": list(ignored), "smoothed": smoothed_xml is not None}
    return _task(name, _quantize_files, workdir, params, smoothed_xml or float_xml, calibration_npy)


def smoothing_task(workdir: Path, float_xml: Path, calibration_npy: Path, recipe: Recipe) -> Any:
    """An isolated.Task writing `workdir/smoothed.xml`: SmoothQuant once for several recipes."""
    return _task("smoothing", _smooth_files, workdir, {"recipe": recipe.to_dict()}, float_xml, calibration_npy)


def shared_smoothing(workdir: Path, float_xml: Path, calibration_npy: Path, recipe: Recipe,
                     cancelled: Any = lambda: False) -> tuple[Path | None, float]:
    """SmoothQuant once, on every core, for all recipes with `recipe`'s alphas: (smoothed IR, seconds).

    One of the two statistics passes of each NNCF run, saved (the result is bit-identical to NNCF's
    own pipeline: same outputs on the Fashion-MNIST ViT). (None, 0) if the recipe does not smooth or
    the step failed: then every candidate smooths for itself, as nncf.quantize does.
    """
    from edgeq.quantization.isolated import run_tasks

    if smoothing_alphas(recipe) is None:
        return None, 0.0
    (outcome,) = run_tasks([smoothing_task(workdir, float_xml, calibration_npy, recipe)], cancelled=cancelled)
    return (workdir / "smoothed.xml" if outcome.ok else None), round(outcome.seconds, 2)


def quantize_isolated(workdir: Path, float_xml: Path, calibration_npy: Path, recipe: Recipe, ignored: list[str],
                      cancelled: Any = lambda: False, smoothed_xml: Path | None = None) -> ov.Model:
    """`quantize` in a spawned child (retried once if it dies by a signal); raises InternalError if it fails."""
    from edgeq.errors import InternalError
    from edgeq.quantization.isolated import run_tasks

    task = ptq_task(workdir, "ptq", float_xml, calibration_npy, recipe, ignored, smoothed_xml)
    (outcome,) = run_tasks([task], cancelled=cancelled)
    if not outcome.ok:
        raise InternalError(f"NNCF quantization failed in its child process ({outcome.reason}) after "
                            f"{outcome.attempts} attempt(s)")
    return ov.Core().read_model(str(workdir / "int8.xml"))
