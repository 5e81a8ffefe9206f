"""Attention-map agreement: does the INT8 model attend to the same tokens as the float one?

For every Softmax both graphs share (unfused attention: its output is the attention map), a few
samples run through both models, and each map row (one query's weights over the keys) is compared
by Spearman rank correlation; the report gives the mean per layer. Fused ScaledDotProductAttention
keeps its map inside the op, so models converted from timm (fused) report nothing here.
"""

from __future__ import annotations

import numpy as np
import openvino as ov

from edgeq.quantization.graph import ops_by_name
from edgeq.quantization.sensitivity import SqnrTally, run_tallies, sqnr_layers


def _row_ranks(maps: np.ndarray) -> np.ndarray:
    return np.asarray(maps.argsort(axis=1).argsort(axis=1), dtype=np.float64)


def spearman_rows(reference: np.ndarray, quantized: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of two (rows, keys) arrays (ties broken by position)."""
    a, b = _row_ranks(reference), _row_ranks(quantized)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.where(denominator > 0, (a * b).sum(axis=1) / np.maximum(denominator, 1e-30), 1.0)


def softmax_layers(float_model: ov.Model, int8_model: ov.Model) -> list[str]:
    float_table, int8_table = ops_by_name(float_model), ops_by_name(int8_model)
    return sorted(n for n, op in float_table.items() if op.get_type_name() == "Softmax" and n in int8_table)


class AttentionTally:
    """Spearman correlations of attention rows per Softmax layer, over the samples it is given."""

    def __init__(self, names: list[str], max_rows: int = 256):
        self.names, self.max_rows = names, max_rows
        self.scores: dict[str, list[float]] = {}

    def add(self, sample: np.ndarray, pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for name in self.names:
            if name not in pairs:
                continue
            x, q = pairs[name]
            rows_x, rows_q = x.reshape(-1, x.shape[-1]), q.reshape(-1, x.shape[-1])
            pick = np.linspace(0, len(rows_x) - 1, min(self.max_rows, len(rows_x))).astype(int)
            self.scores.setdefault(name, []).extend(spearman_rows(rows_x[pick], rows_q[pick]).tolist())

    def result(self) -> dict[str, float]:
        """Mean correlation per layer."""
        return {name: float(np.mean(values)) for name, values in self.scores.items() if values}


def sqnr_and_attention(float_model: ov.Model, int8_model: ov.Model, layers: list[str],
                       inputs: np.ndarray) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Per-layer SQNR of `layers` and attention-map agreement, from one run of both models, and the
    layers left unmeasured because observing them would change the INT8 model (see sensitivity)."""
    sqnr = SqnrTally(sqnr_layers(float_model, int8_model, layers))
    attention = AttentionTally(softmax_layers(float_model, int8_model))
    unmeasured = run_tallies(float_model, int8_model, inputs, [sqnr, attention])
    return sqnr.result(), attention.result(), unmeasured
