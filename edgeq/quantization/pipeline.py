"""One quantization job from import to publish, emitting progress events.

import → data → float reference (true FP32) → PTQ with ignored-scope rules → accuracy
→ [accuracy-aware fallback: re-quantization, then accuracy control in a child process] → analysis (SQNR, size, speed) → report → publish.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import numpy as np

from edgeq.errors import Cancelled, InvalidArgument
from edgeq.options import QuantizeOptions
from edgeq.quantization.accuracy import Budget
from edgeq.quantization.events import EventSink, ProgressEvent, ignore
from edgeq.quantization.fallback import FallbackSettings
from edgeq.quantization.recipe import Recipe
from edgeq.quantization.speed import SpeedSettings
from edgeq.sources.spec import Preprocess

T = TypeVar("T")


class _Option(Generic[T]):
    """`request.metric` reads `request.options.metric`, typed."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, request: Any, owner: type) -> T:
        return cast(T, getattr(request.options, self.name))


@dataclass
class QuantizeRequest:
    """Where one job reads from and publishes to, and its options (declared in edgeq.options).

    The pipeline reads the options through it: Budget, Recipe, fallback and speed settings are
    derived here, the rest read as they are; none is declared a second time."""

    model: str
    calibration: str | Path
    store: str | Path
    name: str
    weights: str | Path | None = None
    validation: str | Path | None = None
    options: QuantizeOptions = field(default_factory=QuantizeOptions)
    search_workers: int | None = None  # parallel --auto candidates; None: one per core (the machine's, not the job's)
    job_id: str | None = None  # the job running this request: named in the version's manifest (recovery reads it)

    def __post_init__(self) -> None:
        from edgeq.names import check_model_name

        check_model_name(self.name)

    @property
    def budget(self) -> Budget:
        return Budget(self.options.max_drop, self.options.relative)

    @cached_property
    def recipe(self) -> Recipe:
        o = self.options
        return Recipe(preset=o.preset, transformer=not o.no_transformer,
                      rules=Recipe().rules if o.rules is None else o.rules, subset_size=o.subset_size,
                      smooth_quant_alpha=o.smooth_quant_alpha, activations_range=o.activations_range)

    @property
    def fallback(self) -> FallbackSettings | None:
        o = self.options
        return None if o.no_fallback else FallbackSettings(o.time_budget, o.max_iterations, o.ranking_subset)

    @property
    def speed(self) -> SpeedSettings | None:
        o = self.options
        return SpeedSettings(o.batch_sizes, o.speed_seconds, o.speed_rounds) if o.speed_seconds > 0 else None

    @property
    def preprocess(self) -> Preprocess | None:
        o = self.options
        if o.image_size is None:
            return None
        return Preprocess(size=o.image_size, channels=o.channels, mean=o.mean or (0.0,) * o.channels,
                          std=o.std or (1.0,) * o.channels)

    # options the pipeline reads as they are
    input_shape = _Option[tuple[int, ...] | None]()
    output_node = _Option[str | None]()
    metric = _Option[str]()
    holdout_fraction = _Option[float]()
    validation_limit = _Option[int]()
    sensitivity_samples = _Option[int]()
    min_speedup = _Option[float]()
    force_promote = _Option[bool]()
    auto = _Option[bool]()
    ranking_samples = _Option[int]()
    search_calibration = _Option[int]()


@dataclass
class QuantizeResult:
    name: str
    version: int
    path: Path
    report: dict[str, Any]

    @property
    def budget_met(self) -> bool:
        return bool(self.report["accuracy"]["met"])

    @property
    def served(self) -> bool:
        """False when the speed gate held this version back (stored, reported, not served)."""
        gate = self.report.get("speed_gate")
        return not gate or bool(gate["served"])


def _materialise(samples: Any, path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """Stream samples into a .npy memory map (bounded RAM); labels as an array (or None)."""
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(samples), *shape))
    labels = np.full(len(samples), -1, dtype=np.int64)
    count = 0
    for sample in samples:
        data[sample.index] = sample.input
        labels[sample.index] = -1 if sample.label is None else sample.label
        count += 1
    if count == 0:
        raise InvalidArgument("the data set is empty")
    data.flush()
    return np.load(path, mmap_mode="r"), (labels if samples.has_labels else None)


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._stage: str | None = None
        self._started = 0.0

    def start(self, stage: str) -> None:
        self.stop()
        self._stage, self._started = stage, time.perf_counter()

    def stop(self) -> None:
        if self._stage is not None:
            self.timings[self._stage] = round(time.perf_counter() - self._started, 3)
            self._stage = None


def _hold_reason(report: dict[str, Any], forced: bool) -> str | None:
    """A version that misses the speed gate is stored and reported but not served, unless forced."""
    gate = report.get("speed_gate")
    if forced or not gate or gate["met"]:
        return None
    return (f"INT8 runs at x{gate['speedup_vs_default']:.2f} the default float model's throughput on this CPU, "
            f"below the speed gate x{gate['min_speedup']}")


def _requantize(request: QuantizeRequest, work: Path, float_model: Any, int8_model: Any, recipe: Any,
                ignored: list[str], plain_quantized: set[str], validation_inputs: np.ndarray, reference: np.ndarray,
                labels: np.ndarray | None, calibration: np.ndarray, float_score: float,
                cancelled: Callable[[], bool]) -> Any:
    """The first fallback (edgeq.quantization.requantize), at most 10 % of the quantizable layers."""
    from edgeq.quantization import accuracy, graph, sensitivity
    from edgeq.quantization.requantize import requantize

    sqnr = sensitivity.per_layer_sqnr(float_model, int8_model, sorted(plain_quantized),
                                      calibration[: max(request.sensitivity_samples, 4)])
    ranked = sorted(sqnr, key=lambda name: sqnr[name])

    def score(model: Any) -> tuple[np.ndarray, float]:
        return accuracy.evaluate(model, request.metric, validation_inputs, reference, labels)

    outcome = requantize(work / "requantize", work / "float.xml", work / "calibration.npy", recipe, ignored, ranked,
                         score, lambda value: request.budget.met(float_score, value),
                         max(1, len(graph.quantizable_ops(float_model)) // 10), cancelled)
    outcome.sqnr = sqnr
    return outcome


def _reverted_rows(float_model: Any, layers: list[str], sqnr: dict[str, float], reason: str) -> list[dict[str, Any]]:
    from edgeq.quantization import graph

    return [{"layer": name, "type": t, "plain_ptq_sqnr_db": sqnr.get(name), "reason": reason}
            for name, t in graph.op_types(float_model, layers).items()]


def _accuracy_control(request: QuantizeRequest, work: Path, cancelled: Callable[[], bool], float_model: Any,
                      recipe: Recipe, ignored: list[str], calibration: np.ndarray, validation_inputs: np.ndarray,
                      reference: np.ndarray, labels: np.ndarray | None) -> tuple[Any, np.ndarray | None, float | None,
                                                                                dict[str, Any]]:
    """NNCF's accuracy control in a child process: (model, outputs, score) or Nones, and its report section."""
    import openvino as ov

    from edgeq.quantization import accuracy, fallback

    assert request.fallback is not None
    child_dir = work / "fallback"
    fallback.prepare(child_dir, float_model, calibration, np.asarray(validation_inputs), reference, labels, {
        "metric": request.metric, "max_drop": request.budget.max_drop, "relative": request.budget.relative,
        "recipe": recipe.to_dict(), "ignored": ignored, "max_iterations": request.fallback.max_iterations,
        "ranking_subset_size": request.fallback.ranking_subset_size,
    })
    outcome = fallback.run_in_child(child_dir, request.fallback, cancelled)
    section: dict[str, Any] = {"status": outcome.status, "reason": outcome.reason, "seconds": round(outcome.seconds, 2),
                               "timings": outcome.timings}
    if outcome.model_path is None:
        return None, None, None, section
    restored = ov.Core().read_model(str(outcome.model_path))
    outputs, score = accuracy.evaluate(restored, request.metric, validation_inputs, reference, labels)
    section["score"] = score
    return restored, outputs, score, section


def _restore_accuracy(request: QuantizeRequest, work: Path, emit: Callable[..., None], cancelled: Callable[[], bool],
                      warnings: list[str], float_model: Any, int8_model: Any, int8_outputs: np.ndarray,
                      ptq_score: float, float_score: float, recipe: Recipe, ignored: list[str],
                      calibration: np.ndarray, validation_inputs: np.ndarray, reference: np.ndarray,
                      labels: np.ndarray | None) -> tuple[Any, np.ndarray, float, dict[str, Any]]:
    """Fallback when plain PTQ misses the budget, the bounded step first: re-quantization with the
    1, 2, 4 ... least accurate layers in float (up to 10 % of the quantizable layers), then, if still
    short, NNCF's accuracy control (it ranks every quantized op, so it gets a time budget: on ViT-S/14
    it did not finish within it, and on MiniLM it made things worse; docs/accuracy.md). The best
    model is kept, never one worse than plain PTQ. Returns (model, its outputs, its score, the
    report's fallback section)."""
    from edgeq.quantization import fallback, graph, resolution, sensitivity

    kept_model, kept_outputs, kept_score = int8_model, int8_outputs, ptq_score
    if request.budget.met(float_score, ptq_score):
        return kept_model, kept_outputs, kept_score, {"ran": False, "reverted": [], "status": "not needed"}
    if request.fallback is None:
        return kept_model, kept_outputs, kept_score, {"ran": False, "reverted": [], "status": "disabled"}
    unmeasurable = resolution.unmeasurable_budget(request.budget, request.metric, len(validation_inputs), float_score)
    if unmeasurable:
        warnings.append(unmeasurable)
        emit("fallback", 0.5, unmeasurable)
        return kept_model, kept_outputs, kept_score, {"ran": False, "reverted": [], "status": "skipped",
                                                      "reason": unmeasurable}

    plain_quantized = graph.quantized_ops(int8_model)
    emit("fallback", 0.5, "accuracy below budget: re-quantizing with the least accurate layers in float",
         drop=request.budget.drop(float_score, ptq_score))
    section: dict[str, Any] = {"ran": True, "status": "not improved", "reverted": []}
    requantized = _requantize(request, work, float_model, int8_model, recipe, ignored, plain_quantized,
                              validation_inputs, reference, labels, calibration, float_score, cancelled)
    section["requantize"] = requantized.steps
    if requantized.model is not None and requantized.score is not None and requantized.score > kept_score:
        kept_model, kept_outputs, kept_score = requantized.model, requantized.outputs, requantized.score
        section["status"] = "requantized"
        section["reverted"] = _reverted_rows(float_model, requantized.reverted, requantized.sqnr,
                                             "lowest SQNR after plain PTQ; PTQ re-run with it in float")
    if request.budget.met(float_score, kept_score):
        return kept_model, kept_outputs, kept_score, section

    emit("accuracy-control", 0.6, "still below budget: NNCF accuracy control reverts quantizers one by one")
    restored, outputs, score, section["accuracy_control"] = _accuracy_control(
        request, work, cancelled, float_model, recipe, ignored, calibration, validation_inputs, reference, labels)
    if restored is None or score is None or outputs is None:
        control = section["accuracy_control"]
        warnings.append(f"accuracy control {control['status']}: {control['reason']}")
    elif score <= kept_score:
        # Seen on MiniLM: reverting layers left bias corrections computed for their quantized
        # inputs in place, and cosine fell. Never ship the worse model.
        warnings.append(f"accuracy control scored {score:.4f}, not better than the model kept ({kept_score:.4f})")
    else:
        kept_model, kept_outputs, kept_score = restored, outputs, score
        section["status"] = "accuracy control"
        reverted = fallback.reverted_layers(plain_quantized, graph.quantized_ops(restored))
        plain_sqnr = sensitivity.per_layer_sqnr(float_model, int8_model, reverted,
                                                np.asarray(calibration[: request.sensitivity_samples]))
        section["reverted"] = _reverted_rows(float_model, reverted, plain_sqnr,
                                             "ranked most harmful to the metric by accuracy control; reverted to meet the budget")
    return kept_model, kept_outputs, kept_score, section


def run(request: QuantizeRequest, on_event: EventSink = ignore,
        cancelled: Callable[[], bool] = lambda: False) -> QuantizeResult:
    """Run one job; raise an EdgeqError on bad input, return a result (budget met or not) otherwise."""
    import openvino as ov

    from edgeq import data as datasets
    from edgeq.compile import compile_cpu, cpu_description
    from edgeq.data.samples import first, hold_out
    from edgeq.quantization import accuracy, graph, ptq, rules, speed
    from edgeq.quantization.attention import sqnr_and_attention
    from edgeq.report.html import write_html
    from edgeq.report.summary import build_report
    from edgeq.sources import load_model
    from edgeq.store import ModelStore

    clock = _Clock()
    started = time.perf_counter()

    def emit(stage: str, fraction: float, message: str, **metrics: Any) -> None:
        if cancelled():
            raise Cancelled(f"job cancelled during {stage}")
        clock.start(stage)
        on_event(ProgressEvent(stage, fraction, message, metrics))

    store = ModelStore(request.store)
    work = store.staging_dir()
    staged: Path | None = None
    try:
        emit("import", 0.02, f"importing {request.model}")
        loaded = load_model(request.model, weights=request.weights, input_shape=request.input_shape,
                            preprocess=request.preprocess, output_node=request.output_node)
        spec = loaded.input
        warnings = list(loaded.notes)

        emit("data", 0.08, "reading calibration and validation data")
        calibration_set = datasets.open_samples(request.calibration, spec, loaded.preprocess)
        if request.validation is not None:
            validation_set = datasets.open_samples(request.validation, spec, loaded.preprocess)
            held_out = False
        else:
            calibration_set, validation_set = hold_out(calibration_set, request.holdout_fraction)
            held_out = True
            warnings.append(f"no validation set: 1 in {round(1 / request.holdout_fraction)} calibration samples "
                            f"({len(validation_set)}) held out to measure accuracy")
        if request.validation_limit and len(validation_set) > request.validation_limit:
            validation_set = first(validation_set, request.validation_limit)
        calibration_inputs, _ = _materialise(first(calibration_set, request.recipe.subset_size), work / "calibration.npy", spec.shape)
        validation_inputs, labels = _materialise(validation_set, work / "validation.npy", spec.shape)
        if request.metric == "top1" and labels is None:
            raise InvalidArgument("metric top1 needs labelled validation data (an .npz with 'labels' or class folders); "
                                  "use --metric agreement for unlabelled data")

        emit("reference", 0.15, f"float reference at FP32 on {len(validation_inputs)} samples")
        float_model = loaded.model
        reference = accuracy.run(compile_cpu(float_model, precision="f32"), validation_inputs, len(validation_inputs))
        float_score = accuracy.reference_score(request.metric, reference, labels)

        recipe, searched = request.recipe, None
        float_xml = work / "float.xml"  # NNCF runs in child processes: they read the model from here
        ov.save_model(float_model, str(float_xml), compress_to_fp16=False)
        if request.auto:
            from edgeq.quantization.search import search

            emit("search", 0.2, "trying recipe candidates on a ranking subset")
            count = min(request.ranking_samples, len(validation_inputs))
            searched = search(
                float_model, work, work / "calibration.npy", np.asarray(validation_inputs[:count]),
                reference[:count], None if labels is None else labels[:count], request.metric, request.recipe,
                workers=request.search_workers, search_calibration=request.search_calibration, cancelled=cancelled)
            recipe = searched.recipe
        emit("quantize", 0.25, f"NNCF PTQ on {len(calibration_inputs)} calibration samples")
        matches = rules.resolve(float_model, rules.parse_rules(list(recipe.rules)))
        warnings.extend(f"rule {m.rule}: matched no node" for m in matches if not m.nodes and "WARNING" in m.note)
        ignored = rules.ignored_names(matches)
        if searched is None:
            int8_model = ptq.quantize_isolated(work / "ptq", float_xml, work / "calibration.npy", recipe, ignored,
                                               cancelled)
        else:
            int8_model = searched.model

        emit("accuracy", 0.45, "measuring INT8 accuracy")
        int8_outputs, ptq_score = accuracy.evaluate(int8_model, request.metric, validation_inputs, reference, labels,
                                                    known=None if searched is None else searched.ranking_outputs)
        final_model, final_outputs, final_score, fallback_report = _restore_accuracy(
            request, work, emit, cancelled, warnings, float_model, int8_model, int8_outputs, ptq_score, float_score,
            recipe, ignored, np.asarray(calibration_inputs), validation_inputs, reference, labels)

        emit("analyse", 0.7, "per-layer SQNR, size and speed")
        final_quantized = graph.quantized_ops(final_model)
        probe = np.asarray(calibration_inputs[: request.sensitivity_samples])
        sqnr, attention_maps, unmeasured = sqnr_and_attention(float_model, final_model, sorted(final_quantized), probe)
        if unmeasured:
            warnings.append(f"{len(unmeasured)} layer(s) not measured (SQNR or attention), e.g. {unmeasured[0]}: "
                            "exposing their outputs changes what OpenVINO's CPU plugin computes for the INT8 model")
        speed_report = speed.compare(float_model, final_model, spec.shape, request.speed) if request.speed else None
        neighbours: dict[str, float | None] = {"neighbour_agreement": None}
        if request.metric == "cosine":
            neighbours.update(accuracy.neighbours(final_outputs, reference) or {})
        diagnostics = {
            "agreement": float(accuracy.per_sample("agreement", final_outputs, reference, labels).mean())
            if reference.ndim == 2 else None,
            "cosine": float(accuracy.per_sample("cosine", final_outputs, reference, labels).mean()),
            **neighbours,
        }

        emit("report", 0.9, "writing the report")
        staged = store.staging_dir()
        ov.save_model(final_model, str(staged / "model.xml"), compress_to_fp16=False)
        clock.stop()
        report = build_report(
            request=request, loaded=loaded, calibration_count=len(calibration_inputs), calibration_total=len(calibration_set),
            validation_count=len(validation_inputs), held_out=held_out, has_labels=labels is not None,
            matches=matches, float_score=float_score, ptq_score=ptq_score, final_score=final_score,
            diagnostics=diagnostics, fallback=fallback_report,
            quantizable=graph.quantizable_ops(float_model), quantized=sorted(final_quantized), sqnr=sqnr,
            sizes={"float_bytes": speed.model_size_bytes(float_model), "int8_bytes": (staged / "model.bin").stat().st_size},
            speed=speed_report, cpu=cpu_description(), timings=clock.timings, warnings=warnings, recipe=recipe,
            search=None if searched is None else searched.rows, attention=attention_maps,
            seconds=time.perf_counter() - started,
        )
        (staged / "edgeq.json").write_text(json.dumps(report, indent=2, default=str))
        write_html(report, staged / "report.html")

        emit("publish", 0.97, f"publishing {request.name}")
        hold = _hold_reason(report, request.force_promote)
        info = store.publish(request.name, staged, {"model": request.name, "cpu": report["cpu"]}, hold=hold,
                             job=request.job_id)
        verdict = f"held back from serving ({hold})" if hold else "served"
        on_event(ProgressEvent("done", 1.0, f"published {request.name} version {info.version}: {verdict}",
                               {"version": info.version, "met": report["accuracy"]["met"], "held": bool(hold)}))
        return QuantizeResult(request.name, info.version, info.path, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if staged is not None and staged.exists():  # not published: never visible, remove it
            shutil.rmtree(staged, ignore_errors=True)
