"""Nearest-neighbour diagnostics for embedding models, on hand-made embeddings with known answers."""

from __future__ import annotations

import numpy as np

from edgeq.quantization.accuracy import neighbours


def _unit(*angles_degrees: float) -> np.ndarray:
    radians = np.deg2rad(angles_degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_unchanged_embeddings_keep_every_neighbour() -> None:
    points = _unit(0, 10, 50, 90, 170)
    assert neighbours(points, points) == {"neighbour_agreement": 1.0, "neighbour_in_float_top2": 1.0,
                                          "neighbour_changes_at_near_ties": 0.0}


def test_a_near_tie_that_flips_counts_as_a_change_within_the_float_top2() -> None:
    # Sample 0 at 0 degrees has neighbours at 30.0 and -30.1 degrees: a near tie in float (cosines
    # 0.86603 and 0.86515). Moving sample 0 by one degree flips which one is nearest.
    reference = _unit(0, 30, -30.1, 120, -120)
    moved = _unit(-1, 30, -30.1, 120, -120)
    result = neighbours(moved, reference)
    assert result is not None
    assert result["neighbour_agreement"] == 0.8  # only sample 0 changed
    assert result["neighbour_in_float_top2"] == 1.0
    assert result["neighbour_changes_at_near_ties"] == 1.0


def test_a_far_jump_is_outside_the_float_top2_and_not_a_tie() -> None:
    # Two tight pairs (100/105, 200/200.5) and sample 0 alone at 0 degrees, whose float top 2 is the
    # first pair; it jumps next to the second pair without becoming anyone else's nearest.
    reference = _unit(0, 100, 105, 200, 200.5)
    moved = _unit(203, 100, 105, 200, 200.5)
    result = neighbours(moved, reference)
    assert result is not None
    assert result["neighbour_agreement"] == 0.8
    assert result["neighbour_in_float_top2"] == 0.8
    assert result["neighbour_changes_at_near_ties"] == 0.0


def test_class_scores_are_not_embeddings_for_this_check() -> None:
    assert neighbours(np.zeros((2, 4)), np.zeros((2, 4))) is None
    assert neighbours(np.zeros((5, 3, 4)), np.zeros((5, 3, 4))) is None
