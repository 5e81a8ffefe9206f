"""Ignored-scope rules: which ops stay in float, found on the graph as it really is.

NNCF's `IgnoredScope(types=["MVN", "Softmax"])` fails on a converted timm model (attention is a
fused `ScaledDotProductAttention`, there is no Softmax node) and, with `validate=False`, silently
matches nothing; ONNX exports spell LayerNorm as a ReduceMean/Sub/Pow/Sqrt/Div chain. So edgeq
resolves each rule to node names itself, reports what every rule matched, and hands NNCF an
`IgnoredScope(names=...)` that is exactly that.

Rule kinds (`Rule.parse`): `layernorm`, `softmax`, `attention`, `head`, the transformer layer groups
`patch-embed`, `qkv`, `proj`, `fc1`, `fc2`, and `type:Gelu`, `name:<regex>`, `subgraph:<in1>,<in2>-><out1>`
(every node on a path from the inputs to the outputs).

The layer groups are found by where a weighted layer sits, not by its name (ONNX exports and Hugging
Face models name them differently from timm): `edgeq.quantization.groups`. A precision plan
(`--plan`) is a set of groups kept in float.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openvino as ov

from edgeq.errors import InvalidArgument
from edgeq.quantization.graph import QUANTIZABLE_TYPES, consumers, producers

# `attention` is in the default because of what OpenVINO's CPU plugin runs: with int8 attention the
# Q and K quantizers sit after the split of the fused QKV projection, where no node can absorb them,
# so each runs as a standalone f32 FakeQuantize (two per block, each behind a Reorder on BF16 CPUs); with
# attention in float they vanish and every FC still runs in int8 (docs/benchmarks.md, "What the CPU
# plugin runs"). Keeping attention in float also scored best on the real models of docs/accuracy.md.
DEFAULT_RULES = ("layernorm", "softmax", "attention")
# The layer groups of a transformer found by position (edgeq.quantization.groups); with `attention` and
# `head`, the units a precision plan keeps in INT8 or float.
LAYER_GROUPS = ("patch-embed", "qkv", "proj", "fc1", "fc2")
_BUILTIN = {
    "layernorm": "LayerNorm in float: MVN ops and decomposed ReduceMean/Sub/Pow/Sqrt/Div chains",
    "softmax": "Softmax in float: Softmax ops; fused ScaledDotProductAttention computes its softmax in float itself",
    "attention": "attention in float: fused ScaledDotProductAttention and the activation x activation MatMuls "
                 "(Q x K^T, scores x V) of unfused attention",
    "head": "the output layer in float: the MatMul/convolution that computes a model output (a classifier's "
            "last FC), whose logit gaps decide the class",
    "patch-embed": "the patch embedding in float: the weighted layer fed by the model input (a ViT's strided "
                   "convolution)",
    "qkv": "the query/key/value projections in float: weighted layers fed by a LayerNorm whose output reaches "
           "attention",
    "proj": "the attention output projections in float: weighted layers fed by attention",
    "fc1": "the first MLP layers in float: weighted layers fed by a LayerNorm whose output reaches another "
           "weighted layer, not attention",
    "fc2": "the second MLP layers in float: weighted layers fed (through the activation) by an fc1 layer",
}


@dataclass(frozen=True)
class Rule:
    kind: str  # layernorm | softmax | attention | head | a layer group (LAYER_GROUPS) | type | name | subgraph
    value: str = ""
    reason: str = ""

    @classmethod
    def parse(cls, text: str) -> "Rule":
        text = text.strip()
        if text in _BUILTIN:
            return cls(text, "", _BUILTIN[text])
        kind, _, value = text.partition(":")
        if kind == "type" and value:
            return cls("type", value, f"ops of type {value} in float")
        if kind == "name" and value:
            try:
                re.compile(value)
            except re.error as error:
                raise InvalidArgument(f"rule {text!r}: bad regular expression: {error}") from None
            return cls("name", value, f"ops whose name matches /{value}/ in float")
        if kind == "subgraph" and "->" in value:
            return cls("subgraph", value, f"subgraph {value} in float")
        raise InvalidArgument(
            f"unknown ignored-scope rule {text!r}: use layernorm, softmax, attention, head, patch-embed, qkv, proj, "
            "fc1, fc2, type:OP, name:REGEX or subgraph:IN1,IN2->OUT1"
        )

    def __str__(self) -> str:
        return self.kind if not self.value else f"{self.kind}:{self.value}"


@dataclass
class RuleMatch:
    rule: Rule
    nodes: list[str] = field(default_factory=list)
    note: str = ""


def _decomposed_layernorms(model: ov.Model) -> list[list[ov.Node]]:
    """ReduceMean(x) -> Sub(x, mean) -> ... -> Div/Mul(sub, f(sqrt(var))) [-> Mul(gamma) -> Add(beta)]."""
    groups = []
    for mean in (op for op in model.get_ops() if op.get_type_name() == "ReduceMean"):
        source = mean.input_value(0)
        for sub in consumers(mean):
            if sub.get_type_name() != "Subtract" or sub.input_value(0) != source:
                continue
            for norm in consumers(sub):
                if norm.get_type_name() not in ("Divide", "Multiply"):
                    continue
                chain = _variance_chain(norm, sub)
                if chain is None:
                    continue
                group = [mean, sub, *chain, norm]
                tail = norm
                for expected in ("Multiply", "Add"):  # the affine part, constants only
                    nxt = [c for c in consumers(tail) if c.get_type_name() == expected
                           and any(p.get_type_name() == "Constant" for p in producers(c))]
                    if len(consumers(tail)) != 1 or not nxt:
                        break
                    tail = nxt[0]
                    group.append(tail)
                groups.append(group)
    return groups


def _variance_chain(norm: ov.Node, sub: ov.Node) -> list[ov.Node] | None:
    """Walk up the denominator of `norm` to `sub` through Sqrt/Add/ReduceMean/Pow/Mul; None if it is not LN."""
    other = [p for p in producers(norm) if p != sub]
    if len(other) != 1:
        return None
    node, chain = other[0], []
    for _ in range(7):
        if node.get_type_name() not in ("Sqrt", "Add", "ReduceMean", "Power", "Multiply", "Divide", "Convert"):
            return None
        chain.append(node)
        parents = [p for p in producers(node) if p.get_type_name() != "Constant"]
        if sub in parents:
            return chain if any(n.get_type_name() == "ReduceMean" for n in chain) else None
        if len(parents) != 1:
            return None
        node = parents[0]
    return None


def _reachable(starts: list[ov.Node], step: Callable[[ov.Node], list[ov.Node]], stops: set[str]) -> set[str]:
    """Names of nodes reachable from `starts` by `step`, not walking past `stops`."""
    seen: set[str] = set()
    frontier = list(starts)
    while frontier:
        node = frontier.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        if name not in stops:
            frontier.extend(step(node))
    return seen


def _subgraph(model: ov.Model, spec: str) -> list[str]:
    inputs_text, _, outputs_text = spec.partition("->")
    starts = {n.strip() for n in inputs_text.split(",") if n.strip()}
    ends = {n.strip() for n in outputs_text.split(",") if n.strip()}
    table = {op.get_friendly_name(): op for op in model.get_ops()}
    missing = sorted((starts | ends) - set(table))
    if missing:
        raise InvalidArgument(f"subgraph rule names nodes that do not exist: {missing}")
    forward = _reachable([table[n] for n in starts], consumers, ends)
    backward = _reachable([table[n] for n in ends], producers, starts)
    return sorted(forward & backward)


def resolve(model: ov.Model, rules: list[Rule]) -> list[RuleMatch]:
    """Match every rule against the graph; never raises for a rule that matches nothing."""
    ops = list(model.get_ops())
    matches = []
    layer_groups: dict[str, list[str]] | None = None
    for rule in rules:
        match = RuleMatch(rule)
        if rule.kind == "layernorm":
            names = [op.get_friendly_name() for op in ops if op.get_type_name() == "MVN"]
            groups = _decomposed_layernorms(model)
            for group in groups:
                names.extend(n.get_friendly_name() for n in group)
            match.nodes = sorted(set(names))
            mvn = sum(op.get_type_name() == "MVN" for op in ops)
            match.note = f"{mvn} MVN op(s), {len(groups)} decomposed LayerNorm chain(s)"
        elif rule.kind == "softmax":
            match.nodes = sorted(op.get_friendly_name() for op in ops if op.get_type_name() == "Softmax")
            fused = sum(op.get_type_name() == "ScaledDotProductAttention" for op in ops)
            match.note = f"{len(match.nodes)} Softmax op(s)"
            if fused:
                match.note += f"; {fused} fused ScaledDotProductAttention op(s) compute softmax inside, in float"
                if not any(other.kind == "attention" for other in rules):
                    match.note += " (their Q/K inputs may still be quantized: add the 'attention' rule to keep them float)"
        elif rule.kind == "attention":
            match.nodes = sorted(op.get_friendly_name() for op in ops if op.get_type_name() == "ScaledDotProductAttention"
                                 or _activation_matmul(op))
            fused = sum(op.get_type_name() == "ScaledDotProductAttention" for op in ops)
            match.note = f"{fused} fused attention op(s), {len(match.nodes) - fused} activation x activation MatMul(s)"
        elif rule.kind == "head":
            match.nodes = output_layers(model)
            match.note = f"{len(match.nodes)} layer(s) computing an output"
        elif rule.kind in LAYER_GROUPS:
            if layer_groups is None:
                from edgeq.quantization.groups import find_groups  # it reads the graph with this module's helpers

                layer_groups = find_groups(model)
            match.nodes = layer_groups[rule.kind]
            match.note = f"{len(match.nodes)} layer(s)"
        elif rule.kind == "type":
            match.nodes = sorted(op.get_friendly_name() for op in ops if op.get_type_name() == rule.value)
        elif rule.kind == "name":
            pattern = re.compile(rule.value)
            match.nodes = sorted(op.get_friendly_name() for op in ops if pattern.search(op.get_friendly_name()))
        elif rule.kind == "subgraph":
            match.nodes = _subgraph(model, rule.value)
        if not match.nodes and not match.note.startswith("0 Softmax op(s); "):
            match.note = (match.note + "; " if match.note else "") + "WARNING: matched no node"
        matches.append(match)
    return matches


def layernorm_nodes(model: ov.Model) -> set[str]:
    """Every node the layernorm rule keeps in float: MVN ops and decomposed LayerNorm chains."""
    names = {op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "MVN"}
    return names | {n.get_friendly_name() for group in _decomposed_layernorms(model) for n in group}


def output_layers(model: ov.Model) -> list[str]:
    """Weighted layers whose output reaches a model output through single-input ops only (bias add,
    reshape, activation). A residual Add or a normalisation by the output's own norm has two
    activation inputs and ends the walk: a backbone's last block is not its head."""
    found: set[str] = set()
    for result in model.get_results():
        node = result.input_value(0).get_node()
        for _ in range(8):
            if node.get_type_name() in QUANTIZABLE_TYPES and any(is_weight(v.get_node()) for v in node.input_values()):
                found.add(node.get_friendly_name())
                break
            activations = [v.get_node() for v in node.input_values() if not is_weight(v.get_node())]
            if len(activations) != 1:
                break
            node = activations[0]
    return sorted(found)


def is_attention(op: Any) -> bool:
    """Fused attention, or a MatMul of two activations (Q x K^T, scores x V)."""
    return bool(op.get_type_name() == "ScaledDotProductAttention") or _activation_matmul(op)


def _activation_matmul(op: Any) -> bool:
    """Q x K^T and scores x V in unfused attention: a MatMul with no weight (constant) input."""
    if op.get_type_name() != "MatMul":
        return False
    return not any(is_weight(value.get_node()) for value in op.input_values())


def is_weight(node: Any) -> bool:
    """A Constant, possibly behind Convert/Reshape/Transpose (how IR stores compressed weights)."""
    while node.get_type_name() in ("Convert", "Reshape", "Transpose", "Unsqueeze", "Squeeze"):
        node = node.input_value(0).get_node()
    return bool(node.get_type_name() == "Constant")


def ignored_names(matches: list[RuleMatch]) -> list[str]:
    return sorted({name for match in matches for name in match.nodes})


def parse_rules(texts: list[str] | tuple[str, ...] | None) -> list[Rule]:
    return [Rule.parse(t) for t in (DEFAULT_RULES if texts is None else texts)]
