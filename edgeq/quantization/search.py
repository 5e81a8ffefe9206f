"""`--auto`: try a small, bounded set of recipes, rank them on a subset, keep the best.

Candidates differ in one knob each from the base recipe: SmoothQuant off or at a lower alpha, attention in float (in
int8 when the base keeps it float, as the default rules do), the output layer kept in float, a different activation
range estimator, asymmetric activations, per-channel activations (only where the target supports them), full bias
correction. Each is quantized with NNCF
and scored against the cached FP32 outputs on the ranking subset, in child processes (one per
core, pinned; a candidate that crashes is reported, not fatal).

Two rounds, because most of an NNCF run is statistics collection, which scales with the
calibration samples: the first round quantizes every candidate on a spread-out subset of the
calibration set (`SEARCH_CALIBRATION` samples) and ranks it on `SEARCH_RANKING` samples; the second
quantizes the finalists on the whole calibration set and ranks them on the whole ranking subset:
the first round's best and either the combination of every knob that beat the base or, without
one, the runner-up. SmoothQuant, the first of NNCF's two
statistics passes, runs once per search on the whole calibration set, one pass for every alpha
tried (`ptq.shared_smoothing`); candidates with the base's alphas that differ only in range settings
and ignored scope share the second pass too (`ptq.quantize_many`), and are scored in their own children.
The best second-round model is kept, so the winner is not quantized again. The fallback (if still
needed) runs only on the winner.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edgeq.errors import InternalError
from edgeq.quantization import accuracy, nncf_adapter, ptq, rules
from edgeq.quantization.isolated import Task, run_tasks
from edgeq.quantization.recipe import Recipe
from edgeq.report.model import SearchRow

CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("base", {}),
    ("smoothquant-off", {"smooth_quant_alpha": -1.0}),
    # NNCF's MatMul alpha 0.95 moves almost all of an outlier channel's range into the weights, and
    # the weights' rounding then makes most of INT8's error; a lower alpha trades weight error for
    # activation error, and 0.85 was the best trade in the alpha scan of docs/accuracy.md.
    ("smoothquant-0.85", {"smooth_quant_alpha": 0.85}),
    # Attention is float in the default rules; a base without the rule tries it, a base with it tries int8 attention
    # (a candidate equal to the base is not run).
    ("attention-float", {"rules_extra": ("attention",)}),
    ("attention-int8", {"rules_drop": ("attention",)}),
    # A classifier's last FC decides on small logit gaps, so rounding its input flips near-ties
    # (docs/accuracy.md, the head rule). Models without such a layer skip this candidate.
    ("head-float", {"rules_extra": ("head",)}),
    # NNCF's default for per-tensor activations is already mean-of-minmax; plain min/max differs.
    ("range-minmax", {"activations_range": "minmax"}),
    # NNCF's own preset for ModelType.TRANSFORMER: an asymmetric range spends all 256 levels on a
    # one-sided input (after GELU), where a symmetric one leaves half unused.
    ("asymmetric-activations", {"preset": "mixed"}),
    ("per-channel-activations", {"per_channel_activations": True}),
    ("full-bias-correction", {"fast_bias_correction": False}),
)


# Full bias correction is several times slower than the other candidates (and rarely wins): a
# candidate this many times slower than the fastest finished one is stopped and reported. The
# one-candidate tasks take about the same time, so the cut can sit close above 1x; a looser cut lets
# the stopped candidate hold a core for much of the first round.
SLOWEST_CANDIDATE = 1.5
SLOW_FIRST = "full-bias-correction"
# First-round calibration samples per candidate. Most of an NNCF run is statistics collection,
# which grows with the samples; the finalists are quantized on the whole set.
SEARCH_CALIBRATION = 100
# First-round ranking samples (spread over the ranking subset). Scoring was a large share of the
# first round's core time; the finalists are ranked on the whole ranking subset, and only they can
# be chosen.
SEARCH_RANKING = 100


def _skipped(overrides: dict[str, Any]) -> str | None:
    return nncf_adapter.per_channel_activations_unsupported() if overrides.get("per_channel_activations") else None


def with_changes(base: Recipe, overrides: dict[str, Any]) -> Recipe:
    """`base` with a candidate's changes (as in CANDIDATES, or a report's `SearchRow.changes`, whose
    tuples JSON made lists): fields replaced, rules added or dropped."""
    changes: dict[str, Any] = {key: tuple(value) if isinstance(value, list) else value
                               for key, value in overrides.items()}
    extra, drop = changes.pop("rules_extra", ()), changes.pop("rules_drop", ())
    if extra or drop:
        changes["rules"] = tuple(rule for rule in dict.fromkeys((*base.rules, *extra)) if rule not in drop)
    return dataclasses.replace(base, **changes)


def _score_files(workdir: str, ranking_dir: str, metric: str) -> None:
    """Child side: score workdir/int8.xml on the ranking subset; score.json and the outputs beside it."""
    ranking = Path(ranking_dir)
    inputs = np.load(ranking / "inputs.npy", mmap_mode="r")
    labels = np.load(ranking / "labels.npy") if (ranking / "labels.npy").exists() else None
    model = ov.Core().read_model(str(Path(workdir) / "int8.xml"))
    reference = np.load(ranking / "reference.npy")
    outputs, score = accuracy.evaluate(model, metric, inputs, reference, labels)
    cosine = float(accuracy.per_sample("cosine", outputs, reference, labels).mean())
    np.save(Path(workdir) / "outputs.npy", outputs)
    (Path(workdir) / "score.json").write_text(json.dumps({"score": score, "cosine": cosine}))


def default_workers() -> int:
    """One candidate per core: each child is pinned to its own core (NNCF is largely single-threaded)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _spread(total: int, count: int) -> np.ndarray:
    """Indices of `count` samples spread evenly over `total` (every k-th, first and last included)."""
    return np.linspace(0, total - 1, min(count, total)).round().astype(np.int64)


def _ranking_set(folder: Path, inputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None,
                 count: int) -> Path:
    """A folder the scoring children read: `count` ranking samples spread over the set, their FP32 outputs, labels."""
    folder.mkdir(parents=True, exist_ok=True)
    chosen = _spread(len(inputs), count)
    np.save(folder / "inputs.npy", np.asarray(inputs[chosen]))
    np.save(folder / "reference.npy", reference[chosen])
    if labels is not None:
        np.save(folder / "labels.npy", labels[chosen])
    return folder


def spread_subset(calibration_npy: Path, count: int, target: Path) -> Path:
    """Every k-th calibration sample (not the first `count`: archives come sorted by class)."""
    calibration = np.load(calibration_npy, mmap_mode="r")
    if count >= len(calibration):
        return calibration_npy
    np.save(target, np.asarray(calibration[_spread(len(calibration), count)]))
    return target


def combine(rows: list[SearchRow]) -> dict[str, Any]:
    """One set of overrides from several one-knob candidates; rules added or dropped add up, other knobs keep
    the first value."""
    merged: dict[str, Any] = {}
    for row in rows:
        for key, value in row.changes.items():
            if key in ("rules_extra", "rules_drop"):
                merged[key] = tuple(dict.fromkeys((*merged.get(key, ()), *value)))
            else:
                merged.setdefault(key, value)
    return merged


class _Round:
    """Quantize and score a set of candidates in parallel children; one report row each, saying which
    round it ran in and on how many calibration samples."""

    def __init__(self, float_model: Any, work: Path, float_xml: Path, metric: str, base: Recipe,
                 workers: int, cancelled: Callable[[], bool], smoothed: tuple[dict[str, Path], float]):
        self.float_model, self.work, self.float_xml = float_model, work, float_xml
        self.metric, self.base, self.workers, self.cancelled = metric, base, workers, cancelled
        self.base_ignored = self.ignored(base)
        # The shared SmoothQuant IRs by ptq.smoothing_key (a recipe without one smooths itself) and their seconds.
        self.smoothed_irs, self.smoothing_s = smoothed

    def ignored(self, recipe: Recipe) -> list[str]:
        return rules.ignored_names(rules.resolve(self.float_model, rules.parse_rules(list(recipe.rules))))

    def plan(self, candidates: list[tuple[str, dict[str, Any]]], samples: int, round_number: int
             ) -> tuple[list[tuple[SearchRow, Recipe, list[str]]], list[SearchRow]]:
        """(row, recipe, ignored names) for each candidate to quantize, and every row, skipped ones included."""
        planned, rows = [], []
        for name, overrides in candidates:
            recipe = with_changes(self.base, overrides)
            if recipe == self.base and name != "base":
                continue  # the same recipe as the base: nothing to try
            row = SearchRow(name, round_number, samples, {k: list(v) if isinstance(v, tuple) else v
                                                          for k, v in overrides.items()}, seconds=0.0, score=None)
            row.skipped = _skipped(overrides)
            ignored = self.ignored(recipe)
            changed_rules = (*overrides.get("rules_extra", ()), *overrides.get("rules_drop", ()))
            if not row.skipped and name != "base" and changed_rules and ignored == self.base_ignored:
                row.skipped = f"the same as base: rule {', '.join(changed_rules)} matched no node here"
            if not row.skipped:
                planned.append((row, recipe, ignored))
            rows.append(row)
        return planned, rows

    def _smoothed_ir(self, recipe: Recipe) -> Path | None:
        """The shared SmoothQuant IR the recipe quantizes from; None: the float model (and its own SmoothQuant, if any)."""
        key = ptq.smoothing_key(recipe)
        return None if key is None else self.smoothed_irs.get(key)

    def _alone(self, folder: Path, calibration_npy: Path, row: SearchRow, recipe: Recipe,
               ignored: list[str]) -> tuple[Any, list[SearchRow]]:
        """A task quantizing one candidate with its own statistics pass."""
        return ptq.ptq_task(folder / row.candidate, row.candidate, self.float_xml, calibration_npy, recipe,
                            ignored, self._smoothed_ir(recipe)), [row]

    def quantize_tasks(self, planned: list[tuple[SearchRow, Recipe, list[str]]], folder: Path,
                       calibration_npy: Path) -> list[tuple[Any, list[SearchRow]]]:
        """(task, the rows it quantizes): one task for all candidates that can share NNCF's statistics
        pass (`ptq.quantize_many`: the base's input model, fast bias correction), one task for each other."""
        group_input = self._smoothed_ir(self.base)
        tasks: list[tuple[Any, list[SearchRow]]] = []
        together: list[tuple[SearchRow, Recipe, list[str]]] = []
        for row, recipe, ignored in planned:
            smoothed = self._smoothed_ir(recipe)
            if smoothed is not None:
                row.shared_smoothquant_s = self.smoothing_s
            if smoothed == group_input and ptq.shares_statistics(ptq.from_smoothed(recipe) if smoothed else recipe):
                together.append((row, recipe, ignored))
            else:
                tasks.append(self._alone(folder, calibration_npy, row, recipe, ignored))
        if len(together) == 1:
            tasks.append(self._alone(folder, calibration_npy, *together[0]))
        elif together:
            members = [(folder / row.candidate, recipe, ignored) for row, recipe, ignored in together]
            task = ptq.many_task(folder / "shared-statistics", "shared statistics", members, self.float_xml,
                                 calibration_npy, group_input)
            # Several candidates' work in one child: it sets the pace for the slow candidate (as one
            # candidate would, which is generous), and is not itself cut.
            tasks.append((dataclasses.replace(task, cut_if_slow=False), [row for row, _, _ in together]))
        # The slow candidate starts first (it finishes or is cut while the others run beside it), then
        # a one-candidate task, the first to finish, which sets the pace the slow one is held to; then
        # the longest first, so that no core idles at the end while the shared pass still runs.
        slow = [item for item in tasks if item[0].name == SLOW_FIRST]
        rest = sorted((item for item in tasks if item[0].name != SLOW_FIRST), key=lambda item: len(item[1]))
        return slow + rest[:1] + sorted(rest[1:], key=lambda item: -len(item[1]))

    def run(self, candidates: list[tuple[str, dict[str, Any]]], calibration_npy: Path, samples: int,
            ranking: Path, round_number: int, slower_than_fastest: float | None) -> list[SearchRow]:
        folder = self.work / f"round{round_number}"
        planned, rows = self.plan(candidates, samples, round_number)
        ranked_on = len(np.load(ranking / "inputs.npy", mmap_mode="r"))
        for row, _, _ in planned:
            row.ranked_on = ranked_on
        quantizing = self.quantize_tasks(planned, folder, calibration_npy)
        rows_of = {task.name: members for task, members in quantizing}

        def scoring(task: Any) -> list[Any]:
            return [Task(f"{row.candidate} scoring", _score_files, (str(folder / row.candidate), str(ranking),
                                                                  self.metric), str(folder / row.candidate))
                    for row in rows_of.get(task.name, [])]

        def run(tasks: list[tuple[Any, list[SearchRow]]], pace: float | None) -> dict[str, Any]:
            return {o.name: o for o in run_tasks([task for task, _ in tasks], workers=self.workers, cancelled=self.cancelled,
                                                 slower_than_fastest=pace, then=scoring)} if tasks else {}

        outcomes = run(quantizing, slower_than_fastest)
        group = next(((task, members) for task, members in quantizing
                      if len(members) > 1 and not outcomes[task.name].ok), None)
        if group is not None:
            # One candidate's failure must not take the others with it: quantize them one by one.
            for row in group[1]:
                row.shared_statistics_failed = outcomes[group[0].name].reason
            alone = [self._alone(folder, calibration_npy, row, recipe, ignored)
                     for row, recipe, ignored in planned if row in group[1]]
            quantizing = [item for item in quantizing if item[0] is not group[0]] + alone
            rows_of.update({task.name: members for task, members in alone})
            outcomes.update(run(alone, None))
        for task, members in quantizing:
            _record(task, members, outcomes, folder)
        return rows


def _record(task: Any, rows: list[SearchRow], outcomes: dict[str, Any], folder: Path) -> None:
    """Fill the rows one quantization task made: its time (shared evenly in a group), score and errors."""
    quantized = outcomes[task.name]
    timings = Path(task.workdir, "timings.json")
    shared = json.loads(timings.read_text()) if len(rows) > 1 and timings.exists() else None
    for index, row in enumerate(rows):
        row.quantize_s = round(quantized.seconds / len(rows), 2)
        if len(rows) > 1:
            row.shared_statistics = {"with": [r.candidate for r in rows if r is not row],
                                     "task_s": round(quantized.seconds, 2), **(
                                         {"pass_s": shared["statistics_s"], "own_step_s": shared["apply_s"][index]}
                                         if shared else {})}
        scored = outcomes.get(f"{row.candidate} scoring")
        row.score_s = round(scored.seconds, 2) if scored else None
        row.seconds = round(row.quantize_s + (row.score_s or 0.0), 2)
        if not quantized.ok:
            row.error = quantized.reason
        elif scored is None or not scored.ok:
            row.error = f"scoring failed: {scored.reason if scored else 'not run'}"
        else:
            score = json.loads((folder / row.candidate / "score.json").read_text())
            row.score, row.cosine = score["score"], score["cosine"]


@dataclasses.dataclass
class Searched:
    recipe: Recipe
    model: Any  # the winner's INT8 model
    rows: list[SearchRow]  # one per candidate and round, for the report
    ranking_outputs: np.ndarray  # the winner's outputs on the ranking subset: not computed twice


def rank_key(row: SearchRow) -> tuple[float, float]:
    """The metric first, the output cosine to FP32 on ties: agreement on N images moves in steps
    of 1/N, so candidates often tie on it. Only for scored rows."""
    assert row.score is not None
    return row.score, row.score if row.cosine is None else row.cosine


def _ranked(rows: list[SearchRow]) -> list[SearchRow]:
    return sorted((r for r in rows if r.score is not None), key=rank_key, reverse=True)


def search(float_model: Any, work: Path, calibration_npy: Path, ranking_inputs: np.ndarray, reference: np.ndarray,
           labels: np.ndarray | None, metric: str, base: Recipe, *, workers: int | None = None,
           search_calibration: int = SEARCH_CALIBRATION, search_ranking: int = SEARCH_RANKING,
           cancelled: Callable[[], bool] = lambda: False) -> Searched:
    """The best recipe, its INT8 model and outputs on the ranking subset, and one row per candidate
    and round; candidates run in parallel children."""
    work.mkdir(parents=True, exist_ok=True)
    float_xml = work / "float.xml"
    if not float_xml.exists():
        ov.save_model(float_model, str(float_xml), compress_to_fp16=False)
    full = min(base.subset_size, len(np.load(calibration_npy, mmap_mode="r")))
    first_samples = min(search_calibration, full)
    on_subset = first_samples < full
    ranking = _ranking_set(work / "ranking", ranking_inputs, reference, labels, len(ranking_inputs))
    # A first round that only picks finalists ranks on fewer samples; its best is not kept.
    first_ranking = _ranking_set(work / "ranking-first", ranking_inputs, reference, labels, search_ranking) \
        if on_subset and search_ranking < len(ranking_inputs) else ranking
    # SmoothQuant once, on the whole calibration set, for both rounds: it is the first of NNCF's two
    # statistics passes and the same for every candidate with the same alphas;
    # its statistics do not depend on alpha, so one pass serves every alpha the candidates try.
    smoothed = ptq.shared_smoothing(work / "smoothing", float_xml, calibration_npy,
                                    [base, *(with_changes(base, overrides) for _, overrides in CANDIDATES)], cancelled)
    candidates = _Round(float_model, work, float_xml, metric, base, workers or default_workers(), cancelled, smoothed)
    first = candidates.run(list(CANDIDATES), spread_subset(calibration_npy, first_samples, work / "search_calibration.npy"),
                           first_samples, first_ranking, 1, SLOWEST_CANDIDATE)
    ranked = _ranked(first)
    if not ranked:
        raise InternalError("every recipe candidate failed: " + "; ".join(
            f"{r.candidate}: {r.error or r.skipped}" for r in first))

    base_row = next((r for r in ranked if r.candidate == "base"), None)
    improving = [r for r in ranked
                 if r.candidate != "base" and base_row is not None and rank_key(r) > rank_key(base_row)]
    finalists: list[tuple[str, dict[str, Any]]] = []
    if on_subset:
        finalists.append((ranked[0].candidate, dict(CANDIDATES)[ranked[0].candidate]))
    if len(improving) >= 2:
        finalists.append(("combined", combine(improving)))
    elif on_subset and len(ranked) >= 2:
        finalists.append((ranked[1].candidate, dict(CANDIDATES)[ranked[1].candidate]))
    second = candidates.run(finalists, calibration_npy, full, ranking, 2, None) if finalists else []

    eligible = _ranked(second) + ([] if on_subset else ranked)
    if not eligible:
        raise InternalError("every recipe finalist failed: " + "; ".join(f"{r.candidate}: {r.error}" for r in second))
    best = max(eligible, key=rank_key)
    best.chosen = True
    folder = work / f"round{best.round}" / best.candidate
    recipe = with_changes(base, best.changes)
    return Searched(recipe, ov.Core().read_model(str(folder / "int8.xml")), first + second,
                    np.load(folder / "outputs.npy"))
