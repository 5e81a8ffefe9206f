import numpy as np
import pytest

from edgeq.errors import InvalidArgument
from edgeq.runtime.tensors import datatype_of, from_raw, from_typed


def test_raw_round_trip_is_zero_copy_view() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    decoded = from_raw("x", "FP32", [3, 4], array.tobytes())
    np.testing.assert_array_equal(decoded, array)
    assert decoded.base is not None  # a view on the bytes, not a copy


def test_typed_contents() -> None:
    decoded = from_typed("x", "INT64", [2, 2], [1, 2, 3, 4])
    assert decoded.dtype == np.int64 and decoded.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("datatype,shape,raw,message", [
    ("FP32", [2, 2], b"\0" * 15, "needs 16"),
    ("FP32", [-1, 2], b"", "negative"),
    ("FP99", [1], b"\0" * 4, "unsupported datatype"),
    ("FP32", [2**20, 2**20, 2**20], b"", "absurdly large"),
])
def test_raw_errors_name_the_problem(datatype: str, shape: list[int], raw: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        from_raw("x", datatype, shape, raw)


def test_typed_count_mismatch() -> None:
    with pytest.raises(InvalidArgument, match="3 values"):
        from_typed("x", "FP32", [2, 2], [1.0, 2.0, 3.0])


def test_datatype_names() -> None:
    assert datatype_of(np.dtype(np.float32)) == "FP32"
    assert datatype_of(np.dtype(np.uint8)) == "UINT8"
