"""ONNX files and OpenVINO IR (.xml + .bin) read by OpenVINO itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeq._boundary import user_input
from edgeq.errors import InvalidArgument
from edgeq.sources.named import named_inputs, needs_names
from edgeq.sources.naming import fix_io
from edgeq.sources.spec import LoadedModel, Preprocess


def _default_preprocess(shape: tuple[int, ...]) -> Preprocess | None:
    """Images can feed a (C, H, W) input with 1 or 3 channels; pixel values scaled to [0, 1]."""
    if len(shape) == 3 and shape[0] in (1, 3):
        c = shape[0]
        return Preprocess(size=(shape[1], shape[2]), channels=c, mean=(0.0,) * c, std=(1.0,) * c)
    return None


def _read_onnx(path: Path) -> Any:
    """An ONNX file through OpenVINO's ONNX frontend alone: `Core.read_model` tries every frontend on
    a file that is not valid ONNX, and the TensorFlow one prints its text-format parse errors (absl
    log lines) on stderr, beside edgeq's own message."""
    from openvino.frontend import FrontEndManager

    frontend = FrontEndManager().load_by_framework("onnx")
    return frontend.convert(frontend.load(str(path)))


def load_file(path: Path, *, input_shape: tuple[int, ...] | None, preprocess: Preprocess | None) -> LoadedModel:
    import openvino as ov

    core = ov.Core()
    if path.suffix.lower() == ".xml":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise InvalidArgument(f"OpenVINO IR {path.name!r} needs its weights file {weights.name!r} beside it")
        with user_input(f"{path.name!r} is not a readable OpenVINO IR"):
            model = core.read_model(str(path), str(weights))
        kind = "OpenVINO IR"
    else:
        with user_input(f"{path.name!r} is not a valid ONNX model"):
            model = _read_onnx(path)
        kind = "ONNX"
    if needs_names(model):  # several inputs or integer ones: named rows, dynamic dimensions kept
        specs = named_inputs(model)
        return LoadedModel(model=model, input=specs[0], preprocess=None, source=f"{kind} {path.name}",
                           output_name=model.outputs[0].get_any_name(), inputs=specs)
    spec = fix_io(model, input_shape)
    guessed = preprocess is None
    if guessed:
        preprocess = _default_preprocess(spec.shape)
    return LoadedModel(model=model, input=spec, preprocess=preprocess, source=f"{kind} {path.name}",
                       output_name=model.outputs[0].get_any_name(), preprocess_guessed=guessed and preprocess is not None)
