"""Post-training quantization with NNCF on the OpenVINO backend."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edgeq.errors import InternalError
from edgeq.quantization import nncf_adapter
from edgeq.quantization.isolated import Task, run_tasks
from edgeq.quantization.nncf_adapter import quantize
from edgeq.quantization.recipe import Recipe


def shares_statistics(recipe: Recipe) -> bool:
    """Whether `quantize_many` can take this recipe: NNCF's PTQ is then one pipeline step (range
    statistics, then fast bias correction), whose statistics can come from a pass shared with others."""
    return recipe.fast_bias_correction and smoothing_alphas(recipe) is None


def quantize_many(model: ov.Model, calibration: Any, members: list[tuple[Recipe, list[str]]],
                  timings: dict[str, Any] | None = None) -> list[ov.Model]:
    """`quantize` for several (recipe, ignored names) from one statistics pass over the calibration set
    (`nncf_adapter.quantize_sharing_statistics`): each recipe gets the model nncf.quantize gives, for
    the cost of one pass instead of one per recipe, and the pass is most of what one recipe costs.
    Only recipes that `shares_statistics` (run `smooth_many` first)."""
    if not all(shares_statistics(recipe) for recipe, _ in members):
        raise InternalError("quantize_many() needs recipes without SmoothQuant and with fast bias correction")
    return nncf_adapter.quantize_sharing_statistics(model, calibration, members, timings)


def smoothing_alphas(recipe: Recipe) -> dict[str, float] | None:
    """SmoothQuant's alpha per layer type as NNCF's PTQ pipeline would use them; None if it does not smooth."""
    alphas = nncf_adapter.default_smoothing_alphas()
    if recipe.smooth_quant_alpha is not None:
        alphas["matmul"] = recipe.smooth_quant_alpha
    return alphas if recipe.transformer and max(alphas.values()) >= 0 else None


def from_smoothed(recipe: Recipe) -> Recipe:
    """The recipe NNCF runs on a model `smooth_many` already smoothed for it: the same, SmoothQuant off."""
    return replace(recipe, smooth_quant_alpha=-1.0)


def smoothing_key(recipe: Recipe) -> str | None:
    """What identifies a smoothed model: recipes with equal keys can quantize from the same one."""
    alphas = smoothing_alphas(recipe)
    return None if alphas is None else str(alphas)


def smooth_many(model: ov.Model, calibration: Any, recipes: list[Recipe]) -> list[ov.Model]:
    """NNCF's first PTQ step alone, SmoothQuant, for each recipe (its alphas and subset size), from one
    statistics pass (`nncf_adapter.smooth_sharing_statistics`).

    SmoothQuant sees neither the ignored scope, the preset, the range estimator nor the bias
    correction, so recipes that differ only in those share its pass; `quantize` of the smoothed model
    with SmoothQuant off runs the rest of NNCF's pipeline and gives the model `quantize` of the float
    one would.
    """
    alphas = [smoothing_alphas(recipe) for recipe in recipes]
    if any(a is None for a in alphas):
        raise InternalError("smooth_many() called for a recipe without SmoothQuant")
    smoothed = nncf_adapter.smooth_sharing_statistics(
        model, calibration, [(recipe.subset_size, a) for recipe, a in zip(recipes, alphas) if a is not None])
    for result, a in zip(smoothed, alphas):
        result.set_rt_info(str(a), ["edgeq", "smooth_quant_alphas"])
    return smoothed


# ---- the same, in a child process ------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    output: str  # the IR the child writes
    recipe: Recipe
    ignored: list[str]  # PTQ: the ops kept in float


@dataclass(frozen=True)
class ChildRequest:
    """What a PTQ or SmoothQuant child runs (handed to it pickled, as its task's argument): the model
    and calibration samples it reads, and one output per recipe."""

    workdir: str  # error.txt, and a shared pass's timings.json
    model_xml: str
    calibration_npy: str
    members: list[Member]

    def inputs(self) -> tuple[ov.Model, list[Any]]:
        calibration = np.load(self.calibration_npy, mmap_mode="r")
        return ov.Core().read_model(self.model_xml), [calibration[i] for i in range(len(calibration))]

    def save(self, models: list[ov.Model]) -> None:
        for model, member in zip(models, self.members):
            ov.save_model(model, member.output, compress_to_fp16=False)


def _quantize_files(request: ChildRequest) -> None:
    """Child side of `ptq_task`: NNCF's whole PTQ pipeline for its one recipe."""
    model, calibration = request.inputs()
    (member,) = request.members
    request.save([quantize(model, calibration, member.recipe, member.ignored)])


def _quantize_many_files(request: ChildRequest) -> None:
    """Child side of `many_task`: one statistics pass; the pass's and each member's seconds in timings.json."""
    model, calibration = request.inputs()
    timings: dict[str, Any] = {}
    request.save(quantize_many(model, calibration, [(m.recipe, m.ignored) for m in request.members], timings))
    (Path(request.workdir) / "timings.json").write_text(json.dumps(timings))


def _smooth_files(request: ChildRequest) -> None:
    """Child side of `smoothing_task`."""
    model, calibration = request.inputs()
    request.save(smooth_many(model, calibration, [member.recipe for member in request.members]))


def _task(name: str, target: Any, workdir: Path, model_xml: Path, calibration_npy: Path,
          members: list[tuple[Path, Recipe, list[str]]]) -> Task:
    """An isolated.Task running `target` on a ChildRequest of (output IR, recipe, ignored names) members."""
    for output, _, _ in members:
        output.parent.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    request = ChildRequest(str(workdir), str(model_xml), str(calibration_npy),
                           [Member(str(output), recipe, list(ignored)) for output, recipe, ignored in members])
    return Task(name, target, (request,), str(workdir))


def ptq_task(workdir: Path, name: str, float_xml: Path, calibration_npy: Path, recipe: Recipe,
             ignored: list[str], smoothed_xml: Path | None = None) -> Task:
    """An isolated.Task quantizing into `workdir/int8.xml` (workdir is created); from `smoothed_xml`
    (the output of a `smoothing_task` with the same SmoothQuant settings) instead of the float IR if given."""
    recipe = from_smoothed(recipe) if smoothed_xml else recipe
    return _task(name, _quantize_files, workdir, smoothed_xml or float_xml, calibration_npy,
                 [(workdir / "int8.xml", recipe, ignored)])


def many_task(workdir: Path, name: str, members: list[tuple[Path, Recipe, list[str]]], float_xml: Path,
              calibration_npy: Path, smoothed_xml: Path | None = None) -> Task:
    """An isolated.Task quantizing several recipes from one statistics pass (`quantize_many`): one
    int8.xml per (directory, recipe, ignored names); from `smoothed_xml` if given, as `ptq_task`."""
    return _task(name, _quantize_many_files, workdir, smoothed_xml or float_xml, calibration_npy,
                 [(directory / "int8.xml", from_smoothed(recipe) if smoothed_xml else recipe, ignored)
                  for directory, recipe, ignored in members])


def smoothing_task(workdir: Path, float_xml: Path, calibration_npy: Path, recipes: list[Recipe]) -> Task:
    """An isolated.Task writing `workdir/smoothed-<i>.xml`: SmoothQuant once for several recipes."""
    return _task("smoothing", _smooth_files, workdir, float_xml, calibration_npy,
                 [(workdir / f"smoothed-{index}.xml", recipe, []) for index, recipe in enumerate(recipes)])


def shared_smoothing(workdir: Path, float_xml: Path, calibration_npy: Path, recipes: list[Recipe],
                     cancelled: Any = lambda: False) -> tuple[dict[str, Path], float]:
    """SmoothQuant once, on every core, for all recipes with the alphas of one of `recipes`:
    ({smoothing_key: smoothed IR}, seconds).

    One of the two statistics passes of each NNCF run, saved (the result is bit-identical to NNCF's
    own pipeline: same outputs on the Fashion-MNIST ViT), and one pass for every alpha asked for.
    An empty mapping if no recipe smooths or the step failed: then every candidate smooths for
    itself, as nncf.quantize does.
    """
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
    task = ptq_task(workdir, "ptq", float_xml, calibration_npy, recipe, ignored, smoothed_xml)
    (outcome,) = run_tasks([task], cancelled=cancelled)
    if not outcome.ok:
        raise InternalError(f"NNCF quantization failed in its child process ({outcome.reason}) after "
                            f"{outcome.attempts} attempt(s)")
    return ov.Core().read_model(str(workdir / "int8.xml"))
