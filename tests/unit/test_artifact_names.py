"""Uploads keep the client's file name, so errors name the file the user knows."""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgeq.artifacts import ArtifactStore, sweep_partial_uploads


def _upload(store: ArtifactStore, filename: str, data: bytes) -> str:
    writer = store.writer(filename)
    writer.write(data)
    return writer.finish().sha256


def test_the_uploaded_name_is_kept_and_sanitised(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    sha = _upload(store, "../../calib\x00 set.npz", b"npz bytes")
    assert sha == hashlib.sha256(b"npz bytes").hexdigest()
    assert store.get(sha).filename == "calib set.npz"
    assert store.get(sha).path.name == f"{sha}.npz"  # stored by content, read by suffix
    _upload(store, "renamed.npz", b"npz bytes")  # same bytes, new name: the latest wins
    assert store.get(sha).filename == "renamed.npz"


def test_messages_name_the_uploaded_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    sha = _upload(store, "images.tar.gz", b"tar bytes")
    path = store.get(sha).path
    message = f"InvalidArgument: {path.name} is not a readable archive; see {path}"
    assert store.name_files(message) == (f"InvalidArgument: 'images.tar.gz' (sha256 {sha[:12]}…) is not a readable "
                                         f"archive; see 'images.tar.gz' (sha256 {sha[:12]}…)")
    unknown = "ab" * 32
    assert store.name_files(f"{unknown}.onnx: bad") == f"{unknown[:12]}….onnx: bad"
    assert store.name_files("nothing to name here") == "nothing to name here"


def test_name_temp_files_of_dead_processes_are_swept(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    leftover = store.root / ".name-999999999-abcd"
    leftover.write_text("x.npz")
    sweep_partial_uploads(store)
    assert not leftover.exists()
