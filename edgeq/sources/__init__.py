"""Model import: a timm name, an ONNX file, an OpenVINO IR or a local Hugging Face model folder
becomes a float `openvino.Model`.

`load_model("timm:deit_tiny_patch16_224")`, `load_model("model.onnx")`, `load_model("model.xml")`,
`load_model("path/to/folder")` (config.json + safetensors, edgeq.sources.hf_source).
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
        from edgeq.sources.hf_source import is_hf_folder

        if is_hf_folder(path):
            from edgeq.sources.hf_source import load_hf_folder

            loaded = load_hf_folder(path, input_shape=input_shape, preprocess=preprocess)
            return _cut(loaded, output_node)
        if path.is_dir():
            raise InvalidArgument(f"model folder {source!r} has no config.json: a Hugging Face model folder is what "
                                  "save_pretrained writes (config.json + model.safetensors)")
        if not path.is_file():
            raise InvalidArgument(f"model file {source!r} does not exist (or use timm:NAME or a Hugging Face folder)")
        suffix = path.suffix.lower()
        from edgeq.sources.openvino_source import load_file

        if suffix not in (".onnx", ".xml"):
            raise InvalidArgument(f"model file {path.name!r}: expected .onnx or OpenVINO IR .xml")
        loaded = load_file(path, input_shape=input_shape, preprocess=preprocess)
    return _cut(loaded, output_node)


def _cut(loaded: LoadedModel, output_node: str | None) -> LoadedModel:
    if output_node:
        from edgeq.sources.graph_cut import cut_at

        loaded.model = cut_at(loaded.model, output_node)
        loaded.notes.append(f"graph cut at node {output_node!r}: its output is the model's output")
    return loaded
