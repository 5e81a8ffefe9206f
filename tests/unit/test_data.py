"""Calibration data: .npz and image archives, every bad input a clear error naming the sample."""

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeq.data import open_samples
from edgeq.data.samples import hold_out
from edgeq.errors import InvalidArgument, ResourceExhausted
from edgeq.sources.spec import InputSpec, Preprocess

SPEC = InputSpec("x", (1, 8, 8))
PRE = Preprocess(size=(8, 8), channels=1, mean=(0.5,), std=(0.5,))


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_streams_samples_with_labels(tmp_path: Path) -> None:
    inputs = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    samples = open_samples(_npz(tmp_path / "d.npz", inputs=inputs, labels=np.arange(5)), SPEC, None)
    got = list(samples)
    assert len(samples) == 5 and samples.has_labels
    assert [s.label for s in got] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(got[3].input, inputs[3])


def test_compressed_npz_works(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "c.npz", inputs=np.zeros((3, 1, 8, 8), np.float32))
    assert len(list(open_samples(tmp_path / "c.npz", SPEC, None))) == 3


def test_nan_sample_is_named(tmp_path: Path) -> None:
    inputs = np.zeros((4, 1, 8, 8), np.float32)
    inputs[2, 0, 3, 3] = np.nan
    samples = open_samples(_npz(tmp_path / "n.npz", inputs=inputs), SPEC, None)
    with pytest.raises(InvalidArgument, match=r"inputs\[2\].*NaN or Inf"):
        list(samples)


@pytest.mark.parametrize("arrays,message", [
    ({"inputs": np.zeros((3, 1, 8, 9), np.float32)}, "needs \\(N, 1, 8, 8\\)"),
    ({"inputs": np.zeros((0, 1, 8, 8), np.float32)}, "empty"),
    ({"data": np.zeros((3, 1, 8, 8), np.float32)}, "no array named 'inputs'"),
    ({"inputs": np.zeros((3, 1, 8, 8), np.float32), "labels": np.zeros(2, np.int64)}, "2 labels for 3 inputs"),
    ({"inputs": np.zeros((3, 1, 8, 8), np.float32), "labels": np.zeros(3, np.float32)}, "integer"),
    ({"inputs": np.array([None, 1], dtype=object)}, "Python objects"),
])
def test_bad_npz_files(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        list(open_samples(_npz(tmp_path / "bad.npz", **arrays), SPEC, None))


def test_truncated_and_garbage_files(tmp_path: Path) -> None:
    good = _npz(tmp_path / "g.npz", inputs=np.zeros((50, 1, 8, 8), np.float32))
    (tmp_path / "t.npz").write_bytes(good.read_bytes()[:3000])
    with pytest.raises(InvalidArgument):
        list(open_samples(tmp_path / "t.npz", SPEC, None))
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(InvalidArgument, match="not a valid .npz"):
        open_samples(tmp_path / "junk.npz", SPEC, None)


def _png(value: int, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (10, 12), value).save(buffer, format="PNG")
    return buffer.getvalue()


def _tar(path: Path, entries: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_image_archive_labels_from_sorted_folders(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "imgs.tar", {"cat/1.png": _png(0), "ant/2.png": _png(255), "cat/0.png": _png(128)})
    samples = open_samples(archive, SPEC, PRE)
    got = list(samples)
    assert [s.name for s in got] == ["ant/2.png", "cat/0.png", "cat/1.png"]
    assert [s.label for s in got] == [0, 1, 1]
    assert got[0].input.shape == (1, 8, 8)
    assert np.allclose(got[0].input, 1.0) and np.allclose(got[2].input, -1.0)


def test_zip_archives_work_too(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as archive:
        archive.writestr("a/x.png", _png(10, "RGB"))
    assert len(list(open_samples(tmp_path / "imgs.zip", SPEC, PRE))) == 1


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "bad.tar", {"a/ok.png": _png(1), "a/broken.png": b"\x89PNG garbage"})
    with pytest.raises(InvalidArgument, match="a/broken.png"):
        list(open_samples(archive, SPEC, PRE))


@pytest.mark.parametrize("name,message", [("../evil.png", "'\\.\\.'"), ("/etc/evil.png", "absolute")])
def test_hostile_archive_paths(tmp_path: Path, name: str, message: str) -> None:
    archive = _tar(tmp_path / "evil.tar", {name: _png(1)})
    with pytest.raises(InvalidArgument, match=message):
        open_samples(archive, SPEC, PRE)


def test_links_and_devices_are_refused(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "link.tar", "w") as archive:
        info = tarfile.TarInfo("a/link.png")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    with pytest.raises(InvalidArgument, match="link"):
        open_samples(tmp_path / "link.tar", SPEC, PRE)
    with tarfile.open(tmp_path / "dev.tar", "w") as archive:
        info = tarfile.TarInfo("a/dev.png")
        info.type = tarfile.CHRTYPE
        archive.addfile(info)
    with pytest.raises(InvalidArgument, match="device"):
        open_samples(tmp_path / "dev.tar", SPEC, PRE)


def test_zip_bomb_ratio_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/zeros.png", b"\0" * (8 << 20))
    with pytest.raises(ResourceExhausted, match="decompression bomb"):
        open_samples(tmp_path / "bomb.zip", SPEC, PRE)


def test_empty_archive(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no files"):
        open_samples(_tar(tmp_path / "empty.tar", {}), SPEC, PRE)


def test_hold_out_is_disjoint_and_deterministic(tmp_path: Path) -> None:
    inputs = np.arange(10 * 64, dtype=np.float32).reshape(10, 1, 8, 8)
    calibration, validation = hold_out(open_samples(_npz(tmp_path / "h.npz", inputs=inputs), SPEC, None), 0.3)
    cal = [int(s.input[0, 0, 0]) // 64 for s in calibration]
    val = [int(s.input[0, 0, 0]) // 64 for s in validation]
    assert set(cal).isdisjoint(val) and sorted(cal + val) == list(range(10))
    assert val == [2, 5, 8]
