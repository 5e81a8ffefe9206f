"""edgeq.v1.JobSpec <-> edgeq.jobs.spec.JobSpec, field by field from the options model.

Each option's place on the wire is declared on the option (`edgeq.options.proto_path`); this
module walks the options, so a new option needs no code here. Absent fields (proto3 presence,
empty repeated fields, false booleans) leave the option at its default; present values are
validated by QuantizeOptions, whose InvalidArgument names the field.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from edgeq.errors import InvalidArgument
from edgeq.jobs.spec import JobSpec
from edgeq.options import OPTION_NAMES, QuantizeOptions, proto_path
from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb

SOURCES = ("timm", "onnx_artifact", "ir_artifact", "hf_artifact")
_WIRE_NAMES = re.compile(r"invalid option (\w+)")


def _holder(message: Message, path: str) -> tuple[Message, FieldDescriptor]:
    """The (sub)message that holds the field at a dotted path, and that field's descriptor."""
    *parents, leaf = path.split(".")
    for name in parents:
        message = getattr(message, name)
    return message, message.DESCRIPTOR.fields_by_name[leaf]


def _from_wire(value: Any, descriptor: FieldDescriptor) -> Any:
    # a float32 on the wire reads back as the nearest double (0.85 -> 0.8500000238...): keep its 7 digits
    return float(f"{value:.7g}") if descriptor.type == FieldDescriptor.TYPE_FLOAT else value


def _wire_name(name: str) -> str:
    return proto_path(name) if name in OPTION_NAMES else name


def options_from_proto(message: pb.JobSpec) -> QuantizeOptions:
    values: dict[str, Any] = {}
    for name in OPTION_NAMES:
        holder, descriptor = _holder(message, proto_path(name))
        value = getattr(holder, descriptor.name)
        if descriptor.is_repeated:
            if value:
                values[name] = tuple(_from_wire(v, descriptor) for v in value)
        elif descriptor.has_presence:
            if holder.HasField(descriptor.name):
                values[name] = _from_wire(value, descriptor)
        elif value:  # a plain bool: false is its default
            values[name] = value
    try:
        return QuantizeOptions(**values)
    except InvalidArgument as error:  # name the field as the client spelled it
        raise InvalidArgument(_WIRE_NAMES.sub(lambda m: f"invalid option {_wire_name(m[1])}", str(error))) from None


def options_to_proto(options: QuantizeOptions, message: pb.JobSpec, every: bool = False) -> pb.JobSpec:
    """Writes the options that were set explicitly (what a client asks for: the rest is the
    server's default), or `every` one (a job as recorded); None leaves a field absent."""
    for name in OPTION_NAMES if every else sorted(options.model_fields_set):
        value = getattr(options, name)
        if value is None:
            continue
        holder, descriptor = _holder(message, proto_path(name))
        if descriptor.is_repeated:
            getattr(holder, descriptor.name).extend(value)
        else:
            setattr(holder, descriptor.name, value)
    return message


def spec_from_proto(message: pb.JobSpec) -> JobSpec:
    source = message.model.WhichOneof("source")
    return JobSpec(
        target_name=message.target_name,
        **{name: getattr(message.model, name) if source == name else "" for name in SOURCES},
        weights_artifact=message.model.weights_artifact, calibration_artifact=message.calibration_artifact,
        validation_artifact=message.validation_artifact, options=options_from_proto(message),
    )


def spec_to_proto(spec: JobSpec, every: bool = False) -> pb.JobSpec:
    message = pb.JobSpec(target_name=spec.target_name, calibration_artifact=spec.calibration_artifact,
                         validation_artifact=spec.validation_artifact)
    for name in SOURCES:
        if getattr(spec, name):
            setattr(message.model, name, getattr(spec, name))
    if spec.weights_artifact:
        message.model.weights_artifact = spec.weights_artifact
    return options_to_proto(spec.options, message, every)
