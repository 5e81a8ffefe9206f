"""Calibration and validation sets, streamed with bounded memory.

`open_samples(path, input_spec, preprocess)` reads an `.npz` (arrays `inputs` and optional
`labels`) or an image archive (`.tar`, `.tar.gz`, `.zip`, class folders give labels) and returns
a `SampleSet`: a re-iterable, validated stream of `Sample`s. For a model with several or integer
inputs (`inputs=`), an `.npz` holds one array per input, named as the input (edgeq.data.named), and
text files (`.txt`, `.jsonl`) are tokenized with the model folder's tokenizer (edgeq.data.text);
each sample is then one named row (edgeq.data.feed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgeq.data.samples import Sample, SampleSet, Subset, check_sample
from edgeq.errors import InvalidArgument
from edgeq.sources.spec import InputSpec, Preprocess

__all__ = ["Sample", "SampleSet", "Subset", "check_sample", "is_image_archive", "open_samples"]

IMAGE_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")


def is_image_archive(path: str | Path) -> bool:
    """Images in class folders (read with the model's preprocessing), as opposed to .npz tensors."""
    return Path(path).name.lower().endswith(IMAGE_ARCHIVES)


def open_samples(path: str | Path, spec: InputSpec, preprocess: Preprocess | None, *,
                 inputs: Sequence[InputSpec] = (), tokenizer: str | None = None,
                 max_length: int | None = None) -> SampleSet:
    """`inputs`: every input of a model whose samples are named rows (LoadedModel.inputs);
    `tokenizer`, `max_length`: how text files become token ids."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"data file {str(path)!r} does not exist")
    name = path.name.lower()
    if name.endswith((".txt", ".jsonl")):
        from edgeq.data.text import TextSamples

        return TextSamples(path, list(inputs) or [spec], tokenizer, max_length)
    if name.endswith(".npz") and inputs:
        from edgeq.data.named import NamedNpzSamples

        return NamedNpzSamples(path, list(inputs))
    if name.endswith(".npz"):
        from edgeq.data.npz import NpzSamples

        return NpzSamples(path, spec)
    if is_image_archive(path):
        if preprocess is None:
            raise InvalidArgument(
                f"{path.name}: images need preprocessing, but the model input {list(spec.shape)} is not an "
                "image of 1 or 3 channels; give an .npz of tensors instead"
            )
        from edgeq.data.images import ImageArchiveSamples

        return ImageArchiveSamples(path, spec, preprocess)
    raise InvalidArgument(f"{path.name}: expected .npz tensors, an image archive (.tar, .tar.gz, .zip) "
                          "or text (.txt, .jsonl) for a text model")
