"""`.npz` data for models with several or integer inputs: one array per input, named as the input.

`np.savez("cal.npz", input_ids=ids, attention_mask=mask, token_type_ids=types)` with arrays of
(N, ...) each (optional `labels` (N,)). Arrays are read row by row straight from the zip, with the
caps and header checks of `edgeq.data.npz`; each sample is one named row (`edgeq.data.feed`).
Integer inputs take integer arrays (cast to the input's dtype when every value fits, so int64
token ids stay int64 and int32 ones become int64); float inputs take float arrays. A missing or
unknown name, a float array for an integer input, arrays of different lengths or a shape the model
cannot take are refused with a message saying which.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import numpy as np

from edgeq.archive import ArchiveLimits
from edgeq.data.feed import pack
from edgeq.data.npz import _open_member, read_labels, read_row, reading_npz
from edgeq.data.samples import Sample
from edgeq.errors import InvalidArgument
from edgeq.sources.spec import InputSpec


def _check_dtype(path: Path, spec: InputSpec, found: np.dtype) -> None:
    want = np.dtype(spec.dtype)
    if want.kind in "iub" and found.kind not in "iub":
        raise InvalidArgument(f"{path.name}: '{spec.name}' is {found}, the model input is {want}: give integers "
                              "(token ids are never rounded from floats)")
    if want.kind == "f" and found.kind not in "fiu":
        raise InvalidArgument(f"{path.name}: '{spec.name}' is {found}, the model input is {want}")
    if found.kind not in "fiub":
        raise InvalidArgument(f"{path.name}: '{spec.name}' has dtype {found}; only numeric arrays are accepted")


def _check_shape(path: Path, spec: InputSpec, shape: tuple[int, ...]) -> None:
    rows = tuple(shape[1:])
    if len(rows) != len(spec.shape) or any(want not in (-1, got) for want, got in zip(spec.shape, rows)):
        wanted = ", ".join("L" if d == -1 else str(d) for d in spec.shape)
        raise InvalidArgument(f"{path.name}: '{spec.name}' has shape {list(shape)}; the model input needs "
                              f"(N, {wanted}) (L: any length, the same in every row)")
    if any(d == 0 for d in rows):
        raise InvalidArgument(f"{path.name}: '{spec.name}' has an empty dimension {list(shape)}")


class NamedNpzSamples:
    def __init__(self, path: Path, specs: list[InputSpec], limits: ArchiveLimits = ArchiveLimits()):
        self.path, self.specs, self.limits = path, specs, limits
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, np.dtype] = {}
        self.labels: np.ndarray | None = None
        names = [spec.name for spec in specs]
        with reading_npz(path), zipfile.ZipFile(path) as archive:
            members = {m[:-4] for m in archive.namelist() if m.endswith(".npy")}
            missing = [name for name in names if name not in members]
            if missing:
                raise InvalidArgument(f"{path.name}: no array named {missing} (found {sorted(members)}); the model's "
                                      f"inputs are {names}: one array per input, named as the input")
            unknown = sorted(members - set(names) - {"labels"})
            if unknown:
                raise InvalidArgument(f"{path.name}: arrays {unknown} match no model input (inputs: {names})")
            for spec in specs:
                stream, shape, dtype, fortran = _open_member(archive, f"{spec.name}.npy", path.name, limits)
                stream.close()
                if fortran:
                    raise InvalidArgument(f"{path.name}: '{spec.name}' is Fortran-ordered; save it C-contiguous")
                _check_dtype(path, spec, dtype)
                _check_shape(path, spec, shape)
                self.shapes[spec.name], self.dtypes[spec.name] = shape, dtype
            if "labels" in members:
                self.labels = read_labels(archive, path.name, limits)
        lengths = {name: shape[0] for name, shape in self.shapes.items()}
        if len(set(lengths.values())) != 1:
            raise InvalidArgument(f"{path.name}: the arrays have different numbers of samples {lengths}")
        self.count = next(iter(lengths.values()))
        if self.count == 0:
            raise InvalidArgument(f"{path.name}: the arrays are empty")
        if self.labels is not None and len(self.labels) != self.count:
            raise InvalidArgument(f"{path.name}: {len(self.labels)} labels for {self.count} samples")
        self.has_labels = self.labels is not None

    def __len__(self) -> int:
        return self.count

    def _row(self, stream: IO[bytes], spec: InputSpec, index: int) -> np.ndarray:
        shape, dtype = self.shapes[spec.name], self.dtypes[spec.name]
        raw = read_row(stream, int(np.prod(shape[1:])) * dtype.itemsize, self.path, spec.name, index)
        row = np.frombuffer(raw, dtype=dtype).reshape(shape[1:])
        want = np.dtype(spec.dtype)
        if want.kind in "iub" and dtype != want:
            info = np.iinfo(want) if want.kind in "iu" else None
            if info is not None and row.size and (row.min() < info.min or row.max() > info.max):
                raise InvalidArgument(f"{self.path.name}: '{spec.name}'[{index}] has values outside {want}")
        elif want.kind == "f" and not np.isfinite(row).all():
            raise InvalidArgument(f"sample {spec.name}[{index}] of {self.path.name}: contains NaN or Inf values")
        return row.astype(want, copy=False)

    def __iter__(self) -> Iterator[Sample]:
        with zipfile.ZipFile(self.path) as archive, ExitStack() as streams:
            opened = {spec.name: streams.enter_context(
                _open_member(archive, f"{spec.name}.npy", self.path.name, self.limits)[0]) for spec in self.specs}
            for index in range(self.count):
                row = pack({spec.name: self._row(opened[spec.name], spec, index) for spec in self.specs})
                label = None if self.labels is None else int(self.labels[index])
                yield Sample(index, row, label, f"sample {index}")
