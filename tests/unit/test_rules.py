"""Ignored-scope rules on tiny OpenVINO graphs built in code (no files, no NNCF)."""

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from edgeq.errors import InvalidArgument
from edgeq.quantization.rules import Rule, ignored_names, parse_rules, resolve


def _const(*shape: int) -> ov.Node:
    return ops.constant(np.random.default_rng(0).standard_normal(shape).astype(np.float32))


def decomposed_layernorm(x: ov.Node, name: str) -> ov.Node:
    axes = ops.constant(np.array([-1], np.int64))
    mean = ops.reduce_mean(x, axes, keep_dims=True, name=f"{name}/ReduceMean")
    centred = ops.subtract(x, mean, name=f"{name}/Sub")
    var = ops.reduce_mean(ops.power(centred, ops.constant(np.float32(2)), name=f"{name}/Pow"), axes, True,
                          name=f"{name}/ReduceMean_1")
    std = ops.sqrt(ops.add(var, ops.constant(np.float32(1e-5)), name=f"{name}/Add"), name=f"{name}/Sqrt")
    normed = ops.divide(centred, std, name=f"{name}/Div")
    scaled = ops.multiply(normed, _const(16), name=f"{name}/Mul")
    return ops.add(scaled, _const(16), name=f"{name}/Add_1")


def tiny_transformer(decomposed: bool) -> ov.Model:
    x = ops.parameter([-1, 4, 16], np.float32, name="x")
    h = ops.matmul(x, _const(16, 16), False, False, name="fc1")
    if decomposed:
        h = decomposed_layernorm(h, "ln")
    else:
        h = ops.mvn(h, ops.constant(np.array([-1], np.int64)), True, 1e-5, "inside_sqrt", name="ln/MVN")
    scores = ops.matmul(h, h, False, True, name="qk")
    probs = ops.softmax(scores, -1, name="attn/Softmax")
    out = ops.matmul(probs, h, False, False, name="av")
    out = ops.matmul(out, _const(16, 8), False, False, name="fc2")
    return ov.Model([out], [x], "tiny")


def test_layernorm_rule_finds_mvn() -> None:
    match = resolve(tiny_transformer(False), [Rule.parse("layernorm")])[0]
    assert match.nodes == ["ln/MVN"] and "1 MVN" in match.note


def test_layernorm_rule_finds_decomposed_chains_with_affine() -> None:
    match = resolve(tiny_transformer(True), [Rule.parse("layernorm")])[0]
    assert set(match.nodes) == {"ln/ReduceMean", "ln/Sub", "ln/Pow", "ln/ReduceMean_1", "ln/Add", "ln/Sqrt", "ln/Div",
                                "ln/Mul", "ln/Add_1"}
    assert "1 decomposed" in match.note


def test_softmax_type_name_and_subgraph_rules() -> None:
    model = tiny_transformer(False)
    matches = resolve(model, parse_rules(["softmax", "type:MatMul", "name:^fc", "subgraph:qk->av"]))
    by_rule = {str(m.rule): m.nodes for m in matches}
    assert by_rule["softmax"] == ["attn/Softmax"]
    assert by_rule["type:MatMul"] == ["av", "fc1", "fc2", "qk"]
    assert by_rule["name:^fc"] == ["fc1", "fc2"]
    assert by_rule["subgraph:qk->av"] == ["attn/Softmax", "av", "qk"]
    assert ignored_names(matches) == sorted({"attn/Softmax", "av", "fc1", "fc2", "qk"})


def test_a_rule_matching_nothing_warns_instead_of_failing() -> None:
    matches = resolve(tiny_transformer(False), parse_rules(["type:Gelu", "name:^nothing$"]))
    assert len(matches) == 2 and all(m.nodes == [] and "WARNING: matched no node" in m.note for m in matches)


def test_attention_rule_finds_the_activation_matmuls_of_unfused_attention() -> None:
    (match,) = resolve(tiny_transformer(False), parse_rules(["attention"]))
    assert match.nodes == ["av", "qk"], "Q x K^T and scores x V; fc1/fc2 have weights and stay quantizable"
    assert "0 fused attention op(s), 2 activation x activation MatMul(s)" == match.note


def test_head_rule_finds_the_layer_computing_the_output_and_not_a_backbone_block() -> None:
    (match,) = resolve(tiny_transformer(False), parse_rules(["head"]))
    assert match.nodes == ["fc2"]
    # A backbone ending in a residual Add has no head: the walk stops at the two-input Add.
    x = ops.parameter([-1, 4, 16], np.float32, name="x")
    block = ops.add(ops.matmul(x, _const(16, 16), False, False, name="fc"), _const(16), name="fc/bias")
    backbone = ov.Model([ops.add(x, block, name="residual")], [x], "backbone")
    (match,) = resolve(backbone, parse_rules(["head"]))
    assert match.nodes == [] and "WARNING: matched no node" in match.note
    # A classifier head behind its bias and a reshape is found.
    logits = ops.reshape(ops.add(ops.matmul(ops.add(x, block), _const(16, 3), False, False, name="classifier"),
                                 _const(3)), ops.constant(np.array([-1, 12], np.int64)), False)
    (match,) = resolve(ov.Model([logits], [x], "classifier"), parse_rules(["head"]))
    assert match.nodes == ["classifier"]


@pytest.mark.parametrize("text", ["bogus", "type:", "name:(", "subgraph:abc"])
def test_bad_rules_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument):
        Rule.parse(text)


def test_default_rules() -> None:
    assert [str(r) for r in parse_rules(None)] == ["layernorm", "softmax", "attention"]


def test_softmax_rule_suggests_the_attention_rule_only_when_it_is_missing() -> None:
    x = ops.parameter([-1, 4, 16], np.float32, name="x")
    q = ops.matmul(x, _const(16, 16), False, False, name="q")
    attended = ops.scaled_dot_product_attention(q, q, q, causal=False, name="sdpa")
    model = ov.Model([attended], [x], "fused")
    alone = resolve(model, [Rule("softmax")])[0].note
    with_attention = resolve(model, [Rule("softmax"), Rule("attention")])[0].note
    assert alone.startswith("0 Softmax op(s); 1 fused ScaledDotProductAttention op(s)") and "add the 'attention' rule" in alone
    assert with_attention == "0 Softmax op(s); 1 fused ScaledDotProductAttention op(s) compute softmax inside, in float"
