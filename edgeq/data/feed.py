"""Samples as OpenVINO inputs: one float array, or one structured row holding every named input.

A model with one float input keeps its samples as float32 arrays (fed to input 0). A model with
several inputs, or integer inputs (token ids), keeps each sample as one row of a numpy structured
array, a field per input name with that input's dtype: int64 token ids stay int64, the rows of a
data set stack into one array that memory-maps as `.npy` like the float ones, and everything that
slices, saves or ships samples to child processes works on them unchanged. Only the places that
hand a sample to OpenVINO look inside, through `one` and `batch` here.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_named(array: np.ndarray | np.void) -> bool:
    """True for structured samples (one field per named input)."""
    return array.dtype.names is not None


def batch(rows: np.ndarray) -> dict[Any, np.ndarray]:
    """A batch (leading dimension) as OpenVINO inputs: each named field to its input, or float32 to input 0."""
    rows = np.asarray(rows)
    if is_named(rows):
        return {name: np.ascontiguousarray(rows[name]) for name in rows.dtype.names or ()}
    return {0: np.ascontiguousarray(rows, dtype=np.float32)}


def one(sample: np.ndarray | np.void) -> dict[Any, np.ndarray]:
    """One sample as a batch of one."""
    return batch(np.asarray(sample)[None])


def repeat(sample: np.ndarray | np.void, count: int) -> dict[Any, np.ndarray]:
    """`count` copies of one sample as a batch (speed measurement of models whose inputs are not noise)."""
    return batch(np.repeat(np.asarray(sample)[None], count, axis=0))


def pack(fields: dict[str, np.ndarray]) -> np.ndarray:
    """Named arrays (without batch) as one structured sample (a 0-d array), a field per name."""
    row = np.zeros((), dtype=[(name, value.dtype, value.shape) for name, value in fields.items()])
    for name, value in fields.items():
        row[name] = value
    return row
