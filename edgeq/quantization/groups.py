"""The layer groups of a transformer, found by where each weighted layer sits in the graph.

Names differ between timm, ONNX exports and Hugging Face models (`attn.qkv`, `query`/`key`/`value`,
`/blocks.0/attn/qkv/MatMul`), positions do not. For every weighted layer (a MatMul or convolution
with a constant weight) edgeq looks upstream, through single ops, to the first node that decides
what it is: the model input, a LayerNorm, attention, another weighted layer or a residual Add;
and, for a layer fed by a LayerNorm, downstream to whether its output reaches attention:

- `patch-embed`: fed by the model input (a ViT's strided convolution; a CNN's stem);
- `qkv`: fed by a LayerNorm, its output reaches attention (one fused QKV or separate Q, K, V);
- `proj`: fed by attention (the output projection);
- `fc1`: fed by a LayerNorm, its output reaches another weighted layer, not attention;
- `fc2`: fed, through the activation, by an fc1 layer only.

The head (`rules.output_layers`) belongs to no group here: it has its own rule. A layer nothing
above describes (a CNN's inner convolutions) belongs to no group. Groups never share a layer.
"""

from __future__ import annotations

from typing import Any

import openvino as ov

from edgeq.quantization import rules
from edgeq.quantization.graph import QUANTIZABLE_TYPES, consumers

_MAX_WALK = 64  # nodes visited per walk: a layer's deciding neighbour is a few reshapes away


def _weighted(op: Any) -> bool:
    return (op.get_type_name() in QUANTIZABLE_TYPES and not rules.is_attention(op)
            and any(rules.is_weight(value.get_node()) for value in op.input_values()))


def _activations(op: Any) -> list[Any]:
    """The float data feeding `op`: not its weights, not integer inputs (a Reshape's target shape, whose
    Concat of dimensions would otherwise read as a residual join above an output projection)."""
    return [value.get_node() for value in op.input_values()
            if value.get_element_type().is_real() and not rules.is_weight(value.get_node())]


class _Graph:
    """What decides a layer's group, read once per model."""

    def __init__(self, model: ov.Model):
        self.layernorm = rules.layernorm_nodes(model)
        self.head = set(rules.output_layers(model))

    def kind(self, op: Any) -> str | None:
        """What `op` is to a walk: a node that ends it, or None to walk on."""
        if op.get_type_name() == "Parameter":
            return "input"
        if op.get_friendly_name() in self.layernorm:
            return "layernorm"
        if rules.is_attention(op):
            return "attention"
        if _weighted(op):
            return "weighted"
        if op.get_type_name() in ("Add", "Concat") and len(_activations(op)) >= 2:
            return "residual"
        if op.get_type_name() == "Result":
            return "output"
        return None

    def upstream(self, layer: Any) -> dict[str, list[Any]]:
        """The deciding nodes above `layer`, by kind."""
        return self._walk(_activations(layer), _activations)

    def downstream(self, layer: Any) -> dict[str, list[Any]]:
        return self._walk(consumers(layer), consumers)

    def _walk(self, start: list[Any], step: Any) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        seen: set[str] = set()
        frontier = list(start)
        while frontier and len(seen) < _MAX_WALK:
            node = frontier.pop()
            name = node.get_friendly_name()
            if name in seen:
                continue
            seen.add(name)
            kind = self.kind(node)
            if kind is None:
                frontier.extend(step(node))
            else:
                found.setdefault(kind, []).append(node)
        return found


def find_groups(model: ov.Model) -> dict[str, list[str]]:
    """Layer names per group of `rules.LAYER_GROUPS`, sorted; every group present (maybe empty)."""
    graph = _Graph(model)
    groups: dict[str, list[str]] = {name: [] for name in rules.LAYER_GROUPS}
    fed_by_weighted: list[tuple[str, list[str]]] = []
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        if not _weighted(op) or name in graph.head:
            continue
        up = graph.upstream(op)
        if set(up) == {"input"}:
            groups["patch-embed"].append(name)
        elif set(up) == {"attention"}:
            groups["proj"].append(name)
        elif set(up) == {"layernorm"}:
            down = graph.downstream(op)
            if "attention" in down:
                groups["qkv"].append(name)
            elif "weighted" in down:
                groups["fc1"].append(name)
        elif set(up) == {"weighted"}:
            fed_by_weighted.append((name, [n.get_friendly_name() for n in up["weighted"]]))
    fc1 = set(groups["fc1"])
    groups["fc2"] = [name for name, sources in fed_by_weighted if set(sources) <= fc1]
    return {group: sorted(names) for group, names in groups.items()}
