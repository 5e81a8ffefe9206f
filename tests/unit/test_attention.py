"""Attention-map agreement is a rank correlation per query row."""


def test_spearman_rows() -> None:
    import numpy as np

    from edgeq.quantization.attention import spearman_rows

    reference = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    same_order = np.array([[0.0, 0.3, 0.7], [0.6, 0.3, 0.1]])
    reversed_order = reference[:, ::-1]
    assert np.allclose(spearman_rows(reference, same_order), [1.0, 1.0])
    assert np.allclose(spearman_rows(reference, reversed_order), [-1.0, -1.0])
