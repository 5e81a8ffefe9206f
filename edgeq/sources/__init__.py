"""Model import: a timm name, an ONNX file or an OpenVINO IR becomes a float `openvino.Model`.

`load_model("timm:deit_tiny_patch16_224")`, `load_model("model.onnx")`, `load_model("model.xml")`.
"""

from __future__ import annotations

from pathlib import Path

from edgeq.errors import InvalidArgument
from edgeq.sources.spec import InputSpec, LoadedModel, Preprocess, parse_shape

__all__ = ["InputSpec", "LoadedModel", "Preprocess", "load_model", "parse_shape"]


def load_model(
    source: str,
    *,
    weights: str | Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    preprocess: Preprocess | None = None,
    output_node: str | None = None,
) -> LoadedModel:
    """Import `source` as a float OpenVINO model with a known input spec."""
    from edgeq._offline import disable_telemetry

    disable_telemetry()
    if source.startswith("timm:"):
        from edgeq.sources.timm_source import load_timm

        loaded = load_timm(source[len("timm:"):], weights=weights, input_shape=input_shape, preprocess=preprocess)
    else:
        if weights is not None:
            raise InvalidArgument("--weights only applies to timm:NAME sources")
        path = Path(source)
        if not path.is_file():
            raise InvalidArgument(f"model file {source!r} does not exist (or use timm:NAME)")
        suffix = path.suffix.lower()
        from edgeq.sources.openvino_source import load_file

        if suffix not in (".onnx", ".xml"):
            raise InvalidArgument(f"model file {path.name!r}: expected .onnx or OpenVINO IR .xml")
        loaded = load_file(path, input_shape=input_shape, preprocess=preprocess)
    if output_node:
        from edgeq.sources.graph_cut import cut_at

        loaded.model = cut_at(loaded.model, output_node)
        loaded.notes.append(f"graph cut at node {output_node!r}: its output is the model's output")
    return loaded
