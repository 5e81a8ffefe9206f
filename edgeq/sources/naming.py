"""Give converted models stable tensor names and a static (but for batch) input shape."""

from __future__ import annotations

from typing import Any

import openvino as ov

from edgeq.errors import InvalidArgument
from edgeq.sources.spec import InputSpec


def fix_io(model: ov.Model, input_shape: tuple[int, ...] | None, default_input: str = "input") -> InputSpec:
    """Name unnamed tensors, make the batch dimension dynamic and the rest static."""
    if len(model.inputs) != 1:
        names = [p.get_any_name() for p in model.inputs]
        raise InvalidArgument(f"edgeq quantizes single-input models; this one has inputs {names}")
    port = model.inputs[0]
    if not port.get_names():
        port.get_tensor().set_names({default_input})
    for index, output in enumerate(model.outputs):
        if not output.get_names():
            output.get_tensor().set_names({"output" if index == 0 else f"output_{index}"})
    name = port.get_any_name()
    partial = port.get_partial_shape()
    if input_shape is None:
        if partial.rank.is_dynamic or any(d.is_dynamic for d in list(partial)[1:]):
            raise InvalidArgument(
                f"input {name!r} has dynamic dimensions {partial}: give the shape without the batch "
                "dimension with --input-shape, e.g. 3,224,224"
            )
        input_shape = tuple(d.get_length() for d in list(partial)[1:])
    elif partial.rank.is_static and partial.rank.get_length() != len(input_shape) + 1:
        raise InvalidArgument(
            f"--input-shape {list(input_shape)} has {len(input_shape)} dimensions; input {name!r} "
            f"needs {partial.rank.get_length() - 1} (without batch)"
        )
    try:
        model.reshape({name: ov.PartialShape([-1, *input_shape])})
    except Exception as error:  # noqa: BLE001 - OpenVINO reports shape conflicts as RuntimeError
        raise InvalidArgument(f"input {name!r} cannot take shape {list(input_shape)}: {str(error).splitlines()[0]}") from error
    element = port.get_element_type()
    dtype: Any = element.to_dtype().name if element.is_static() else "float32"
    return InputSpec(name=name, shape=tuple(input_shape), dtype=dtype)
