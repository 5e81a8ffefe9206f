"""`.npz` tensors read row by row straight from the zip: memory stays at one sample.

Arrays: `inputs` (N, ...) float and optional `labels` (N,) integers. Pickled object arrays are
refused (we never unpickle user data). Nothing is sized from what a file claims alone: each array
header must agree with the bytes its zip member holds, and members are capped, before and after
decompression, like archive entries (`edgeq.archive`).
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from edgeq.archive import ArchiveLimits, check_zip_member
from edgeq.data.samples import Sample, check_sample
from edgeq.errors import InvalidArgument, ResourceExhausted
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
    if any(size < 0 for size in shape):
        raise InvalidArgument(f"{what} declares a negative dimension {list(shape)}")
    return tuple(shape), dtype, fortran


def _open_member(archive: zipfile.ZipFile, member: str, label: str,
                 limits: ArchiveLimits) -> tuple[IO[bytes], tuple[int, ...], np.dtype, bool]:
    """Open one array: its sizes checked against the caps, its header against the bytes present."""
    info = archive.getinfo(member)
    check_zip_member(label, info, limits, limits.max_total_bytes)
    stream = archive.open(info)
    try:
        shape, dtype, fortran = _read_header(stream, f"{label}:{member[:-4]}")
        data_bytes = info.file_size - stream.tell()
        declared = math.prod(shape) * dtype.itemsize
        if declared > data_bytes:
            raise InvalidArgument(
                f"{label}: '{member[:-4]}' declares shape {list(shape)} ({declared} bytes of {dtype}), but the file "
                f"holds only {max(data_bytes, 0)} bytes of data: truncated, or a header that lies")
    except BaseException:
        stream.close()
        raise
    return stream, shape, dtype, fortran


@contextmanager
def reading_npz(path: Path) -> Iterator[None]:
    """While an .npz's headers are read: a broken zip is the user's INVALID_ARGUMENT, a file too large
    for memory RESOURCE_EXHAUSTED, both naming the file."""
    try:
        yield
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise InvalidArgument(f"{path.name} is not a valid .npz (zip) file: {error}") from error
    except MemoryError as error:
        raise ResourceExhausted(f"{path.name}: reading its arrays ran out of memory ({error})") from error


def read_labels(archive: zipfile.ZipFile, label: str, limits: ArchiveLimits) -> np.ndarray:
    """The archive's `labels` member: a 1-D integer array, checked against the bytes really present."""
    stream, shape, dtype, _ = _open_member(archive, "labels.npy", label, limits)
    with stream:
        if dtype.kind not in "iu" or len(shape) != 1:
            raise InvalidArgument(f"{label}: 'labels' must be a 1-D integer array, got {dtype} {list(shape)}")
        labels = np.frombuffer(stream.read(dtype.itemsize * shape[0]), dtype=dtype).astype(np.int64)
    if len(labels) != shape[0]:
        raise InvalidArgument(f"{label}: 'labels' is truncated")
    return labels


def read_row(stream: IO[bytes], size: int, path: Path, array: str, index: int) -> bytes:
    """The `size` bytes of row `index` of `array`: a corrupt or short member is the user's error."""
    try:
        raw = stream.read(size)
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise InvalidArgument(f"{path.name}: '{array}' is corrupt at row {index}: {error}") from error
    except MemoryError as error:
        raise ResourceExhausted(f"{path.name}: row {index} of '{array}' does not fit in memory") from error
    if len(raw) != size:
        raise InvalidArgument(f"{path.name}: '{array}' is truncated at row {index}")
    return raw


class NpzSamples:
    def __init__(self, path: Path, spec: InputSpec, limits: ArchiveLimits = ArchiveLimits()):
        self.path = path
        self.spec = spec
        self.limits = limits
        with reading_npz(path), zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            if "inputs.npy" not in members:
                raise InvalidArgument(f"{path.name}: no array named 'inputs' (found {sorted(members)})")
            stream, self.shape, self.dtype, self.fortran = _open_member(archive, "inputs.npy", path.name, limits)
            stream.close()
            self.labels: np.ndarray | None = None
            if "labels.npy" in members:
                self.labels = read_labels(archive, path.name, limits)
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
        row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        with zipfile.ZipFile(self.path) as archive:
            stream, _, _, _ = _open_member(archive, "inputs.npy", self.path.name, self.limits)
            with stream:
                for index in range(len(self)):
                    raw = read_row(stream, row_bytes, self.path, "inputs", index)
                    row = np.frombuffer(raw, dtype=self.dtype).reshape(self.shape[1:])
                    values = check_sample(row, self.spec, f"inputs[{index}] of {self.path.name}")
                    label = None if self.labels is None else int(self.labels[index])
                    yield Sample(index, values, label, f"inputs[{index}]")
