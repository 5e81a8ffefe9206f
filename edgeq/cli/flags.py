"""The flags of `edgeq quantize` and `edgeq submit`, generated from edgeq.options.QuantizeOptions.

Every option becomes `--its-name` (or the flag it declares), with its help and default; a
`Literal` gives the choices, a tuple a comma-separated list (`--rule` is repeated instead), a
bool a switch. Flags left out stay None, so the options model alone supplies the defaults.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable
from typing import Any

from edgeq.options import OPTION_NAMES, QuantizeOptions, flag_of


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """What to quantize and what to call it (paths here; a server gets them uploaded)."""
    parser.add_argument("--model", required=True, help="timm:NAME, model.onnx, model.xml (OpenVINO IR) or a Hugging Face "
                        "model folder (config.json + safetensors)")
    parser.add_argument("--weights", help="safetensors weights for a timm model")
    parser.add_argument("--calibration", required=True, help=".npz (inputs, labels; or one array per input, named as "
                        "the inputs), image archive (.tar/.zip), or .txt/.jsonl sentences for a text model")
    parser.add_argument("--validation", help="validation set; without it part of the calibration set is held out")
    parser.add_argument("--name", required=True, help="model name in the store")


def _list_of(item: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        return tuple(item(part) for part in text.replace("x", ",").split(",") if part.strip())

    parse.__name__ = f"comma-separated {item.__name__} list"  # argparse names the type in its errors
    return parse


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X; Annotated[X, ...] -> X."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _default_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
    return f" (default: {value})"


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("quantization options")
    for name in OPTION_NAMES:
        field = QuantizeOptions.model_fields[name]
        kind = _unwrap(field.annotation)
        help_text = f"{field.description}{_default_text(field.default)}"
        flag = flag_of(name)
        if kind is bool:
            group.add_argument(flag, dest=name, action="store_true", default=None, help=field.description)
        elif typing.get_origin(kind) is typing.Literal:
            group.add_argument(flag, dest=name, choices=typing.get_args(kind), help=help_text)
        elif typing.get_origin(kind) is tuple:
            item = _unwrap(typing.get_args(kind)[0])
            if item is str:
                group.add_argument(flag, dest=name, action="append", metavar=flag[2:].upper(), help=help_text)
            else:
                group.add_argument(flag, dest=name, type=_list_of(item), help=help_text)
        else:
            group.add_argument(flag, dest=name, type=kind, help=help_text)


def options_from_flags(args: argparse.Namespace) -> QuantizeOptions:
    """The options the flags set; the rest keep the model's defaults (and stay unset for a server)."""
    return QuantizeOptions(**{name: getattr(args, name) for name in OPTION_NAMES if getattr(args, name) is not None})
