"""The sample stream every data source provides, and the checks every sample passes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgeq.errors import InvalidArgument
from edgeq.sources.spec import InputSpec


@dataclass(frozen=True)
class Sample:
    index: int
    input: np.ndarray  # shape == InputSpec.shape, float32
    label: int | None
    name: str  # where it came from, for error messages ("inputs[17]", "cat/img3.png")


class SampleSet(Protocol):
    """Re-iterable: NNCF and the metrics walk a set several times."""

    has_labels: bool

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Sample]: ...


def check_sample(sample_input: np.ndarray, spec: InputSpec, name: str) -> np.ndarray:
    """Shape and finiteness check with a message naming the sample."""
    if tuple(sample_input.shape) != tuple(spec.shape):
        raise InvalidArgument(
            f"sample {name}: shape {list(sample_input.shape)} does not match the model input "
            f"{spec.name!r} {list(spec.shape)} (batch dimension excluded)"
        )
    values = np.asarray(sample_input, dtype=np.float32)
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise InvalidArgument(f"sample {name}: contains {bad} NaN or Inf values")
    return values


class Subset:
    """The samples of `base` at `indices` (sorted), streamed in order; re-indexed from 0."""

    def __init__(self, base: SampleSet, indices: Sequence[int]):
        self.base = base
        self.indices = sorted(set(int(i) for i in indices))
        self._wanted = set(self.indices)
        self.has_labels = base.has_labels

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[Sample]:
        position = 0
        last = self.indices[-1] if self.indices else -1
        for sample in self.base:
            if sample.index > last:
                break
            if sample.index in self._wanted:
                yield Sample(position, sample.input, sample.label, sample.name)
                position += 1


def first(base: SampleSet, count: int) -> Subset:
    return Subset(base, range(min(count, len(base))))


def hold_out(base: SampleSet, fraction: float) -> tuple[Subset, Subset]:
    """Split into (calibration, validation): every k-th sample validates, deterministic."""
    total = len(base)
    if total < 2:
        raise InvalidArgument(f"the calibration set has {total} sample(s); at least 2 are needed to hold some out")
    step = max(2, round(1 / fraction))
    validation = [i for i in range(total) if i % step == step - 1]
    calibration = [i for i in range(total) if i % step != step - 1]
    return Subset(base, calibration), Subset(base, validation)
