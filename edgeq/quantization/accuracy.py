"""Metrics of a quantized model against its float reference.

- `top1`: labelled top-1 accuracy (needs labels)
- `agreement`: share of samples whose top-1 class equals the float model's (no labels needed)
- `cosine`: mean cosine similarity of outputs with the float model's (models without classes)

The reference is the float model at true FP32, run once and cached by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import openvino as ov

from edgeq.compile import compile_cpu
from edgeq.data import feed
from edgeq.errors import InvalidArgument

METRICS = ("agreement", "top1", "cosine")


def run(compiled: ov.CompiledModel, inputs: Iterable[np.ndarray], count: int) -> np.ndarray:
    """First output for each input (batch 1 each), in order, with all infer requests busy."""
    results: list[np.ndarray | None] = [None] * count
    queue = ov.AsyncInferQueue(compiled)

    def done(request: ov.InferRequest, index: int) -> None:
        results[index] = request.get_output_tensor(0).data.copy()

    queue.set_callback(done)
    seen = 0
    for index, array in enumerate(inputs):
        queue.start_async(feed.one(array), userdata=index)
        seen += 1
    queue.wait_all()
    if seen != count:
        raise InvalidArgument(f"expected {count} samples, the data set yielded {seen}")
    return np.concatenate([r for r in results if r is not None], axis=0)


def per_sample(metric: str, outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """One score per sample; the metric is their mean."""
    if metric == "top1":
        if labels is None:
            raise InvalidArgument("metric top1 needs labels: use an .npz with 'labels' or an archive in class folders, "
                                  "or choose --metric agreement")
        return (_classes(outputs) == labels).astype(np.float64)
    if metric == "agreement":
        return (_classes(outputs) == _classes(reference)).astype(np.float64)
    if metric == "cosine":
        a = outputs.reshape(len(outputs), -1).astype(np.float64)
        b = reference.reshape(len(reference), -1).astype(np.float64)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        return np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-30), 1.0)
    raise InvalidArgument(f"unknown metric {metric!r}; choose one of {METRICS}")


# Two neighbours whose float cosines to a sample differ by less than this are a near-tie: which of
# them comes first is decided by noise far below what retrieval users notice.
NEAR_TIE = 0.005


def neighbours(outputs: np.ndarray, reference: np.ndarray, limit: int = 4000) -> dict[str, float] | None:
    """For embeddings: does each sample keep its nearest neighbour (cosine, itself excluded) in INT8?

    - `neighbour_agreement`: share whose INT8 nearest neighbour is the float one. Retrieval breaks
      when this falls, even while cosine stays high.
    - `neighbour_in_float_top2`: share whose INT8 nearest neighbour is the float first or second.
    - `neighbour_changes_at_near_ties`: of the samples that changed neighbour, the share whose float
      first and second neighbours were within NEAR_TIE cosine of each other.
    None for outputs that are not (N, dim) embeddings.
    """
    if outputs.ndim != 2 or len(outputs) < 3:
        return None
    count = min(len(outputs), limit)

    def similarities(embeddings: np.ndarray) -> np.ndarray:
        unit = embeddings[:count] / np.maximum(np.linalg.norm(embeddings[:count], axis=1, keepdims=True), 1e-30)
        similarity = unit @ unit.T
        np.fill_diagonal(similarity, -np.inf)
        return similarity

    float_similarity = similarities(reference.astype(np.float64))
    float_top2 = np.argsort(-float_similarity, axis=1)[:, :2]
    int8_nearest = similarities(outputs.astype(np.float64)).argmax(axis=1)
    kept = int8_nearest == float_top2[:, 0]
    rows = np.arange(count)
    margin = float_similarity[rows, float_top2[:, 0]] - float_similarity[rows, float_top2[:, 1]]
    changed = ~kept
    return {
        "neighbour_agreement": float(kept.mean()),
        "neighbour_in_float_top2": float((kept | (int8_nearest == float_top2[:, 1])).mean()),
        "neighbour_changes_at_near_ties": float((margin[changed] < NEAR_TIE).mean()) if changed.any() else 0.0,
    }


def _classes(outputs: np.ndarray) -> np.ndarray:
    if outputs.ndim != 2:
        raise InvalidArgument(f"top-1 metrics need (N, classes) outputs, the model gives {list(outputs.shape)}: "
                              "use --metric cosine")
    return outputs.argmax(axis=1)


@dataclass(frozen=True)
class Budget:
    """An accuracy budget: `max_drop` absolute (points of the metric, 0.005 = 0.5 points) or relative."""

    max_drop: float = 0.01
    relative: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.max_drop < 1:
            raise InvalidArgument(f"max drop must be in [0, 1), got {self.max_drop}")

    def drop(self, reference_score: float, score: float) -> float:
        drop = reference_score - score
        return drop / reference_score if self.relative and reference_score else drop

    def met(self, reference_score: float, score: float) -> bool:
        return self.drop(reference_score, score) <= self.max_drop + 1e-12


COUNTED_METRICS = ("top1", "agreement")


def unmeasurable_budget(budget: Budget, metric: str, validation_count: int, reference_score: float) -> str | None:
    """Why the fallback cannot resolve `budget` with `validation_count` samples, or None when it can:
    decided before the fallback spends its time.

    top-1 and agreement are counts: on N validation samples they move in steps of 1/N. When one step
    is larger than a non-zero budget (16 held-out samples: 6.25 % steps against a 1 % budget), the
    budget silently means "not one sample may change", which the fallback then chases for minutes on a
    number too coarse to show progress. edgeq skips the fallback there, says so, and names the fix (more
    validation samples, or a budget of at least one step). A budget of exactly 0 is taken at its word;
    cosine is continuous and always measurable.
    """
    if metric not in COUNTED_METRICS or budget.max_drop == 0 or validation_count <= 0:
        return None
    scale = reference_score if budget.relative else 1.0  # a relative drop divides by the float score
    if scale <= 0:
        return None
    step = 1.0 / (validation_count * scale)
    if step <= budget.max_drop * (1 + 1e-9):
        return None
    needed = math.ceil(1.0 / (budget.max_drop * scale) - 1e-9)
    return (f"accuracy fallback skipped: {validation_count} validation samples move {metric} in steps of "
            f"{step:.2%}, coarser than the {budget.max_drop:.2%} budget, so no fallback could show it met; "
            f"give --validation with at least {needed} samples (or more calibration samples: a share is held out), "
            f"or --max-drop {step:.4g} or more")


def evaluate(model: ov.Model, metric: str, inputs: np.ndarray, reference: np.ndarray,
             labels: np.ndarray | None, known: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Outputs of a quantized model (compiled as served: default precision) and its score.

    `known`: this model's outputs for the first len(known) inputs, already computed (the recipe
    search scored the winner on the ranking subset); only the rest are run.
    """
    start = 0 if known is None else min(len(known), len(inputs))
    parts = [known[:start]] if known is not None and start else []
    if start < len(inputs):
        parts.append(run(compile_cpu(model), inputs[start:], len(inputs) - start))
    outputs = np.concatenate(parts)
    return outputs, float(per_sample(metric, outputs, reference, labels).mean())


def reference_score(metric: str, reference: np.ndarray, labels: np.ndarray | None) -> float:
    """The float model's own score: 1.0 for agreement/cosine by definition."""
    return float(per_sample(metric, reference, reference, labels).mean())
