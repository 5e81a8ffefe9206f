"""KServe v2 tensor datatypes <-> numpy, zero-copy where the bytes allow it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeq.errors import InvalidArgument

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}
_BY_DTYPE = {dtype: name for name, dtype in DATATYPES.items()}
# Which typed-contents field of InferTensorContents carries each datatype.
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}
MAX_ELEMENTS = 1 << 31


def datatype_of(dtype: np.dtype) -> str:
    try:
        return _BY_DTYPE[np.dtype(dtype)]
    except KeyError:
        raise InvalidArgument(f"numpy dtype {dtype} has no KServe datatype") from None


def _check_shape(name: str, shape: Sequence[int]) -> int:
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input {name!r}: shape {list(shape)} has a negative dimension")
    count = 1
    for d in shape:
        count *= d
        if count > MAX_ELEMENTS:
            raise InvalidArgument(f"input {name!r}: shape {list(shape)} is absurdly large")
    return count


def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview) -> np.ndarray:
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise InvalidArgument(f"input {name!r}: unsupported datatype {datatype!r} (supported: {sorted(DATATYPES)})")
    count = _check_shape(name, shape)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidArgument(
            f"input {name!r}: {len(raw)} bytes of raw contents, but {datatype} {list(shape)} needs {expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(shape))


def from_typed(name: str, datatype: str, shape: Sequence[int], values: Sequence[object]) -> np.ndarray:
    dtype = DATATYPES.get(datatype)
    if dtype is None or datatype not in CONTENTS_FIELD:
        raise InvalidArgument(f"input {name!r}: unsupported datatype {datatype!r} for typed contents")
    count = _check_shape(name, shape)
    if len(values) != count:
        raise InvalidArgument(f"input {name!r}: {len(values)} values in contents, but shape {list(shape)} needs {count}")
    return np.asarray(values, dtype=dtype).reshape(tuple(shape))
