"""Post-training quantization with NNCF on the OpenVINO backend."""

from __future__ import annotations

import dataclasses
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


def shares_statistics(recipe: Recipe) -> bool:
    """Whether `quantize_many` can take this recipe: NNCF's PTQ is then one pipeline step (range
    statistics, then fast bias correction), whose statistics can come from a pass shared with others."""
    return recipe.fast_bias_correction and smoothing_alphas(recipe) is None


def quantize_many(model: ov.Model, calibration: Any, members: list[tuple[Recipe, list[str]]],
                  timings: dict[str, Any] | None = None) -> list[ov.Model]:
    """`quantize` for several (recipe, ignored names) from one statistics pass over the calibration set.

    NNCF merges the statistic points of the algorithms in one pipeline step and collects them in a
    single inference pass, each algorithm instance keeping its own collectors. A PTQ pipeline per
    recipe, their points merged, gives each recipe the model nncf.quantize gives (same weights, same
    outputs), for the cost of one pass instead of one per recipe, and the pass is most of what one
    recipe costs. Only recipes that `shares_statistics` (run `smooth` first).
    `timings` (if given) receives the seconds of the shared pass and of each recipe's own step.
    """
    import time

    from nncf.openvino.graph.nncf_graph_builder import GraphConverter
    from nncf.openvino.quantization.backend_parameters import is_weight_compression_needed
    from nncf.openvino.quantization.quantize_model import remove_friendly_name_duplicates
    from nncf.openvino.rt_info import dump_parameters
    from nncf.parameters import TargetDevice
    from nncf.quantization.advanced_parameters import convert_to_dict_recursively
    from nncf.quantization.algorithms.pipeline import collect_statistics
    from nncf.quantization.algorithms.post_training.pipeline import create_ptq_pipeline
    from openvino._offline_transformations import compress_quantize_weights_transformation

    from edgeq._offline import quiet_nncf
    from edgeq.errors import InternalError

    if not all(shares_statistics(recipe) for recipe, _ in members):
        raise InternalError("quantize_many() needs recipes without SmoothQuant and with fast bias correction")
    quiet_nncf()
    with dependency("NNCF post-training quantization (shared statistics)"):
        model = remove_friendly_name_duplicates(model)
        graph = GraphConverter.create_nncf_graph(model)
        arguments = [nncf_arguments(recipe, ignored) for recipe, ignored in members]
        pipelines = [create_ptq_pipeline(**args) for args in arguments]
        if any(len(pipeline.pipeline_steps) != 1 for pipeline in pipelines):
            raise InternalError("NNCF's PTQ pipeline has more than one step for a recipe without SmoothQuant")
        points = [pipeline.get_statistic_points_for_step(0, model, graph) for pipeline in pipelines]
        started = time.perf_counter()
        statistics = collect_statistics(points, model, graph, calibration_dataset(calibration))
        statistics_s, apply_s = round(time.perf_counter() - started, 2), []
        quantized = []
        for pipeline, args in zip(pipelines, arguments):
            started = time.perf_counter()
            result = pipeline.run_step(0, statistics, model, graph)
            if is_weight_compression_needed(args["advanced_parameters"]):
                compress_quantize_weights_transformation(result)  # int8 weights on disk, as nncf.quantize
            dump_parameters(result, {  # the record of how it was quantized, as nncf.quantize writes it
                **{key: args[key] for key in ("preset", "subset_size", "fast_bias_correction", "model_type", "ignored_scope")},
                "target_device": TargetDevice.ANY.value,
                "advanced_parameters": convert_to_dict_recursively(args["advanced_parameters"])})
            quantized.append(result)
            apply_s.append(round(time.perf_counter() - started, 2))
    if timings is not None:
        timings.update(statistics_s=statistics_s, apply_s=apply_s)
    return quantized


def smoothing_alphas(recipe: Recipe) -> dict[str, float] | None:
    """SmoothQuant's alpha per layer type as NNCF's PTQ pipeline would use them; None if it does not smooth."""
    from nncf.quantization.advanced_parameters import AdvancedSmoothQuantParameters

    defaults = AdvancedSmoothQuantParameters()
    alphas = {"convolution": defaults.convolution,
              "matmul": defaults.matmul if recipe.smooth_quant_alpha is None else recipe.smooth_quant_alpha}
    return alphas if recipe.transformer and max(alphas.values()) >= 0 else None


def from_smoothed(recipe: Recipe) -> Recipe:
    """The recipe NNCF runs on a model `smooth` already smoothed for it: the same, SmoothQuant off."""
    return dataclasses.replace(recipe, smooth_quant_alpha=-1.0)


def smoothing_key(recipe: Recipe) -> str | None:
    """What identifies a smoothed model: recipes with equal keys can quantize from the same one."""
    alphas = smoothing_alphas(recipe)
    return None if alphas is None else str(alphas)


def smooth(model: ov.Model, calibration: Any, recipe: Recipe) -> ov.Model:
    """NNCF's first PTQ step alone: SmoothQuant, with the alphas and subset size `recipe` gives it.

    SmoothQuant sees neither the ignored scope, the preset, the range estimator nor the bias
    correction, so recipes that differ only in those share its statistics pass (NNCF's own Pipeline
    class, one step); `quantize` of the smoothed model with SmoothQuant off runs the rest of NNCF's
    pipeline and gives the model `quantize` of the float one would.
    """
    return smooth_many(model, calibration, [recipe])[0]


def smooth_many(model: ov.Model, calibration: Any, recipes: list[Recipe]) -> list[ov.Model]:
    """`smooth` for several recipes (different alphas) from one statistics pass.

    SmoothQuant's statistics (each channel's largest activation) do not depend on alpha, so, as in
    `quantize_many`, one step per recipe with their statistic points merged gives each recipe its
    own smoothed model for the cost of one pass.
    """
    from nncf.openvino.graph.nncf_graph_builder import GraphConverter
    from nncf.quantization.algorithms.pipeline import Pipeline, collect_statistics
    from nncf.quantization.algorithms.smooth_quant.algorithm import SmoothQuant

    from edgeq._offline import quiet_nncf
    from edgeq.errors import InternalError

    alphas = [smoothing_alphas(recipe) for recipe in recipes]
    if any(a is None for a in alphas):
        raise InternalError("smooth() called for a recipe without SmoothQuant")
    quiet_nncf()
    with dependency("NNCF SmoothQuant"):
        graph = GraphConverter.create_nncf_graph(model)
        pipelines = [Pipeline([[SmoothQuant(recipe.subset_size, alpha_map=a)]]) for recipe, a in zip(recipes, alphas)]
        points = [pipeline.get_statistic_points_for_step(0, model, graph) for pipeline in pipelines]
        statistics = collect_statistics(points, model, graph, calibration_dataset(calibration))
        smoothed = [pipeline.run_step(0, statistics, model, graph) for pipeline in pipelines]
    for result, a in zip(smoothed, alphas):
        result.set_rt_info(str(a), ["edgeq", "smooth_quant_alphas"])
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
    params, model, calibration = _child_inputs(workdir, float_xml, calibration_npy)
    recipe = Recipe.from_dict(params["recipe"])
    if params.get("smoothed"):
        recipe = from_smoothed(recipe)
    int8 = quantize(model, calibration, recipe, params["ignored"])
    ov.save_model(int8, str(Path(workdir) / "int8.xml"), compress_to_fp16=False)


def _quantize_many_files(workdir: str, model_xml: str, calibration_npy: str) -> None:
    """Child side of `many_task`: one statistics pass, an int8.xml in each member's directory,
    the pass's and each member's seconds in `workdir/timings.json`."""
    import json

    params, model, calibration = _child_inputs(workdir, model_xml, calibration_npy)
    recipes = [Recipe.from_dict(member["recipe"]) for member in params["members"]]
    if params.get("smoothed"):
        recipes = [from_smoothed(recipe) for recipe in recipes]
    timings: dict[str, Any] = {}
    quantized = quantize_many(model, calibration, [(recipe, member["ignored"])
                                                   for recipe, member in zip(recipes, params["members"])], timings)
    for member, int8 in zip(params["members"], quantized):
        ov.save_model(int8, str(Path(member["workdir"]) / "int8.xml"), compress_to_fp16=False)
    (Path(workdir) / "timings.json").write_text(json.dumps(timings))


def _smooth_files(workdir: str, float_xml: str, calibration_npy: str) -> None:
    """Child side: float IR + calibration .npy + params.json -> smoothed-<i>.xml in `workdir`, one per recipe."""
    params, model, calibration = _child_inputs(workdir, float_xml, calibration_npy)
    smoothed = smooth_many(model, calibration, [Recipe.from_dict(recipe) for recipe in params["recipes"]])
    for index, result in enumerate(smoothed):
        ov.save_model(result, str(Path(workdir) / f"smoothed-{index}.xml"), compress_to_fp16=False)


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


def many_task(workdir: Path, name: str, members: list[tuple[Path, Recipe, list[str]]], float_xml: Path,
              calibration_npy: Path, smoothed_xml: Path | None = None) -> Any:
    """An isolated.Task quantizing several recipes from one statistics pass (`quantize_many`): one
    int8.xml per (directory, recipe, ignored names); from `smoothed_xml` if given, as `ptq_task`."""
    for directory, _, _ in members:
        directory.mkdir(parents=True, exist_ok=True)
    params = {"members": [{"workdir": str(directory), "recipe": recipe.to_dict(), "ignored": list(ignored)}
                          for directory, recipe, ignored in members], "smoothed": smoothed_xml is not None}
    return _task(name, _quantize_many_files, workdir, params, smoothed_xml or float_xml, calibration_npy)


def smoothing_task(workdir: Path, float_xml: Path, calibration_npy: Path, recipes: list[Recipe]) -> Any:
    """An isolated.Task writing `workdir/smoothed-<i>.xml`: SmoothQuant once for several recipes."""
    return _task("smoothing", _smooth_files, workdir, {"recipes": [recipe.to_dict() for recipe in recipes]},
                 float_xml, calibration_npy)


def shared_smoothing(workdir: Path, float_xml: Path, calibration_npy: Path, recipes: list[Recipe],
                     cancelled: Any = lambda: False) -> tuple[dict[str, Path], float]:
    """SmoothQuant once, on every core, for all recipes with the alphas of one of `recipes`:
    ({smoothing_key: smoothed IR}, seconds).

    One of the two statistics passes of each NNCF run, saved (the result is bit-identical to NNCF's
    own pipeline: same outputs on the Fashion-MNIST ViT), and one pass for every alpha asked for.
    An empty mapping if no recipe smooths or the step failed: then every candidate smooths for
    itself, as nncf.quantize does.
    """
    from edgeq.quantization.isolated import run_tasks

    distinct = {key: recipe for recipe in recipes if (key := smoothing_key(recipe)) is not None}
    if not distinct:
        return {}, 0.0
    (outcome,) = run_tasks([smoothing_task(workdir, float_xml, calibration_npy, list(distinct.values()))],
                           cancelled=cancelled)
    if not outcome.ok:
        return {}, round(outcome.seconds, 2)
    return {key: workdir / f"smoothed-{index}.xml" for index, key in enumerate(distinct)}, round(outcome.seconds, 2)


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
