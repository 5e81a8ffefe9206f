"""Shared statistics give the very models NNCF's own pipeline gives.

The recipe search and the re-quantization fallback smooth once per calibration set and quantize
every candidate from the smoothed model (edgeq.quantization.ptq.smooth_many), saving one of NNCF's two
statistics passes per run; candidates that differ only in range settings and ignored scope then
share the second pass too (ptq.quantize_many). That is only honest if nothing changes: the outputs
must be identical.
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
    (smoothed,) = ptq.smooth_many(model, calibration, [recipe])
    shared = ptq.quantize(smoothed, calibration, dataclasses.replace(recipe, smooth_quant_alpha=-1.0), ignored)

    probe = inputs[100:164]
    expected = compile_cpu(direct, precision="f32")(probe)[0]
    got = compile_cpu(shared, precision="f32")(probe)[0]
    np.testing.assert_array_equal(got, expected)
    assert smoothed.get_rt_info(["edgeq", "smooth_quant_alphas"]).astype(str) == str(ptq.smoothing_alphas(recipe))


def _float_constants(model: object) -> list[tuple[str, bytes]]:
    return sorted((op.get_friendly_name(), op.get_data().tobytes()) for op in model.get_ops()  # type: ignore[attr-defined]
                  if op.get_type_name() == "Constant" and op.get_output_element_type(0).is_real())


def test_one_smoothquant_pass_for_several_alphas_gives_each_its_own_model() -> None:
    model = load_model("timm:edgeq_vit_fmnist").model
    inputs, _ = fmnist_arrays()
    calibration = [inputs[i] for i in range(64)]
    recipes = [Recipe(subset_size=64), Recipe(subset_size=64, smooth_quant_alpha=0.85)]

    together = ptq.smooth_many(model, calibration, recipes)

    for recipe, shared in zip(recipes, together):
        assert _float_constants(shared) == _float_constants(ptq.smooth_many(model, calibration, [recipe])[0])
        assert shared.get_rt_info(["edgeq", "smooth_quant_alphas"]).astype(str) == str(ptq.smoothing_alphas(recipe))
    # Different alphas scale the weights differently (smoothing is exact in float: outputs cannot tell).
    assert _float_constants(together[0]) != _float_constants(together[1])


def test_a_recipe_without_smoothquant_shares_nothing() -> None:
    assert ptq.smoothing_alphas(Recipe(smooth_quant_alpha=-1.0)) is None
    assert ptq.smoothing_alphas(Recipe(transformer=False)) is None
    assert ptq.smoothing_alphas(Recipe())["matmul"] == 0.95  # type: ignore[index]


def test_one_statistics_pass_for_several_recipes_gives_each_the_model_nncf_quantize_gives() -> None:
    model = load_model("timm:edgeq_vit_fmnist").model
    inputs, _ = fmnist_arrays()
    calibration = [inputs[i] for i in range(64)]
    base = Recipe(subset_size=64, smooth_quant_alpha=-1.0)
    recipes = [base, dataclasses.replace(base, preset="mixed"), dataclasses.replace(base, activations_range="minmax"),
               dataclasses.replace(base, rules=tuple(r for r in base.rules if r != "attention"))]
    members = [(r, rules.ignored_names(rules.resolve(model, rules.parse_rules(list(r.rules))))) for r in recipes]
    timings: dict = {}
    shared = ptq.quantize_many(model, calibration, members, timings)

    probe = inputs[100:164]
    outputs = []
    for (recipe, ignored), one in zip(members, shared, strict=True):
        direct = ptq.quantize(model, calibration, recipe, ignored)
        expected = compile_cpu(direct, precision="f32")(probe)[0]
        outputs.append(compile_cpu(one, precision="f32")(probe)[0])
        np.testing.assert_array_equal(outputs[-1], expected)
        key = ["nncf", "quantization", "preset"]
        assert one.get_rt_info(key).astype(str) == direct.get_rt_info(key).astype(str) != ""  # the same record
    assert not np.array_equal(outputs[0], outputs[1])  # the recipes really differ
    assert timings["statistics_s"] > 0 and len(timings["apply_s"]) == len(recipes)


def test_quantize_many_refuses_recipes_that_need_their_own_pass() -> None:
    from edgeq.errors import InternalError

    model = load_model("timm:edgeq_vit_fmnist").model
    with pytest.raises(InternalError, match="fast bias correction"):
        ptq.quantize_many(model, [], [(Recipe(), [])])  # SmoothQuant on: smooth first
