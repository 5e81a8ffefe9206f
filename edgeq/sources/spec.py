"""What a model expects at its input, and how raw images become that input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeq.errors import InvalidArgument


@dataclass(frozen=True)
class Preprocess:
    """Image preprocessing: resize the shorter side to size/crop_pct, centre-crop, scale to
    [0, 1], then (x - mean) / std per channel."""

    size: tuple[int, int]
    channels: int = 3
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    crop_pct: float = 1.0
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise InvalidArgument(f"images must have 1 or 3 channels, not {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise InvalidArgument(
                f"mean and std need {self.channels} values each, got {list(self.mean)} and {list(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise InvalidArgument(f"std values must be positive, got {list(self.std)}")
        if not 0.1 <= self.crop_pct <= 1.0:
            raise InvalidArgument(f"crop_pct must be in [0.1, 1], got {self.crop_pct}")


@dataclass(frozen=True)
class InputSpec:
    """One model input. `shape` excludes the batch dimension (always dynamic); -1 marks another
    dynamic dimension (a text model's sequence length), fixed per data set, free when served."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if not self.shape or any(int(d) == 0 or int(d) < -1 for d in self.shape):
            raise InvalidArgument(
                f"input {self.name!r} has an unknown or invalid shape {list(self.shape)}: "
                "give it with --input-shape, e.g. 3,224,224"
            )


@dataclass
class LoadedModel:
    """A float model ready for quantization, and what we know about where it came from."""

    model: Any  # openvino.Model
    input: InputSpec
    preprocess: Preprocess | None
    source: str
    notes: list[str] = field(default_factory=list)
    output_name: str = "output"
    # `preprocess` is edgeq's guess (pixels to [0, 1], no normalisation), neither the model's nor the
    # user's: worth a warning when images are read with it, meaningless when the data are tensors.
    preprocess_guessed: bool = False
    # Every input when there are several or they are not float (`input` is then the first): samples
    # are named rows (edgeq.data.feed). Empty for the single float input.
    inputs: list[InputSpec] = field(default_factory=list)
    tokenizer: str | None = None  # a folder with the model's tokenizer: text data files are tokenized with it

    @property
    def named(self) -> bool:
        """Samples are named rows, one field per input."""
        return bool(self.inputs)


def parse_shape(text: str) -> tuple[int, ...]:
    """'3,224,224' or '3x224x224' -> (3, 224, 224); a leading batch dimension is not given."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise InvalidArgument(f"input shape {text!r} is not a list of integers like 3,224,224") from None
    if not shape or any(d <= 0 for d in shape):
        raise InvalidArgument(f"input shape {text!r} must be positive integers like 3,224,224")
    return shape
