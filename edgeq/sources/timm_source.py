"""timm models: built by name, weights from safetensors only, converted with ov.convert_model."""

from __future__ import annotations

from pathlib import Path

from edgeq._boundary import dependency, user_input
from edgeq.errors import InvalidArgument, NotFound
from edgeq.models import fmnist_vit
from edgeq.sources.naming import fix_io
from edgeq.sources.spec import LoadedModel, Preprocess

RANDOM_INIT_SEED = 0


def _build(name: str):  # type: ignore[no-untyped-def]
    import timm
    import torch

    torch.manual_seed(RANDOM_INIT_SEED)
    if name == fmnist_vit.NAME:
        return fmnist_vit.build(), Preprocess(size=(28, 28), channels=1, mean=fmnist_vit.MEAN, std=fmnist_vit.STD)
    if not timm.list_models(name):
        raise NotFound(f"timm has no model named {name!r} (timm {timm.__version__}); see timm.list_models()")
    with user_input(f"timm model {name!r} could not be built"):
        model = timm.create_model(name, pretrained=False)
    config = timm.data.resolve_data_config({}, model=model)
    channels, height, width = config["input_size"]
    preprocess = Preprocess(
        size=(height, width), channels=channels, mean=tuple(config["mean"]), std=tuple(config["std"]),
        crop_pct=float(config.get("crop_pct", 1.0)), interpolation=str(config.get("interpolation", "bilinear")),
    )
    return model, preprocess


def _load_weights(model, weights: Path) -> None:  # type: ignore[no-untyped-def]
    """safetensors only: user files are parsed, never unpickled."""
    from safetensors.torch import load_file

    if weights.suffix != ".safetensors":
        raise InvalidArgument(f"weights {weights.name!r}: only .safetensors files are accepted (never pickles)")
    if not weights.is_file():
        raise InvalidArgument(f"weights file {str(weights)!r} does not exist")
    with user_input(f"weights {weights.name!r} are not a valid safetensors file"):
        state = load_file(str(weights))
    with user_input(f"weights {weights.name!r} do not fit the model"):
        model.load_state_dict(state, strict=True)


def load_timm(
    name: str, *, weights: str | Path | None, input_shape: tuple[int, ...] | None, preprocess: Preprocess | None
) -> LoadedModel:
    import openvino as ov
    import torch

    model, default_preprocess = _build(name)
    notes: list[str] = []
    if weights is not None:
        _load_weights(model, Path(weights))
        weights_note = f"weights from {Path(weights).name}"
    elif name == fmnist_vit.NAME:
        _load_weights(model, fmnist_vit.weights_path())
        weights_note = "weights shipped with edgeq (trained on Fashion-MNIST)"
    else:
        weights_note = f"RANDOM INITIALISATION (seed {RANDOM_INIT_SEED}): for tests only, accuracy means nothing"
        notes.append(weights_note)
    model.eval()
    preprocess = preprocess or default_preprocess
    shape = input_shape or (preprocess.channels, *preprocess.size)
    with dependency(f"converting timm model {name!r} to OpenVINO"), torch.no_grad():
        ov_model = ov.convert_model(model, example_input=torch.zeros(1, *shape))
    spec = fix_io(ov_model, tuple(shape))
    return LoadedModel(model=ov_model, input=spec, preprocess=preprocess, source=f"timm:{name} ({weights_note})",
                       notes=notes, output_name=ov_model.outputs[0].get_any_name())
