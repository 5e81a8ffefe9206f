"""SmoothQuant run once and shared gives the very model NNCF's own pipeline gives.

The recipe search and the re-quantization fallback smooth once per calibration set and quantize
every candidate from the smoothed model (edgeq.quantization.ptq.smooth), saving one of NNCF's two
statistics passes per run. That is only honest if nothing changes: the outputs must be identical.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgeq.compile import compile_cpu
from edgeq.quantization import ptq, rules
from edgeq.quantization.recipe import Recipe
from edgeq.sources import load_model
from tests.conftest import fmnist_arrays


@pytest.mark.parametrize("recipe", [
    Recipe(subset_size=64),
    Recipe(subset_size=64, preset="mixed", rules=("layernorm", "softmax", "attention"), activations_range="minmax"),
], ids=["base", "asymmetric-attention-minmax"])
def test_shared_smoothing_gives_the_same_model_as_nncf_quantize(recipe: Recipe) -> None:
    model = load_model("timm:edgeq_vit_fmnist").model
    inputs, _ = fmnist_arrays()
    calibration = [inputs[i] for i in range(64)]
    ignored = rules.ignored_names(rules.resolve(model, rules.parse_rules(list(recipe.rules))))

    direct = ptq.quantize(model, calibration, recipe, ignored)
    smoothed = ptq.smooth(model, calibration, recipe)
    shared = ptq.quantize(smoothed, calibration, dataclasses.replace(recipe, smooth_quant_alpha=-1.0), ignored)

    probe = inputs[100:164]
    expected = compile_cpu(direct, precision="f32")(probe)[0]
    got = compile_cpu(shared, precision="f32")(probe)[0]
    np.testing.assert_array_equal(got, expected)
    assert smoothed.get_rt_info(["edgeq", "smooth_quant_alphas"]).astype(str) == str(ptq.smoothing_alphas(recipe))


def test_a_recipe_without_smoothquant_shares_nothing() -> None:
    assert ptq.smoothing_alphas(Recipe(smooth_quant_alpha=-1.0)) is None
    assert ptq.smoothing_alphas(Recipe(transformer=False)) is None
    assert ptq.smoothing_alphas(Recipe())["matmul"] == 0.95  # type: ignore[index]
