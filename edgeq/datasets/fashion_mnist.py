"""Fashion-MNIST from Debian's `dataset-fashion-mnist` package (MIT licence).

The package installs the original IDX files under /usr/share/datasets/fashion-mnist;
`EDGEQ_FASHION_MNIST` points elsewhere. Images come back as float32 in [0, 1], shape (N, 1, 28, 28).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from edgeq.errors import FailedPrecondition

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def data_dir() -> Path:
    return Path(os.environ.get("EDGEQ_FASHION_MNIST", DEFAULT_DIR))


def available() -> bool:
    return all((data_dir() / f).exists() for pair in _FILES.values() for f in pair)


def _read_idx(path: Path, header_ints: int) -> np.ndarray:
    with gzip.open(path, "rb") as stream:
        raw = stream.read()
    return np.frombuffer(raw, dtype=np.uint8, offset=4 * header_ints)


def load(split: str = "test", limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images float32 (N,1,28,28) in [0,1], labels int64 (N,))."""
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    if not available():
        raise FailedPrecondition(
            f"Fashion-MNIST not found in {data_dir()}: `apt-get install dataset-fashion-mnist` "
            "or set EDGEQ_FASHION_MNIST to a folder with the IDX .gz files"
        )
    images_file, labels_file = _FILES[split]
    images = _read_idx(data_dir() / images_file, 4).reshape(-1, 1, 28, 28)
    labels = _read_idx(data_dir() / labels_file, 2).astype(np.int64)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images.astype(np.float32) / 255.0, labels
