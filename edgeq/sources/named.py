"""Models with several inputs, or integer ones (token ids): every input named, its dtype kept.

Their samples are named rows (edgeq.data.feed): one array per input in the data, by name. The
batch dimension is made dynamic; other dynamic dimensions (a sequence length) stay dynamic.
"""

from __future__ import annotations

from typing import Any

import openvino as ov

from edgeq.errors import InvalidArgument
from edgeq.sources.spec import InputSpec


def needs_names(model: ov.Model) -> bool:
    """Several inputs, or one whose element type is not floating point."""
    return len(model.inputs) > 1 or any(
        port.get_element_type().is_static() and not port.get_element_type().is_real() for port in model.inputs)


def named_inputs(model: ov.Model) -> list[InputSpec]:
    """The inputs' specs (-1 for each dynamic dimension but the batch), the batch made dynamic; unnamed
    outputs get `output`, `output_1`, ..."""
    for index, output in enumerate(model.outputs):
        if not output.get_names():
            output.get_tensor().set_names({"output" if index == 0 else f"output_{index}"})
    specs: list[InputSpec] = []
    shapes: dict[Any, ov.PartialShape] = {}
    for index, port in enumerate(model.inputs):
        if not port.get_names():
            port.get_tensor().set_names({f"input_{index}"})
        partial = port.get_partial_shape()
        name = port.get_any_name()
        if partial.rank.is_dynamic or partial.rank.get_length() < 2:
            raise InvalidArgument(f"input {name!r} has shape {partial}: edgeq needs a batch dimension and at least "
                                  "one more")
        dims = tuple(-1 if d.is_dynamic else d.get_length() for d in list(partial)[1:])
        element = port.get_element_type()
        if not element.is_static():
            raise InvalidArgument(f"input {name!r} has no static element type")
        specs.append(InputSpec(name=name, shape=dims, dtype=element.to_dtype().name))
        shapes[port] = ov.PartialShape([-1, *list(partial)[1:]])
    model.reshape(shapes)
    return specs
