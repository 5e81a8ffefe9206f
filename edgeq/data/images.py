"""Image archives in class folders: `<class>/<file>.png`; labels are sorted folder names.

Images are decoded one at a time (bounded memory), preprocessed like the model was trained.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from edgeq.archive import SafeArchive
from edgeq.data.samples import Sample, check_sample
from edgeq.errors import InvalidArgument
from edgeq.sources.spec import InputSpec, Preprocess

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
MAX_IMAGE_PIXELS = 64_000_000  # checked here, not set in PIL: the host's own PIL limit stays as it is


def preprocess_image(data: bytes, preprocess: Preprocess, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as opened:  # reads the header only
            if opened.width * opened.height > MAX_IMAGE_PIXELS:
                raise InvalidArgument(f"image {name}: {opened.width}x{opened.height} pixels is more than the "
                                      f"{MAX_IMAGE_PIXELS:,} edgeq decodes")
            image = opened.convert("L" if preprocess.channels == 1 else "RGB")
    except InvalidArgument:
        raise
    except Exception as error:  # noqa: BLE001 - PIL raises many types for bad files
        raise InvalidArgument(f"image {name}: cannot be decoded ({type(error).__name__}: {error})") from error
    height, width = preprocess.size
    methods = Image.Resampling
    resample = {"bicubic": methods.BICUBIC, "nearest": methods.NEAREST}.get(preprocess.interpolation, methods.BILINEAR)
    scale_h, scale_w = round(height / preprocess.crop_pct), round(width / preprocess.crop_pct)
    ratio = max(scale_h / image.height, scale_w / image.width)
    resized = image.resize((max(width, round(image.width * ratio)), max(height, round(image.height * ratio))), resample)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    cropped = resized.crop((left, top, left + width, top + height))
    pixels = np.asarray(cropped, dtype=np.float32) / 255.0
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    mean = np.asarray(preprocess.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(preprocess.std, dtype=np.float32)[:, None, None]
    return (pixels - mean) / std


class ImageArchiveSamples:
    def __init__(self, path: Path, spec: InputSpec, preprocess: Preprocess):
        self.path = path
        self.spec = spec
        self.preprocess = preprocess
        self.archive = SafeArchive(path)
        images = sorted((e for e in self.archive.entries if e.name.lower().endswith(IMAGE_SUFFIXES)), key=lambda e: e.name)
        if not images:
            raise InvalidArgument(f"{path.name}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the archive")
        folders = {PurePosixPath(e.name).parent.name for e in images}
        self.has_labels = "" not in folders and len(folders) >= 1
        self.classes = sorted(folders) if self.has_labels else []
        self.images = images
        expected = (preprocess.channels, *preprocess.size)
        if tuple(spec.shape) != expected:
            raise InvalidArgument(f"{path.name}: preprocessing makes images {list(expected)}, the model needs {list(spec.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[Sample]:
        class_index = {name: i for i, name in enumerate(self.classes)}
        with self.archive.reader() as reader:
            for index, entry in enumerate(self.images):
                pixels = preprocess_image(reader.read(entry), self.preprocess, entry.name)
                values = check_sample(pixels, self.spec, entry.name)
                label = class_index[PurePosixPath(entry.name).parent.name] if self.has_labels else None
                yield Sample(index, values, label, entry.name)
