"""`--auto`: try a small, bounded set of recipes, rank them on a subset, keep the best.

Candidates differ in one knob each from the base recipe: SmoothQuant off, attention inputs kept in
float, the output layer kept in float, a different activation range estimator, asymmetric activations, per-channel activations
(only where the target supports them), full bias correction. Each is quantized with NNCF
and scored against the cached FP32 outputs on the ranking subset, in its own child process (one
per core, pinned; a candidate that crashes is reported, not fatal); the best model is kept, so the
winner is not quantized twice. Accuracy control (if still needed) runs only on the winner.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.errors import InternalError
from edgeq.quantization import accuracy, ptq, rules
from edgeq.quantization.recipe import Recipe

CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("base", {}),
    ("smoothquant-off", {"smooth_quant_alpha": -1.0}),
    ("attention-float", {"rules_extra": ("attention",)}),
    # A classifier's last FC decides on small logit gaps: on the ViT-S/14 probe, keeping it in float
    # raised top-1 agreement from 92.75 to 94.25 %. Models without such a layer skip this candidate.
    ("head-float", {"rules_extra": ("head",)}),
    # NNCF's default for per-tensor activations is already mean-of-minmax; plain min/max differs.
    ("range-minmax", {"activations_range": "minmax"}),
    # NNCF's own preset for ModelType.TRANSFORMER: an asymmetric range spends all 256 levels on a
    # one-sided input (after GELU), where a symmetric one leaves half unused.
    ("asymmetric-activations", {"preset": "mixed"}),
    ("per-channel-activations", {"per_channel_activations": True}),
    ("full-bias-correction", {"fast_bias_correction": False}),
)


# Full bias correction took 5 min on ViT-S/14 where the others took about 1.5 min (and it ruined
# MiniLM): a candidate this many times slower than the fastest finished one is stopped and reported.
SLOWEST_CANDIDATE = 2.5
SLOW_FIRST = "full-bias-correction"


def per_channel_activations_unsupported() -> str | None:
    """Why per-channel activation scales cannot be tried on the CPU target, or None if they can.

    NNCF's hardware description for CPU lists the quantizer configurations OpenVINO's CPU plugin
    executes; asking for others makes nncf.quantize refuse ("incompatible with HW capabilities").
    Read it instead of spending a child process to find out.
    """
    try:
        from nncf.common.hardware.config import get_hw_setup
        from nncf.common.hardware.opset import HWOpName
        from nncf.parameters import TargetDevice

        matmul = [op for op in get_hw_setup(TargetDevice.CPU) if op.type == HWOpName.MAT_MUL]
        if any(config.per_channel for op in matmul for space in op.activations for config in space.get_all_qconfigs()):
            return None
    except (ImportError, AttributeError) as error:  # NNCF moved its hardware description: do not guess
        return f"NNCF's CPU hardware description could not be read ({error})"
    return "not supported on CPU: NNCF's CPU hardware description allows per-tensor MatMul activations only"


def _skipped(overrides: dict[str, Any]) -> str | None:
    return per_channel_activations_unsupported() if overrides.get("per_channel_activations") else None


def _variant(base: Recipe, overrides: dict[str, Any]) -> Recipe:
    changes = dict(overrides)
    extra = changes.pop("rules_extra", ())
    if extra:
        changes["rules"] = tuple(dict.fromkeys((*base.rules, *extra)))
    return dataclasses.replace(base, **changes)


def _score_files(workdir: str, float_xml: str, calibration_npy: str, ranking_dir: str, metric: str) -> None:
    """Child side: quantize one candidate, score it on the ranking subset, write score.json."""
    from edgeq.quantization.ptq import _quantize_files

    started = time.perf_counter()
    _quantize_files(workdir, float_xml, calibration_npy)
    quantized_s = time.perf_counter() - started
    import openvino as ov

    ranking = Path(ranking_dir)
    inputs = np.load(ranking / "inputs.npy", mmap_mode="r")
    labels = np.load(ranking / "labels.npy") if (ranking / "labels.npy").exists() else None
    model = ov.Core().read_model(str(Path(workdir) / "int8.xml"))
    _, score = accuracy.evaluate(model, metric, inputs, np.load(ranking / "reference.npy"), labels)
    (Path(workdir) / "score.json").write_text(json.dumps({
        "score": score, "quantize_s": round(quantized_s, 2), "score_s": round(time.perf_counter() - started - quantized_s, 2)}))


def default_workers() -> int:
    """One candidate per core: each child is pinned to its own core (NNCF is largely single-threaded)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def search(float_model: Any, work: Path, calibration_npy: Path, ranking_inputs: np.ndarray, reference: np.ndarray,
           labels: np.ndarray | None, metric: str, base: Recipe, *, workers: int | None = None,
           cancelled: Callable[[], bool] = lambda: False) -> tuple[Recipe, Any, list[dict[str, Any]]]:
    """Return (best recipe, its INT8 model, one row per candidate); candidates run in parallel children."""
    import openvino as ov

    from edgeq.quantization.isolated import run_tasks

    work.mkdir(parents=True, exist_ok=True)
    float_xml = work / "float.xml"
    if not float_xml.exists():
        ov.save_model(float_model, str(float_xml), compress_to_fp16=False)
    ranking = work / "ranking"
    ranking.mkdir(exist_ok=True)
    np.save(ranking / "inputs.npy", np.asarray(ranking_inputs))
    np.save(ranking / "reference.npy", reference)
    if labels is not None:
        np.save(ranking / "labels.npy", labels)

    recipes: dict[str, tuple[Recipe, dict[str, Any]]] = {}
    tasks = []
    skipped: dict[str, str] = {}
    base_ignored = rules.ignored_names(rules.resolve(float_model, rules.parse_rules(list(base.rules))))
    for name, overrides in CANDIDATES:
        recipe = _variant(base, overrides)
        if recipe == base and name != "base":
            continue
        reason = _skipped(overrides)
        if reason:
            skipped[name] = reason
            continue
        ignored = rules.ignored_names(rules.resolve(float_model, rules.parse_rules(list(recipe.rules))))
        if name != "base" and overrides.get("rules_extra") and ignored == base_ignored:
            skipped[name] = f"the same as base: rule {', '.join(overrides['rules_extra'])} matched no node here"
            continue
        recipes[name] = (recipe, overrides)
        task = ptq.ptq_task(work / name, name, float_xml, calibration_npy, recipe, ignored)
        tasks.append(dataclasses.replace(task, target=_score_files,
                                         args=(*task.args, str(ranking), metric)))
    # The slow candidate starts first: it finishes or is cut while the others run beside it.
    order = sorted(tasks, key=lambda task: task.name != SLOW_FIRST)
    by_name = {o.name: o for o in run_tasks(order, workers=workers or default_workers(), cancelled=cancelled,
                                            slower_than_fastest=SLOWEST_CANDIDATE)}

    table: list[dict[str, Any]] = []
    best: tuple[float, str] | None = None
    for name, overrides in CANDIDATES:
        row: dict[str, Any] = {"candidate": name,
                               "changes": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}}
        if name in skipped:
            table.append({**row, "seconds": 0.0, "score": None, "skipped": skipped[name]})
            continue
        if name not in by_name:
            continue  # the same recipe as the base
        outcome = by_name[name]
        row["seconds"] = round(outcome.seconds, 2)
        if outcome.ok:
            row.update(json.loads((work / outcome.name / "score.json").read_text()))
            if best is None or row["score"] > best[0] + 1e-12:
                best = (row["score"], outcome.name)
        else:
            row.update(score=None, error=outcome.reason)
        table.append(row)
    if best is None:
        raise InternalError("every recipe candidate failed: " + "; ".join(f"{r['candidate']}: {r.get('error') or r.get('skipped')}" for r in table))
    next(row for row in table if row["candidate"] == best[1])["chosen"] = True
    model = ov.Core().read_model(str(work / best[1] / "int8.xml"))
    return recipes[best[1]][0], model, table
