"""The stages of one quantization job, each a small function over one `Context`.

A stage reads what earlier stages left in the context, leaves what later ones need, and returns
its typed section of the Report (edgeq.report.model). `pipeline.run` calls them in order.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import openvino as ov

from edgeq import data as datasets
from edgeq.compile import compile_cpu, cpu_description
from edgeq.data.samples import SampleSet, first, hold_out
from edgeq.errors import Cancelled, InvalidArgument
from edgeq.quantization import accuracy as metrics, fallback as control, graph, ptq, rules, sensitivity
from edgeq.quantization import plan as plans, speed as timing
from edgeq.quantization.attention import sqnr_and_attention
from edgeq.quantization.events import EventSink, ProgressEvent
from edgeq.quantization.recipe import Recipe
from edgeq.quantization.requantize import requantize
from edgeq.quantization.search import Searched, search as search_recipes
from edgeq.report.html import write_html
from edgeq.report.model import (AccuracySection, CalibrationData, CpuSection, DataSection, FallbackSection, LayersSection,
                                ModelSection, PlanSection, Report, RevertedLayer, RuleRow, SearchRow, SizeSection,
                                SpeedGate, SpeedSection, ValidationData)
from edgeq.sources import load_model
from edgeq.sources.spec import LoadedModel
from edgeq.store import ModelStore, VersionInfo
from edgeq.store.repository import save_float_ir

if TYPE_CHECKING:
    from edgeq.quantization.pipeline import QuantizeRequest


@dataclass
class Scored:
    model: ov.Model
    outputs: np.ndarray  # on the validation set
    score: float


@dataclass
class Context:
    """One job: its request, its work folder, and what each stage has produced so far (set in stage order)."""

    request: QuantizeRequest
    on_event: EventSink
    cancelled: Callable[[], bool]
    store: ModelStore
    work: Path  # NNCF runs in child processes: they read float.xml and calibration.npy from here
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    clock: tuple[str, float] | None = None  # the running stage and when it started
    staged: Path | None = None  # the version folder being written; removed unless published
    loaded: LoadedModel = field(init=False)  # load
    float_model: ov.Model = field(init=False)
    calibration: np.ndarray = field(init=False)  # data: memory maps of the work folder's .npy files
    validation: np.ndarray = field(init=False)
    labels: np.ndarray | None = field(init=False)
    reference: np.ndarray = field(init=False)  # reference: the float model's outputs at FP32
    float_score: float = field(init=False)
    recipe: Recipe = field(init=False)  # search
    searched: Searched | None = field(init=False)
    planned: plans.Planned | None = field(init=False)  # plan
    ignored: list[str] = field(init=False)  # quantize
    plain: Scored = field(init=False)
    final: Scored = field(init=False)  # restore_accuracy
    reverted: list[RevertedLayer] = field(init=False)

    def __post_init__(self) -> None:
        self.float_xml, self.calibration_npy = self.work / "float.xml", self.work / "calibration.npy"

    @cached_property
    def cpu(self) -> CpuSection:
        """Read when the speed gate or the report needs it, not at the start: it loads OpenVINO's CPU
        plugin, and a worker under a memory limit that loaded it before importing the model crashed in
        native code there instead of failing with an out-of-memory error."""
        return CpuSection(**cpu_description())

    @classmethod
    def start(cls, request: QuantizeRequest, on_event: EventSink, cancelled: Callable[[], bool]) -> Context:
        store = ModelStore(request.store)
        return cls(request, on_event, cancelled, store, store.staging_dir())

    def emit(self, stage: str, fraction: float, message: str, **values: Any) -> None:
        """Start timing `stage` and tell the caller; a cancelled job stops here."""
        if self.cancelled():
            raise Cancelled(f"job cancelled during {stage}")
        self.stop_clock()
        self.clock = (stage, time.perf_counter())
        self.on_event(ProgressEvent(stage, fraction, message, values))

    def stop_clock(self) -> None:
        if self.clock is not None:
            self.timings[self.clock[0]] = round(time.perf_counter() - self.clock[1], 3)
            self.clock = None

    def evaluate(self, model: ov.Model, known: np.ndarray | None = None) -> Scored:
        outputs, score = metrics.evaluate(model, self.request.options.metric, self.validation, self.reference,
                                          self.labels, known=known)
        return Scored(model, outputs, score)

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        if self.staged is not None and self.staged.exists():  # not published: never visible, remove it
            shutil.rmtree(self.staged, ignore_errors=True)


def load(ctx: Context) -> ModelSection:
    request = ctx.request
    ctx.emit("import", 0.02, f"importing {request.model}")
    loaded = ctx.loaded = load_model(request.model, weights=request.weights, input_shape=request.options.input_shape,
                                     preprocess=request.preprocess, output_node=request.options.output_node)
    ctx.float_model = loaded.model
    if loaded.preprocess_guessed:
        if any(datasets.is_image_archive(path) for path in (request.calibration, request.validation) if path):
            loaded.notes.append("image preprocessing not given: pixels scaled to [0, 1] without normalisation "
                                "(pass --mean/--std to match the model's training)")
        else:  # tensors are fed as they are: no preprocessing applies, none is reported
            loaded.preprocess = None
    ctx.warnings.extend(loaded.notes)
    return ModelSection(request.name, loaded.source, loaded.input, loaded.output_name, loaded.preprocess, loaded.notes,
                        loaded.inputs or [loaded.input])


def _materialise(samples: Any, path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """Stream samples into a .npy memory map (bounded RAM); labels as an array (or None). Named
    samples (edgeq.data.feed) make a structured array, its row type taken from the first sample."""
    data: np.memmap | None = None
    labels = np.full(len(samples), -1, dtype=np.int64)
    count = 0
    for sample in samples:
        if data is None:
            named = sample.input.dtype.names is not None
            data = np.lib.format.open_memmap(path, mode="w+", dtype=sample.input.dtype if named else np.float32,
                                             shape=(len(samples), *(() if named else shape)))
        elif sample.input.dtype != data.dtype and data.dtype.names is not None:
            raise InvalidArgument(f"{sample.name}: its arrays differ in shape from the first sample's "
                                  f"({sample.input.dtype} vs {data.dtype})")
        data[sample.index] = sample.input
        labels[sample.index] = -1 if sample.label is None else sample.label
        count += 1
    if count == 0 or data is None:
        raise InvalidArgument("the data set is empty")
    data.flush()
    return np.load(path, mmap_mode="r"), (labels if samples.has_labels else None)


def read_data(ctx: Context) -> DataSection:
    request, spec, preprocess = ctx.request, ctx.loaded.input, ctx.loaded.preprocess
    ctx.emit("data", 0.08, "reading calibration and validation data")
    def open_set(path: str | Path) -> SampleSet:
        return datasets.open_samples(path, spec, preprocess, inputs=ctx.loaded.inputs, tokenizer=ctx.loaded.tokenizer,
                                     max_length=request.options.max_length)

    calibration: SampleSet = open_set(request.calibration)
    validation: SampleSet
    held_out = request.validation is None
    if request.validation is None:
        calibration, validation = hold_out(calibration, request.options.holdout_fraction)
        ctx.warnings.append(f"no validation set: 1 in {round(1 / request.options.holdout_fraction)} calibration samples "
                            f"({len(validation)}) held out to measure accuracy")
    else:
        validation = open_set(request.validation)
    if request.options.validation_limit and len(validation) > request.options.validation_limit:
        validation = first(validation, request.options.validation_limit)
    ctx.calibration, _ = _materialise(first(calibration, request.recipe.subset_size), ctx.calibration_npy, spec.shape)
    ctx.validation, ctx.labels = _materialise(validation, ctx.work / "validation.npy", spec.shape)
    if request.options.metric == "top1" and ctx.labels is None:
        raise InvalidArgument("metric top1 needs labelled validation data (an .npz with 'labels' or class folders); "
                              "use --metric agreement for unlabelled data")
    return DataSection(CalibrationData(str(request.calibration), len(calibration), len(ctx.calibration)),
                       ValidationData(None if held_out else str(request.validation), len(ctx.validation), held_out,
                                      ctx.labels is not None))


def reference(ctx: Context) -> None:
    """The float model's outputs at true FP32 and its own score; its IR for the child processes."""
    ctx.emit("reference", 0.15, f"float reference at FP32 on {len(ctx.validation)} samples")
    ctx.reference = metrics.run(compile_cpu(ctx.float_model, precision="f32"), ctx.validation, len(ctx.validation))
    ctx.float_score = metrics.reference_score(ctx.request.options.metric, ctx.reference, ctx.labels)
    ov.save_model(ctx.float_model, str(ctx.float_xml), compress_to_fp16=False)


def search(ctx: Context) -> list[SearchRow] | None:
    """`--auto`: the best of a few recipes on a ranking subset (edgeq.quantization.search)."""
    request = ctx.request
    ctx.recipe, ctx.searched = request.recipe, None
    if not request.options.auto:
        return None
    ctx.emit("search", 0.2, "trying recipe candidates on a ranking subset")
    count = min(request.options.ranking_samples, len(ctx.validation))
    ctx.searched = search_recipes(
        ctx.float_model, ctx.work, ctx.calibration_npy, np.asarray(ctx.validation[:count]), ctx.reference[:count],
        None if ctx.labels is None else ctx.labels[:count], request.options.metric, request.recipe,
        workers=request.search_workers, search_calibration=request.options.search_calibration, cancelled=ctx.cancelled)
    ctx.recipe = ctx.searched.recipe
    return ctx.searched.rows


def plan(ctx: Context) -> PlanSection | None:
    """`--plan`: the layer groups in INT8 chosen by speed and accuracy on this CPU (edgeq.quantization.plan),
    from the recipe the search chose, on the ranking subset."""
    request = ctx.request
    ctx.planned = None
    if not request.options.plan:
        return None
    assert request.speed is not None  # QuantizeOptions refuses --plan without speed seconds
    groups, base, fixed = plans.group_nodes(ctx.float_model, ctx.recipe)
    ctx.emit("plan", 0.22, f"timing INT8 per layer group on this CPU ({', '.join(groups)})")
    count = min(request.options.ranking_samples, len(ctx.validation))
    inputs, reference = np.asarray(ctx.validation[:count]), ctx.reference[:count]
    labels = None if ctx.labels is None else ctx.labels[:count]

    def score(model: ov.Model) -> tuple[np.ndarray, float]:
        return metrics.evaluate(model, request.options.metric, inputs, reference, labels)

    example = np.asarray(ctx.calibration[0]) if ctx.loaded.named else None
    job = plans.PlanJob(ctx.float_model, ctx.work / "plan", ctx.float_xml, ctx.calibration_npy, ctx.recipe, score,
                        count, ctx.float_score, request.budget, request.speed,
                        timing.random_batch(ctx.loaded.input.shape, request.speed.batch_sizes[0], example), ctx.cancelled)
    ctx.planned = plans.plan(job, groups, base, fixed)
    return ctx.planned.section


def quantize(ctx: Context) -> list[RuleRow]:
    """NNCF PTQ with the recipe's ignored-scope rules (the search's winner or the chosen plan is already
    quantized; a plan also keeps its float groups out of INT8), and its score."""
    ctx.emit("quantize", 0.25, f"NNCF PTQ on {len(ctx.calibration)} calibration samples")
    matches = rules.resolve(ctx.float_model, rules.parse_rules(list(ctx.recipe.rules)))
    ctx.warnings.extend(f"rule {m.rule}: matched no node" for m in matches if not m.nodes and "WARNING" in m.note)
    ctx.ignored = rules.ignored_names(matches)
    searched, planned = ctx.searched, ctx.planned
    if planned:
        ctx.ignored, model = planned.ignored, planned.model
    else:
        model = searched.model if searched else ptq.quantize_isolated(
            ctx.work / "ptq", ctx.float_xml, ctx.calibration_npy, ctx.recipe, ctx.ignored, ctx.cancelled)
    ctx.emit("accuracy", 0.45, "measuring INT8 accuracy")
    ctx.plain = ctx.final = ctx.evaluate(model, known=searched.ranking_outputs if searched and not planned else None)
    ctx.reverted = []
    return [RuleRow(str(m.rule), m.rule.reason, len(m.nodes), m.nodes, m.note) for m in matches]


def _reverted(ctx: Context, layers: list[str], sqnr: dict[str, float], reason: str) -> list[RevertedLayer]:
    return [RevertedLayer(name, kind, sqnr.get(name), reason) for name, kind in graph.op_types(ctx.float_model, layers).items()]


def _requantize(ctx: Context, section: FallbackSection) -> None:
    """PTQ again with the lowest-SQNR layers in float (edgeq.quantization.requantize), at most 10 % of them."""
    plain, budget = ctx.plain, ctx.request.budget
    sqnr = sensitivity.per_layer_sqnr(ctx.float_model, plain.model, sorted(graph.quantized_ops(plain.model)),
                                      ctx.calibration[: max(ctx.request.options.sensitivity_samples, 4)])

    def score(model: ov.Model) -> tuple[np.ndarray, float]:
        scored = ctx.evaluate(model)
        return scored.outputs, scored.score

    outcome = requantize(ctx.work / "requantize", ctx.float_xml, ctx.calibration_npy, ctx.recipe, ctx.ignored,
                         sorted(sqnr, key=lambda name: sqnr[name]), score, lambda value: budget.met(ctx.float_score, value),
                         max(1, len(graph.quantizable_ops(ctx.float_model)) // 10), ctx.cancelled)
    section.requantize = outcome.steps
    if outcome.model is not None and outcome.score is not None and outcome.score > plain.score:
        ctx.final = Scored(outcome.model, outcome.outputs, outcome.score)
        section.status = "requantized"
        section.reverted = _reverted(ctx, outcome.reverted, sqnr, "lowest SQNR after plain PTQ; PTQ re-run with it in float")


def _accuracy_control(ctx: Context, section: FallbackSection) -> None:
    """NNCF's accuracy control in a child process with a time budget; kept only if it beats the model kept."""
    request = ctx.request
    assert request.fallback is not None
    params = control.ControlRequest(str(ctx.work), request.options.metric, ctx.recipe, ctx.ignored,
                                    request.budget.max_drop, request.budget.relative, request.fallback.max_iterations,
                                    request.fallback.ranking_subset_size)
    report, path = control.run_in_child(ctx.work / "fallback", params, ctx.reference, ctx.labels, request.fallback,
                                        ctx.cancelled)
    section.accuracy_control = report
    if path is None:
        ctx.warnings.append(f"accuracy control {report.status}: {report.reason}")
        return
    restored = ctx.evaluate(ov.Core().read_model(str(path)))
    report.score = restored.score
    if restored.score <= ctx.final.score:
        # Seen on MiniLM: reverting layers left bias corrections computed for their quantized
        # inputs in place, and cosine fell from 0.998 to 0.91. Never ship the worse model.
        ctx.warnings.append(f"accuracy control scored {restored.score:.4f}, not better than the model kept "
                            f"({ctx.final.score:.4f})")
        return
    ctx.final, section.status = restored, "accuracy control"
    layers = control.reverted_layers(graph.quantized_ops(ctx.plain.model), graph.quantized_ops(restored.model))
    sqnr = sensitivity.per_layer_sqnr(ctx.float_model, ctx.plain.model, layers,
                                      np.asarray(ctx.calibration[: request.options.sensitivity_samples]))
    section.reverted = _reverted(ctx, layers, sqnr, "ranked most harmful to the metric by accuracy control; "
                                                    "reverted to meet the budget")


def restore_accuracy(ctx: Context) -> FallbackSection:
    """When plain PTQ misses the budget: re-quantization first (bounded: at most log2 of 10 % of the layers
    NNCF runs), then, if still short, NNCF's accuracy control (it ranks every quantized op, so it gets a
    time budget: it did not finish in 600 s on ViT-S/14 and made MiniLM worse). Never worse than plain PTQ."""
    budget = ctx.request.budget
    if budget.met(ctx.float_score, ctx.plain.score):
        return FallbackSection(ran=False, status="not needed")
    if ctx.request.fallback is None:
        return FallbackSection(ran=False, status="disabled")
    unmeasurable = metrics.unmeasurable_budget(budget, ctx.request.options.metric, len(ctx.validation),
                                               ctx.float_score)
    if unmeasurable:
        ctx.warnings.append(unmeasurable)
        ctx.emit("fallback", 0.5, unmeasurable)
        return FallbackSection(ran=False, status="skipped", reason=unmeasurable)
    ctx.emit("fallback", 0.5, "accuracy below budget: re-quantizing with the least accurate layers in float",
             drop=budget.drop(ctx.float_score, ctx.plain.score))
    section = FallbackSection(ran=True, status="not improved")
    _requantize(ctx, section)
    if not budget.met(ctx.float_score, ctx.final.score):
        ctx.emit("accuracy-control", 0.6, "still below budget: NNCF accuracy control reverts quantizers one by one")
        _accuracy_control(ctx, section)
    ctx.reverted = section.reverted
    return section


def analyse(ctx: Context) -> LayersSection:
    """Per-layer SQNR and attention-map agreement of the final model against float."""
    ctx.emit("analyse", 0.7, "per-layer SQNR and attention maps")
    quantized = graph.quantized_ops(ctx.final.model)
    probe = np.asarray(ctx.calibration[: ctx.request.options.sensitivity_samples])
    sqnr, attention, unmeasured = sqnr_and_attention(ctx.float_model, ctx.final.model, sorted(quantized), probe)
    if unmeasured:
        ctx.warnings.append(f"{len(unmeasured)} layer(s) not measured (SQNR or attention), e.g. {unmeasured[0]}: "
                            "exposing their outputs changes what OpenVINO's CPU plugin computes for the INT8 model")
    return LayersSection(
        len(graph.quantizable_ops(ctx.float_model)), len(quantized), len(ctx.reverted),
        {name: value if math.isfinite(value) else ("inf" if value > 0 else "-inf") for name, value in sqnr.items()},
        dict(sorted(attention.items(), key=lambda item: item[1])))


def score(ctx: Context) -> AccuracySection:
    """The final model's score against the budget, and the other metrics as diagnostics."""
    metric, final, reference = ctx.request.options.metric, ctx.final, ctx.reference
    budget, met = ctx.request.budget, ctx.request.budget.met(ctx.float_score, final.score)
    drop = budget.drop(ctx.float_score, final.score)
    neighbours: dict[str, Any] = (metrics.neighbours(final.outputs, reference) or {}) if metric == "cosine" else {}
    return AccuracySection(
        metric, ctx.float_score, ctx.plain.score, final.score, drop, budget.drop(ctx.float_score, ctx.plain.score),
        budget, met, "within budget" if met else f"BUDGET NOT MET: drop {drop:.4f} > {budget.max_drop:.4f}",
        agreement=float(metrics.per_sample("agreement", final.outputs, reference, ctx.labels).mean())
        if reference.ndim == 2 else None,
        cosine=float(metrics.per_sample("cosine", final.outputs, reference, ctx.labels).mean()), **neighbours)


def speed(ctx: Context) -> tuple[SpeedSection | None, SpeedGate | None]:
    """INT8 against float throughput on this CPU, and the speed gate a version must pass to be served."""
    request = ctx.request
    if not request.speed:
        return None, None
    ctx.emit("speed", 0.8, "INT8 against float throughput and latency on this CPU")
    example = np.asarray(ctx.calibration[0]) if ctx.loaded.named else None
    measured = timing.compare(ctx.float_model, ctx.final.model, ctx.loaded.input.shape, request.speed, example)
    speedup = next(iter(measured.batches.values())).speedup_vs_default
    met = speedup >= request.options.min_speedup  # min_speedup 0: no gate, always met
    if not met:
        flags = set(ctx.cpu.isa_flags)
        why = ("this CPU has int8 dot-product units (VNNI/AMX), so the quantize/reorder layers INT8 adds outweigh "
               "its faster matmuls at this model size and batch" if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}
               else f"no VNNI or AMX on this CPU ({', '.join(sorted(flags)) or 'ISA unknown'}): int8 matmuls are "
               "no faster than float ones")
        outcome = ("served anyway (forced)" if request.options.force_promote else
                   "stored but not served: promote it with `edgeq models promote` or quantize with --force")
        ctx.warnings.append(f"INT8 runs at x{speedup:.2f} the throughput of the default float model on this CPU "
                            f"(speed gate x{request.options.min_speedup}): {why}; {outcome}")
    forced = request.options.force_promote
    planned, reason = ctx.planned, None
    if planned and not planned.section.beats_float:  # the plans' own timing decides: held, with its reason
        met, reason = False, plans.held_reason(planned.section.float_default_precision)
        ctx.warnings.append(f"{planned.section.reason}; " + ("served anyway (forced)" if forced else
                            "stored but not served: promote it with `edgeq models promote` or quantize with --force"))
    return measured, SpeedGate(request.options.min_speedup, speedup, met, forced, met or forced, reason)


def save(ctx: Context) -> SizeSection:
    """The final model into a staging folder of the store; its size against the float model's."""
    ctx.emit("report", 0.9, "writing the report")
    ctx.staged = ctx.store.staging_dir()
    ov.save_model(ctx.final.model, str(ctx.staged / "model.xml"), compress_to_fp16=False)
    if not ctx.request.options.no_float_ir:  # the serving machine measures both (edgeq.runtime.choice)
        save_float_ir(ctx.float_model, ctx.staged)
    float_bytes, int8_bytes = timing.model_size_bytes(ctx.float_model), (ctx.staged / "model.bin").stat().st_size
    return SizeSection(float_bytes, int8_bytes, float_bytes / max(1, int8_bytes))


def timings(ctx: Context) -> dict[str, float]:
    """Seconds per stage and in all; stops the clock."""
    ctx.stop_clock()
    return {**ctx.timings, "total": round(time.perf_counter() - ctx.started, 2)}


def publish(ctx: Context, report: Report) -> VersionInfo:
    """edgeq.json and report.html beside the model, then the version into the store, atomically.
    A version that misses the speed gate is stored and reported but not served, unless forced."""
    assert ctx.staged is not None
    (ctx.staged / "edgeq.json").write_text(json.dumps(report.to_dict(), indent=2))
    write_html(report, ctx.staged / "report.html")
    name, gate = ctx.request.name, report.speed_gate
    ctx.emit("publish", 0.97, f"publishing {name}")
    hold = None if not gate or gate.met or ctx.request.options.force_promote else gate.reason or (
        f"INT8 runs at x{gate.speedup_vs_default:.2f} the default float model's throughput on this CPU, "
        f"below the speed gate x{gate.min_speedup}")
    info = ctx.store.publish(name, ctx.staged, {"model": name, "cpu": report.to_dict()["cpu"]}, hold=hold,
                             job=ctx.request.job_id)
    verdict = f"held back from serving ({hold})" if hold else "served"
    ctx.on_event(ProgressEvent("done", 1.0, f"published {name} version {info.version}: {verdict}",
                               {"version": info.version, "met": report.accuracy.met, "held": bool(hold)}))
    return info
