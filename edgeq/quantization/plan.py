"""`--plan`: which layer groups run in INT8, chosen by speed and accuracy measured on this CPU.

INT8 does not pay everywhere: on CPUs whose default float is BF16, a group's quantize/reorder
overheads can outweigh its faster matmuls, and some groups cost more accuracy than others. A plan
is the set of layer groups (`rules.LAYER_GROUPS`, attention, head) kept in float; the recipe's own
rules (LayerNorm, Softmax, ...) stay in float in every plan.

1. Group gains: the all-INT8 plan and, for each group, the plan with only that group in float are
   quantized from one NNCF statistics pass (`ptq.quantize_many`), scored against the cached FP32
   outputs and timed as whole models beside the float default, alternating (`speed.throughputs`).
   A group's INT8 speed-up is all-INT8's throughput over the throughput with that group in float;
   what INT8 costs on it is the score its float plan recovers.
2. Greedy plans: groups are put in float in this order: first those INT8 slows down (slowest
   first: free speed), then those INT8 speeds up, least speed-up per point of accuracy first; a
   group whose float plan recovers nothing stays INT8. Each prefix of that order is a plan; they
   are quantized from a second statistics pass, scored and timed (beside the float default again).
3. The choice: the fastest plan within the accuracy budget; without one, the most accurate (the
   fallback continues from it). When even the chosen plan is not faster than the float default,
   `beats_float` is False and the version is held (stages.speed), with the reason.

"Float" for a group is what an ignored scope gives: the CPU plugin's default float precision (BF16
on CPUs with AVX512-BF16 or AMX, FP32 elsewhere), which is the fast float. FP32 for one group under
a BF16 default is not offered: see FP32_PER_GROUP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edgeq.errors import InternalError, InvalidArgument
from edgeq.quantization import ptq, rules
from edgeq.quantization import speed as timing
from edgeq.quantization.accuracy import Budget
from edgeq.quantization.isolated import run_tasks
from edgeq.quantization.recipe import Recipe
from edgeq.report.model import FLOAT_DEFAULT, GroupGain, PlanRow, PlanSection

PLAN_GROUPS = ("patch-embed", "qkv", "attention", "proj", "fc1", "fc2", "head")
ALL_INT8 = "all INT8"
FP32_PER_GROUP = (
    "a group kept in float runs in the CPU plugin's default float precision; FP32 for one group under a "
    "BF16 default is not offered: the plugin keeps a node in f32 when its rt_info disables precision "
    "conversion (DisablePrecisionConversion) for MVN, Eltwise and Convolution nodes, but its MatMul-to-"
    "FullyConnected conversion drops that mark, so a group's MatMuls run in BF16 anyway")

Scorer = Callable[[ov.Model], tuple[np.ndarray, float]]


@dataclass(frozen=True)
class Candidate:
    float_groups: tuple[str, ...]
    ignored: list[str]

    @property
    def name(self) -> str:
        return ALL_INT8 if not self.float_groups else "float: " + "+".join(self.float_groups)


@dataclass
class Planned:
    model: ov.Model
    ignored: list[str]  # every node the chosen plan keeps in float (recipe rules and float groups)
    section: PlanSection


@dataclass(frozen=True)
class PlanJob:
    """What planning needs from the job: files for NNCF's children, a scorer and the speed settings."""

    float_model: ov.Model
    work: Path
    float_xml: Path
    calibration_npy: Path
    recipe: Recipe
    score: Scorer  # on the ranking subset, against the cached FP32 outputs
    ranked_on: int
    float_score: float
    budget: Budget
    speed: timing.SpeedSettings
    batch: dict[Any, np.ndarray]
    cancelled: Callable[[], bool] = lambda: False


def group_nodes(model: ov.Model, recipe: Recipe) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """(nodes each plan group adds to the recipe's ignored scope, the recipe's ignored names, the
    groups the recipe already keeps in float). Groups that match no node here are left out."""
    base = rules.ignored_names(rules.resolve(model, rules.parse_rules(list(recipe.rules))))
    fixed = [group for group in PLAN_GROUPS if group in recipe.rules]
    free = [group for group in PLAN_GROUPS if group not in recipe.rules]
    nodes = {str(match.rule): sorted(set(match.nodes) - set(base))
             for match in rules.resolve(model, rules.parse_rules(free))}
    return {group: names for group, names in nodes.items() if names}, base, fixed


def greedy_order(gains: list[GroupGain]) -> list[str]:
    """The order groups go to float: those INT8 slows (slowest first), then those that recover
    accuracy, least INT8 speed-up per point recovered first. Others stay INT8 in every plan."""
    slows = sorted((g for g in gains if g.int8_speedup <= 1.0), key=lambda g: g.int8_speedup)
    costly = sorted((g for g in gains if g.int8_speedup > 1.0 and g.score_recovered > 0),
                    key=lambda g: (g.int8_speedup - 1.0) / g.score_recovered)
    return [g.group for g in (*slows, *costly)]


def front(rows: list[PlanRow]) -> None:
    """Mark the rows no other row beats on both speed and score (ties do not dominate)."""
    for row in rows:
        row.on_front = not any(
            other.speedup_vs_default >= row.speedup_vs_default and other.score >= row.score
            and (other.speedup_vs_default > row.speedup_vs_default or other.score > row.score) for other in rows)


def held_reason(precision: str) -> str:
    """Why a version whose best plan is not faster than the float default is held back."""
    return f"no INT8 plan beats {precision} on this CPU"


def choose(rows: list[PlanRow], precision: str, budget: Budget) -> tuple[PlanRow, bool, str]:
    """The chosen INT8 plan, whether it beats the float default, and why it won."""
    int8 = [row for row in rows if row.plan != FLOAT_DEFAULT]
    within = [row for row in int8 if row.within_budget]
    if within:
        best = max(within, key=lambda row: (row.speedup_vs_default, row.score))
        why = (f"{best.plan} is the fastest of the {len(within)} plan(s) within the budget (drop {best.drop:.4f} "
               f"<= {budget.max_drop:g}{' relative' if budget.relative else ''}), at x{best.speedup_vs_default:.2f} "
               f"the {precision} float default")
        faster = [row for row in int8 if row.speedup_vs_default > best.speedup_vs_default]
        if faster:
            quickest = max(faster, key=lambda row: row.speedup_vs_default)
            why += f"; faster plans miss the budget ({quickest.plan}: x{quickest.speedup_vs_default:.2f}, " \
                   f"drop {quickest.drop:.4f})"
    else:
        best = max(int8, key=lambda row: (row.score, row.speedup_vs_default))
        why = f"no plan meets the budget: {best.plan} is the most accurate (drop {best.drop:.4f}), the fallback continues from it"
    beats = best.speedup_vs_default > 1.0
    if not beats:
        why = f"{held_reason(precision)}: {why}"
    best.chosen = True
    return best, beats, why


def _directory(folder: Path, candidate: Candidate) -> Path:
    return folder / candidate.name.replace(": ", "-").replace("+", "_").replace(" ", "-")


def _quantize(job: PlanJob, folder: Path, candidates: list[Candidate], smoothed: Path | None) -> dict[str, ov.Model]:
    """Every candidate's INT8 model, from one statistics pass where the recipe allows (one NNCF run each otherwise)."""
    if ptq.shares_statistics(ptq.from_smoothed(job.recipe) if smoothed else job.recipe):
        members = [(_directory(folder, c), job.recipe, c.ignored) for c in candidates]
        task = ptq.many_task(folder / "shared-statistics", "plans", members, job.float_xml, job.calibration_npy, smoothed)
        (outcome,) = run_tasks([task], cancelled=job.cancelled)
        if not outcome.ok:
            raise InternalError(f"quantizing the precision plans failed: {outcome.reason}")
        return {c.name: ov.Core().read_model(str(_directory(folder, c) / "int8.xml")) for c in candidates}
    return {c.name: ptq.quantize_isolated(_directory(folder, c), job.float_xml, job.calibration_npy, job.recipe, c.ignored,
                                          job.cancelled, smoothed_xml=smoothed) for c in candidates}


def _measure(job: PlanJob, models: dict[str, ov.Model]) -> tuple[dict[str, float], dict[str, float], str]:
    """Each model's score, and its throughput (the float default's too), timed in one alternating run."""
    scores = {name: job.score(model)[1] for name, model in models.items()}
    measured, precision = timing.throughputs({FLOAT_DEFAULT: job.float_model, **models}, job.batch, job.speed)
    return scores, measured, precision


def plan(job: PlanJob, groups: dict[str, list[str]], base: list[str], fixed: list[str]) -> Planned:
    """Measure the groups' gains, try the greedy plans, choose (see the module docstring)."""
    if not groups:
        raise InvalidArgument(f"--plan: no layer group ({', '.join(PLAN_GROUPS)}) of this model is left to plan: each "
                              "matches no node or is in the recipe's rules")
    job.work.mkdir(parents=True, exist_ok=True)
    irs, _ = ptq.shared_smoothing(job.work / "smoothing", job.float_xml, job.calibration_npy, [job.recipe],
                                  job.cancelled)
    smoothed = next(iter(irs.values()), None)

    def candidate(float_groups: tuple[str, ...]) -> Candidate:
        return Candidate(float_groups, sorted({*base, *(n for g in float_groups for n in groups[g])}))

    first = [candidate(())] + [candidate((group,)) for group in groups]
    scores, throughput, precision = _measure(job, _quantize(job, job.work / "round1", first, smoothed))
    speedup = {name: value / throughput[FLOAT_DEFAULT] for name, value in throughput.items()}
    gains = [GroupGain(c.float_groups[0], len(groups[c.float_groups[0]]), throughput[ALL_INT8] / throughput[c.name],
                       scores[c.name], scores[c.name] - scores[ALL_INT8]) for c in first[1:]]

    order = greedy_order(gains)
    # Every group in float is the float model run through NNCF: not an INT8 plan (the float default row is it).
    second = [candidate(tuple(order[:k])) for k in range(2, min(len(order), len(groups) - 1) + 1)]
    if second:  # timed beside the float default again: a plan's speed-up is always against its own run
        more_scores, more, _ = _measure(job, _quantize(job, job.work / "round2", second, smoothed))
        scores |= more_scores
        speedup |= {name: value / more[FLOAT_DEFAULT] for name, value in more.items() if name != FLOAT_DEFAULT}
        throughput |= {name: value for name, value in more.items() if name != FLOAT_DEFAULT}

    default_score = job.score(job.float_model)[1]
    rows = [PlanRow(FLOAT_DEFAULT, list(groups), [], throughput[FLOAT_DEFAULT], 1.0, default_score,
                    job.budget.drop(job.float_score, default_score), job.budget.met(job.float_score, default_score))]
    candidates = first + second
    for c in candidates:
        rows.append(PlanRow(c.name, list(c.float_groups), [g for g in groups if g not in c.float_groups],
                            throughput[c.name], speedup[c.name], scores[c.name],
                            job.budget.drop(job.float_score, scores[c.name]),
                            job.budget.met(job.float_score, scores[c.name])))
    front(rows)
    best, beats, why = choose(rows, precision, job.budget)
    chosen = next(c for c in candidates if c.name == best.plan)
    section = PlanSection(gains, fixed, rows, precision, best.plan, beats, why, job.ranked_on,
                          len(next(iter(job.batch.values()))), job.speed.rounds, job.speed.seconds_per_round,
                          FP32_PER_GROUP)
    folder = job.work / ("round1" if chosen in first else "round2")
    return Planned(ov.Core().read_model(str(_directory(folder, chosen) / "int8.xml")), chosen.ignored, section)
