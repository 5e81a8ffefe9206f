"""A small Vision Transformer for 28x28 grey images (Fashion-MNIST).

Built from timm's own `VisionTransformer`, so it converts and quantizes exactly like
the timm models our users ship; small enough (about 1 MB of weights) to commit.
The weights in `edgeq/assets/vit_fmnist.safetensors` come from `scripts/train_fmnist_vit.py`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

NAME = "edgeq_vit_fmnist"
# Fashion-MNIST pixel statistics on the training split (values in [0, 1]).
MEAN = (0.2860,)
STD = (0.3530,)
CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)


def build(**overrides: Any) -> Any:
    """Return the (untrained) model; `overrides` go to timm's VisionTransformer."""
    from timm.models.vision_transformer import VisionTransformer

    config: dict[str, Any] = dict(
        img_size=28, patch_size=4, in_chans=1, num_classes=len(CLASSES),
        embed_dim=64, depth=4, num_heads=4, mlp_ratio=4.0,
    )
    config.update(overrides)
    return VisionTransformer(**config)


def weights_path() -> Path:
    """The committed trained weights (safetensors)."""
    return Path(str(resources.files("edgeq.assets").joinpath("vit_fmnist.safetensors")))
