"""Calibration and validation sets, streamed with bounded memory.

`open_samples(path, input_spec, preprocess)` reads an `.npz` (arrays `inputs` and optional
`labels`) or an image archive (`.tar`, `.tar.gz`, `.zip`, class folders give labels) and returns
a `SampleSet`: a re-iterable, validated stream of `Sample`s.
"""

from __future__ import annotations

from pathlib import Path

from edgeq.data.samples import Sample, SampleSet, Subset, check_sample
from edgeq.errors import InvalidArgument
from edgeq.sources.spec import InputSpec, Preprocess

__all__ = ["Sample", "SampleSet", "Subset", "check_sample", "is_image_archive", "open_samples"]

IMAGE_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")


def is_image_archive(path: str | Path) -> bool:
    """Images in class folders (read with the model's preprocessing), as opposed to .npz tensors."""
    return Path(path).name.lower().endswith(IMAGE_ARCHIVES)


def open_samples(path: str | Path, spec: InputSpec, preprocess: Preprocess | None) -> SampleSet:
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"data file {str(path)!r} does not exist")
    name = path.name.lower()
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
    raise InvalidArgument(f"{path.name}: expected .npz tensors or an image archive (.tar, .tar.gz, .zip)")
