"""What OpenVINO's CPU plugin runs for edgeq's default recipe, read from the compiled model.

With int8 attention the Q and K quantizers sit after the split of the fused QKV projection, where
no node absorbs them: each runs as a standalone FakeQuantize. The default rules keep attention in
float, so they are gone while every projection and MLP layer still runs in int8.
"""

from __future__ import annotations

from typing import Any

from edgeq.compile import compile_cpu, core
from edgeq.quantization import ptq, rules
from edgeq.quantization.plugin_graph import runtime_table
from edgeq.quantization.recipe import Recipe
from edgeq.sources import load_model
from tests.conftest import fmnist_arrays

BLOCKS = 4  # the Fashion-MNIST ViT
LAYERS = BLOCKS * 4 + 1  # qkv, proj, fc1, fc2 per block, and the head


def _what_runs(model: Any, recipe: Recipe) -> dict[str, Any]:
    inputs, _ = fmnist_arrays()
    ignored = rules.ignored_names(rules.resolve(model, rules.parse_rules(list(recipe.rules))))
    int8 = ptq.quantize(model, [inputs[i] for i in range(recipe.subset_size)], recipe, ignored)
    return runtime_table(int8, compile_cpu(int8))


def test_default_recipe_runs_no_standalone_quantizer_in_attention_and_every_fc_in_int8() -> None:
    model = load_model("timm:edgeq_vit_fmnist").model
    default = _what_runs(model, Recipe(subset_size=32))
    int8_attention = _what_runs(model, Recipe(subset_size=32, rules=("layernorm", "softmax")))
    before, after = int8_attention["summary"], default["summary"]

    assert before["standalone_fq"] >= 2 * BLOCKS, int8_attention  # Q and K of every block
    assert after["standalone_fq"] <= before["standalone_fq"] - 2 * BLOCKS, default
    assert after["standalone_fq"] <= 2, default  # at most the model input's and the head's
    assert after["fc_int8"] == before["fc_int8"] == LAYERS and after["fc_float"] == 0, default
    assert after["attention_int8"] == 0
    if core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name() == "bf16":
        # A standalone f32 quantizer between bf16 nodes costs a bf16 -> f32 Reorder in front of it.
        assert after["reorders"] <= before["reorders"] - 2 * BLOCKS, (int8_attention["reorders"], default["reorders"])
    else:
        assert after["reorders"] <= before["reorders"]
    # Every activation quantizer of the IR is accounted for by a node of the runtime graph.
    assert sum(default["activation_fq_held_by"].values()) == default["activation_fq_in_ir"]
