"""Cut a model at an inner node: that node's first output becomes the model's only output.

Used to take backbone features (e.g. after the final LayerNorm) for linear-probe accuracy.
"""

from __future__ import annotations

import openvino as ov

from edgeq.errors import InvalidArgument


def cut_at(model: ov.Model, node_name: str) -> ov.Model:
    nodes = {op.get_friendly_name(): op for op in model.get_ops()}
    if node_name not in nodes:
        close = sorted(n for n in nodes if node_name.split("/")[-1] in n)[:5]
        raise InvalidArgument(f"no node named {node_name!r} in the model" + (f"; similar: {close}" if close else ""))
    output = nodes[node_name].output(0)
    if not output.get_names():
        output.get_tensor().set_names({"features"})
    return ov.Model([output], model.get_parameters(), model.get_friendly_name())
