"""A local Hugging Face model folder (`config.json` + safetensors, as `save_pretrained` writes it).

Never online: HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE are set and every load is `local_files_only`;
weights are read from safetensors only (a folder with nothing but a pickled `pytorch_model.bin` is
refused). The model class is the one `config.json` names (`architectures`), else `AutoModel`;
attention is transformers' "eager" implementation, so Softmax stays an explicit op for the
ignored-scope rules rather than one fused scaled-dot-product-attention op.

Exporter: `openvino.convert_model` on the transformers module, traced with example inputs. It is
the converter optimum-intel's OpenVINO export calls itself; optimum-intel was tried too and gave the
same inputs (int64 ids with a dynamic batch and sequence) and the same outputs (within 5e-7 of
PyTorch for BERT and ViT, as this converter), but it pins transformers, tokenizers and
huggingface-hub below the versions edgeq runs with and pulls in requests and openvino-tokenizers,
so it cannot be installed beside them without breaking `pip check`.

What the float model computes, one output:
- a sentence-transformers folder (`modules.json` with a Pooling module): the sentence embedding,
  pooled as `1_Pooling/config.json` says (mean, CLS or max over the attention mask), L2-normalised
  when a Normalize module follows: what the folder's users compare;
- a model with a head (`...ForImageClassification`, `...ForSequenceClassification`): its logits;
- an encoder without a head: `last_hidden_state`.
Text models take `input_ids`, `attention_mask` and `token_type_ids` (those the forward accepts) as
int64 with a dynamic sequence dimension, kept dynamic through quantization and serving; image models
take `pixel_values` at the size of their config, with the preprocessing of `preprocessor_config.json`.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

from edgeq._boundary import dependency, user_input
from edgeq.errors import FailedPrecondition, InvalidArgument
from edgeq.sources.naming import fix_io
from edgeq.sources.spec import InputSpec, LoadedModel, Preprocess

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL codes in preprocessor_config.json


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def offline() -> None:
    """No hub, ever: set before transformers is imported (it reads them at import)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _json(path: Path) -> dict[str, Any]:
    with user_input(f"{path.name} is not valid JSON"):
        data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path.name}: expected a JSON object")
    return data


def _check_weights(folder: Path) -> None:
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt*"))
    raise InvalidArgument(f"model folder {folder.name!r} has no .safetensors weights"
                          + (f" (only {pickles}: pickled weights are never loaded)" if pickles else ""))


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(folder: str | Path) -> Any:
    """The folder's own tokenizer, offline."""
    offline()
    folder = Path(folder)
    if not has_tokenizer(folder):
        raise InvalidArgument(f"model folder {folder.name!r} has no tokenizer ({', '.join(TOKENIZER_FILES)}): "
                              "text files cannot be tokenized; give an .npz with one array per input instead")
    with dependency("importing transformers (pip install 'edgeq[text]')", {ImportError: FailedPrecondition}):
        from transformers import AutoTokenizer
    with user_input(f"the tokenizer of {folder.name!r} could not be loaded"):
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def _pooling(folder: Path) -> tuple[str, bool] | None:
    """(pooling mode, normalise) of a sentence-transformers folder; None for a plain transformers one."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    with user_input("modules.json is not valid JSON"):
        modules = json.loads(modules_file.read_text())
    kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules if isinstance(m, dict)}
    if "Pooling" not in kinds:
        return None
    config = _json(folder / str(kinds["Pooling"].get("path", "1_Pooling")) / "config.json")
    modes = [mode for mode in ("cls_token", "mean_tokens", "max_tokens") if config.get(f"pooling_mode_{mode}")]
    if len(modes) != 1:
        raise InvalidArgument(f"sentence-transformers pooling {modes or 'none'}: edgeq supports exactly one of "
                              "pooling_mode_cls_token, pooling_mode_mean_tokens, pooling_mode_max_tokens")
    return modes[0], "Normalize" in kinds


def _model_class(config: Any) -> Any:
    import transformers

    for name in config.architectures or []:
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    return transformers.AutoModel


def _build(folder: Path) -> tuple[Any, Any]:
    offline()
    with dependency("importing transformers (pip install 'edgeq[text]')", {ImportError: FailedPrecondition}):
        import transformers  # noqa: F401
        from transformers import AutoConfig
    with user_input(f"{folder.name}/config.json is not a transformers model configuration"):
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    cls = _model_class(config)
    with user_input(f"model folder {folder.name!r} could not be loaded with transformers {cls.__name__}"):
        model = cls.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                    attn_implementation="eager")
    return model.eval(), config


def _image_size(config: Any) -> tuple[int, int]:
    size = config.image_size
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _preprocess(folder: Path, config: Any) -> Preprocess:
    """preprocessor_config.json as edgeq's Preprocess (resize to the model's size, mean/std)."""
    height, width = _image_size(config)
    channels = int(config.num_channels)
    mean, std, interpolation = (0.5,) * channels, (0.5,) * channels, "bilinear"
    path = folder / "preprocessor_config.json"
    if path.is_file():
        data = _json(path)
        if data.get("do_normalize", True):
            mean = tuple(float(v) for v in data.get("image_mean", mean))
            std = tuple(float(v) for v in data.get("image_std", std))
        else:
            mean, std = (0.0,) * channels, (1.0,) * channels
        interpolation = _RESAMPLE.get(int(data.get("resample", 2)), "bilinear")
    return Preprocess(size=(height, width), channels=channels, mean=mean, std=std, interpolation=interpolation)


def _wrapper(model: Any, names: list[str], pooling: tuple[str, bool] | None, example: tuple[Any, ...]) -> tuple[Any, str]:
    """A module with positional inputs (`names`) and one output, and that output's name (the model
    is run once on `example` to see whether it has a head that gives logits)."""
    import torch

    with torch.no_grad():
        logits = getattr(model(**dict(zip(names, example))), "logits", None) is not None

    class OneOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            inputs = dict(zip(names, tensors))
            out = self.model(**inputs)
            if pooling is not None:
                return _pool(out.last_hidden_state, inputs.get("attention_mask"), *pooling)
            return out.logits if logits else out.last_hidden_state

    return OneOutput().eval(), "sentence_embedding" if pooling else ("logits" if logits else "last_hidden_state")


def _pool(hidden: Any, mask: Any, mode: str, normalize: bool) -> Any:
    import torch

    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=torch.int64)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "cls_token":
        pooled = hidden[:, 0]
    elif mode == "max_tokens":
        pooled = torch.where(weights > 0, hidden, torch.full_like(hidden, -1e9)).max(dim=1).values
    else:
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1) if normalize else pooled


def _text_inputs(model: Any) -> list[str]:
    accepted = inspect.signature(model.forward).parameters
    names = [name for name in TEXT_INPUTS if name in accepted]
    if "input_ids" not in names:
        raise InvalidArgument(f"{type(model).__name__} takes no input_ids: edgeq imports text encoders "
                              "(input_ids, attention_mask, token_type_ids) and image models (pixel_values)")
    return names


def load_hf_folder(folder: Path, *, input_shape: tuple[int, ...] | None, preprocess: Preprocess | None) -> LoadedModel:
    import openvino as ov
    import torch

    _check_weights(folder)
    pooling = _pooling(folder)
    model, config = _build(folder)
    kind = f"Hugging Face folder {folder.name} ({type(model).__name__})"
    if hasattr(config, "image_size") and hasattr(config, "num_channels"):  # a vision model
        preprocess = preprocess or _preprocess(folder, config)
        shape = input_shape or (preprocess.channels, *preprocess.size)
        image = (torch.zeros(1, *shape),)
        module, out_name = _wrapper(model, ["pixel_values"], None, image)
        with dependency(f"converting {folder.name!r} to OpenVINO"), torch.no_grad():
            ov_model = ov.convert_model(module, example_input=image)
        ov_model.inputs[0].get_tensor().set_names({"pixel_values"})
        ov_model.outputs[0].get_tensor().set_names({out_name})
        spec = fix_io(ov_model, tuple(shape))
        return LoadedModel(model=ov_model, input=spec, preprocess=preprocess, source=kind, output_name=out_name)
    if input_shape is not None:
        raise InvalidArgument("--input-shape does not apply to text models: their sequence length stays dynamic "
                              "(the data's length is set by --max-length or the .npz arrays)")
    names = _text_inputs(model)
    example = tuple(torch.ones(2, 8, dtype=torch.int64) if name != "token_type_ids" else torch.zeros(2, 8, dtype=torch.int64)
                    for name in names)
    module, out_name = _wrapper(model, names, pooling, example)
    with dependency(f"converting {folder.name!r} to OpenVINO"), torch.no_grad():
        ov_model = ov.convert_model(module, example_input=example,
                                    input=[(ov.PartialShape([-1, -1]), ov.Type.i64) for _ in names])
    for port, name in zip(ov_model.inputs, names):
        port.get_tensor().set_names({name})
    ov_model.outputs[0].get_tensor().set_names({out_name})
    specs = [InputSpec(name=name, shape=(-1,), dtype="int64") for name in names]
    notes = [f"sentence embedding: {pooling[0].replace('_', ' ')} pooling" + (", L2-normalised" if pooling[1] else "")
             ] if pooling else []
    return LoadedModel(model=ov_model, input=specs[0], preprocess=None, source=kind, notes=notes,
                       output_name=out_name, inputs=specs,
                       tokenizer=str(folder) if has_tokenizer(folder) else None)


def pack_folder(folder: Path, target_dir: Path) -> Path:
    """The folder's regular files as `<name>.tar` in `target_dir`, for upload (Submit's hf_artifact);
    links are left out, as the server's archive reader would refuse them."""
    import tarfile

    if not is_hf_folder(folder):
        raise InvalidArgument(f"{folder} is not a Hugging Face model folder (no config.json)")
    _check_weights(folder)
    path = target_dir / f"{folder.resolve().name}.tar"
    with tarfile.open(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file() and not file.is_symlink() and ".cache" not in file.relative_to(folder).parts:
                archive.add(file, arcname=str(file.relative_to(folder)), recursive=False)
    return path
