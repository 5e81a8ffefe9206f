"""`.npz` tensors read row by row straight from the zip: memory stays at one sample.

Arrays: `inputs` (N, ...) float and optional `labels` (N,) integers. Pickled object arrays are
refused (we never unpickle user data).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from edgeq.data.samples import Sample, check_sample
from edgeq.errors import InvalidArgument
from edgeq.sources.spec import InputSpec

_ALLOWED_INPUT_KINDS = "fiu"  # float, signed, unsigned integers


def _read_header(stream: IO[bytes], what: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except Exception as error:  # noqa: BLE001 - numpy raises ValueError/EOFError/SyntaxError here
        raise InvalidArgument(f"{what} is not a valid .npy array: {error}") from error
    if dtype.hasobject:
        raise InvalidArgument(f"{what} holds Python objects; only numeric arrays are accepted (no pickles)")
    return tuple(shape), dtype, fortran


class NpzSamples:
    def __init__(self, path: Path, spec: InputSpec):
        self.path = path
        self.spec = spec
        try:
            with zipfile.ZipFile(path) as archive:
                members = set(archive.namelist())
                if "inputs.npy" not in members:
                    raise InvalidArgument(f"{path.name}: no array named 'inputs' (found {sorted(members)})")
                with archive.open("inputs.npy") as stream:
                    self.shape, self.dtype, self.fortran = _read_header(stream, f"{path.name}:inputs")
                self.labels: np.ndarray | None = None
                if "labels.npy" in members:
                    with archive.open("labels.npy") as stream:
                        shape, dtype, _ = _read_header(stream, f"{path.name}:labels")
                        if dtype.kind not in "iu" or len(shape) != 1:
                            raise InvalidArgument(f"{path.name}: 'labels' must be a 1-D integer array, got {dtype} {list(shape)}")
                        self.labels = np.frombuffer(stream.read(dtype.itemsize * shape[0]), dtype=dtype).astype(np.int64)
                        if len(self.labels) != shape[0]:
                            raise InvalidArgument(f"{path.name}: 'labels' is truncated")
        except zipfile.BadZipFile as error:
            raise InvalidArgument(f"{path.name} is not a valid .npz (zip) file: {error}") from error
        if self.dtype.kind not in _ALLOWED_INPUT_KINDS:
            raise InvalidArgument(f"{path.name}: 'inputs' has dtype {self.dtype}; expected float32 (or numeric)")
        if self.fortran:
            raise InvalidArgument(f"{path.name}: 'inputs' is Fortran-ordered; save it C-contiguous")
        if not self.shape or self.shape[0] == 0:
            raise InvalidArgument(f"{path.name}: 'inputs' is empty")
        if tuple(self.shape[1:]) != tuple(spec.shape):
            raise InvalidArgument(
                f"{path.name}: 'inputs' has shape {list(self.shape)}; the model input {spec.name!r} needs "
                f"(N, {', '.join(map(str, spec.shape))})"
            )
        if self.labels is not None and len(self.labels) != self.shape[0]:
            raise InvalidArgument(f"{path.name}: {len(self.labels)} labels for {self.shape[0]} inputs")
        self.has_labels = self.labels is not None

    def __len__(self) -> int:
        return int(self.shape[0])

    def __iter__(self) -> Iterator[Sample]:
        row_items = int(np.prod(self.shape[1:]))
        row_bytes = row_items * self.dtype.itemsize
        with zipfile.ZipFile(self.path) as archive, archive.open("inputs.npy") as stream:
            _read_header(stream, self.path.name)
            for index in range(len(self)):
                raw = stream.read(row_bytes)
                if len(raw) != row_bytes:
                    raise InvalidArgument(f"{self.path.name}: 'inputs' is truncated at row {index}")
                row = np.frombuffer(raw, dtype=self.dtype).reshape(self.shape[1:])
                values = check_sample(row, self.spec, f"inputs[{index}] of {self.path.name}")
                label = None if self.labels is None else int(self.labels[index])
                yield Sample(index, values, label, f"inputs[{index}]")
