"""The one door to NNCF: every NNCF call edgeq makes, NNCF's and OpenVINO's errors turned into edgeq's.

`nncf.quantize` and `nncf.quantize_with_accuracy_control` take one recipe at a time. Sharing one
statistics pass between recipes (`quantize_sharing_statistics`, `smooth_sharing_statistics`) and
reading the CPU's quantizer configurations need NNCF's internals: its PTQ pipeline builder,
statistics collection, the rt_info record `nncf.quantize` writes, its hardware description and
OpenVINO's private weight compression. Internals change between minor releases, so this module is
the only one that touches them (an import-linter contract in pyproject.toml holds it to that),
and it refuses an NNCF outside `SUPPORTED` with a message saying so instead of failing somewhere
inside. NNCF is imported on first use: it is heavy, and telemetry must be off before it loads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from importlib import metadata
from typing import Any

import numpy as np
import openvino as ov
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from edgeq._boundary import dependency
from edgeq._offline import quiet_nncf
from edgeq.data import feed
from edgeq.errors import EdgeqError, FailedPrecondition, InternalError, InvalidArgument
from edgeq.quantization.recipe import Recipe

# The NNCF releases whose internals this module was written and tested against (pyproject.toml pins the same).
SUPPORTED = SpecifierSet(">=3.4,<3.5")


def check_version(version: str | None = None) -> str:
    """The installed NNCF version (or `version`) if this adapter knows it; FailedPrecondition naming
    the supported range if it does not."""
    try:
        found = version or metadata.version("nncf")
    except metadata.PackageNotFoundError:
        raise FailedPrecondition(f"NNCF is not installed: quantization needs nncf{SUPPORTED} "
                                 "(pip install 'edgeq[quantize]')") from None
    if Version(found) not in SUPPORTED:
        raise FailedPrecondition(f"NNCF {found} is installed, but edgeq's NNCF adapter supports nncf{SUPPORTED} "
                                 f"only (it uses NNCF internals that change between releases): "
                                 f"pip install 'nncf{SUPPORTED}'")
    return found


@lru_cache(maxsize=1)
def _nncf() -> Any:
    """The nncf module, once its version is checked."""
    check_version()
    import nncf

    quiet_nncf()
    return nncf


@contextmanager
def translated(what: str) -> Iterator[None]:
    """NNCF's errors as edgeq's: what NNCF refuses as invalid is InvalidArgument, a missing piece of the
    install FailedPrecondition; anything else (OpenVINO's RuntimeError included) InternalError."""
    nncf = _nncf()
    known: dict[type[Exception], type[EdgeqError]] = {
        nncf.ValidationError: InvalidArgument, nncf.UnsupportedModelError: InvalidArgument,
        nncf.UnsupportedDatasetError: InvalidArgument, nncf.ParameterNotSupportedError: InvalidArgument,
        nncf.InstallationError: FailedPrecondition, nncf.UnsupportedBackendError: FailedPrecondition,
        nncf.UnsupportedVersionError: FailedPrecondition, nncf.ModuleNotFoundError: FailedPrecondition,
    }
    with dependency(what, known):
        yield


def nncf_arguments(recipe: Recipe, ignored: Sequence[str]) -> dict[str, Any]:
    """The keyword arguments shared by nncf.quantize and nncf.quantize_with_accuracy_control."""
    nncf = _nncf()
    from nncf.quantization.advanced_parameters import QuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    advanced: dict[str, Any] = {}
    if recipe.smooth_quant_alpha is not None:
        advanced["smooth_quant_alphas"] = nncf.AdvancedSmoothQuantParameters(matmul=recipe.smooth_quant_alpha)
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
        advanced_parameters=nncf.AdvancedQuantizationParameters(**advanced) if advanced else None,
    )


def calibration_dataset(inputs: Iterable[Any]) -> Any:
    """An nncf.Dataset over samples (anything with `.input`) or raw arrays, batch size 1."""

    def transform(item: Any) -> Any:
        array = item.input if hasattr(item, "input") else item
        if feed.is_named(array):  # several inputs or integer ones: a dict by input name
            return feed.one(array)
        return np.asarray(array, dtype=np.float32)[None]

    return _nncf().Dataset(inputs, transform)


def quantize(model: ov.Model, calibration: Iterable[Any], recipe: Recipe, ignored: Sequence[str]) -> ov.Model:
    """nncf.quantize with `recipe`, the ops named in `ignored` left in float."""
    nncf = _nncf()
    with translated("NNCF post-training quantization"):
        return nncf.quantize(model, calibration_dataset(calibration), **nncf_arguments(recipe, ignored))


def quantize_sharing_statistics(model: ov.Model, calibration: Iterable[Any], members: Sequence[tuple[Recipe, Sequence[str]]],
                                timings: dict[str, Any] | None = None) -> list[ov.Model]:
    """What nncf.quantize gives for each (recipe, ignored names), from one statistics pass.

    A PTQ pipeline per recipe, their statistic points merged and collected in one inference pass
    (each algorithm instance keeps its own collectors), then each pipeline's step applied. Each
    recipe's PTQ must be one pipeline step (no SmoothQuant): InternalError otherwise.
    `timings` (if given) receives the seconds of the shared pass and of each recipe's own step.
    """
    _nncf()
    from nncf.openvino.graph.nncf_graph_builder import GraphConverter
    from nncf.openvino.quantization.backend_parameters import is_weight_compression_needed
    from nncf.openvino.quantization.quantize_model import remove_friendly_name_duplicates
    from nncf.openvino.rt_info import dump_parameters
    from nncf.parameters import TargetDevice
    from nncf.quantization.advanced_parameters import convert_to_dict_recursively
    from nncf.quantization.algorithms.pipeline import collect_statistics
    from nncf.quantization.algorithms.post_training.pipeline import create_ptq_pipeline
    from openvino._offline_transformations import compress_quantize_weights_transformation

    with translated("NNCF post-training quantization (shared statistics)"):
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


def default_smoothing_alphas() -> dict[str, float]:
    """SmoothQuant's alpha per layer type when a recipe does not set one (NNCF's defaults)."""
    defaults = _nncf().AdvancedSmoothQuantParameters()
    return {"convolution": defaults.convolution, "matmul": defaults.matmul}


def smooth_sharing_statistics(model: ov.Model, calibration: Iterable[Any],
                              steps: Sequence[tuple[int, dict[str, float]]]) -> list[ov.Model]:
    """NNCF's SmoothQuant step alone, once per (subset size, alphas), from one statistics pass.

    SmoothQuant's statistics (each channel's largest activation) do not depend on alpha, so one
    step per alpha map with their statistic points merged gives each its own smoothed model.
    """
    _nncf()
    from nncf.openvino.graph.nncf_graph_builder import GraphConverter
    from nncf.quantization.algorithms.pipeline import Pipeline, collect_statistics
    from nncf.quantization.algorithms.smooth_quant.algorithm import SmoothQuant

    with translated("NNCF SmoothQuant"):
        graph = GraphConverter.create_nncf_graph(model)
        pipelines = [Pipeline([[SmoothQuant(subset_size, alpha_map=alphas)]]) for subset_size, alphas in steps]
        points = [pipeline.get_statistic_points_for_step(0, model, graph) for pipeline in pipelines]
        statistics = collect_statistics(points, model, graph, calibration_dataset(calibration))
        return [pipeline.run_step(0, statistics, model, graph) for pipeline in pipelines]


def quantize_with_accuracy_control(model: ov.Model, calibration: Iterable[Any], validation: Sequence[Any],
                                   validate: Callable[[Any, Iterable[Any]], tuple[float, list[float]]],
                                   recipe: Recipe, ignored: Sequence[str], *, max_drop: float, relative: bool,
                                   max_iterations: int, ranking_subset_size: int | None) -> ov.Model:
    """nncf.quantize_with_accuracy_control: PTQ with `recipe`, then layers reverted to float until
    `validate(compiled model, items of validation)` drops by at most `max_drop` (relative or absolute)."""
    nncf = _nncf()
    arguments = nncf_arguments(recipe, ignored)
    arguments["advanced_quantization_parameters"] = arguments.pop("advanced_parameters")
    restorer = nncf.AdvancedAccuracyRestorerParameters(max_num_iterations=max_iterations,
                                                       ranking_subset_size=ranking_subset_size, num_ranking_workers=1)
    with translated("NNCF accuracy control"):
        return nncf.quantize_with_accuracy_control(
            model, calibration_dataset(calibration), nncf.Dataset(validation), validate, max_drop=max_drop,
            drop_type=nncf.DropType.RELATIVE if relative else nncf.DropType.ABSOLUTE,
            advanced_accuracy_restorer_parameters=restorer, **arguments)


def per_channel_activations_unsupported() -> str | None:
    """Why per-channel activation scales cannot be tried on the CPU target, or None if they can.

    NNCF's hardware description for CPU lists the quantizer configurations OpenVINO's CPU plugin
    executes; asking for others makes nncf.quantize refuse ("incompatible with HW capabilities").
    Read it instead of spending a child process to find out.
    """
    nncf = _nncf()
    try:
        from nncf.common.hardware.config import get_hw_setup
        from nncf.common.hardware.opset import HWOpName

        matmul = [op for op in get_hw_setup(nncf.TargetDevice.CPU) if op.type == HWOpName.MAT_MUL]
        if any(config.per_channel for op in matmul for space in op.activations for config in space.get_all_qconfigs()):
            return None
    except (ImportError, AttributeError) as error:  # NNCF moved its hardware description: do not guess
        return f"NNCF's CPU hardware description could not be read ({error})"
    return "not supported on CPU: NNCF's CPU hardware description allows per-tensor MatMul activations only"
