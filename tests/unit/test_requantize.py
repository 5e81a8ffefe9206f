"""The first fallback reverts growing groups of the least accurate layers, never more than allowed."""

from edgeq.quantization.requantize import group_sizes


def test_groups_double_and_end_at_the_cap() -> None:
    assert group_sizes(1) == [1]
    assert group_sizes(4) == [1, 2, 4]
    assert group_sizes(9) == [1, 2, 4, 8, 9]
    assert group_sizes(0) == []

