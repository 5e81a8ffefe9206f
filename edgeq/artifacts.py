"""Content-addressed uploads: `<store>/.artifacts/<sha256><ext>`, written atomically.

The extension is kept from the client's file name (from an allow-list) because it decides how the
file is read (.onnx, .npz, .tar, .zip, .safetensors). The client's file name itself is kept beside
it (`<sha256>.filename`, the latest upload's name wins) so that errors can name the file the user
knows, not only its digest.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgeq.errors import InvalidArgument, NotFound, ResourceExhausted

ALLOWED_SUFFIXES = (".tar.gz", ".tgz", ".onnx", ".npz", ".tar", ".zip", ".safetensors", ".txt", ".jsonl")
DEFAULT_MAX_BYTES = 2 * 2**30
NAME_SUFFIX = ".filename"
_SHA = re.compile(r"^[0-9a-f]{64}$")
# A stored artifact's name in a message, with or without the directory before it.
_STORED_NAME = re.compile(r"(?:[^\s'\"]*/)?([0-9a-f]{64})(" + "|".join(re.escape(s) for s in ALLOWED_SUFFIXES) + r")\b")


@dataclass(frozen=True)
class Artifact:
    sha256: str
    size: int
    path: Path
    filename: str


def suffix_of(filename: str) -> str:
    lower = filename.lower()
    for suffix in ALLOWED_SUFFIXES:
        if lower.endswith(suffix):
            return suffix
    raise InvalidArgument(f"file {filename!r}: unsupported type; allowed: {', '.join(ALLOWED_SUFFIXES)}")


class ArtifactStore:
    def __init__(self, root: str | Path, max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = Path(root) / ".artifacts"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    def writer(self, filename: str, declared_sha256: str = "", declared_size: int = 0) -> "ArtifactWriter":
        suffix = suffix_of(filename)
        if declared_sha256 and not _SHA.match(declared_sha256):
            raise InvalidArgument(f"declared sha256 {declared_sha256!r} is not 64 lowercase hex digits")
        if declared_size and declared_size > self.max_bytes:
            raise ResourceExhausted(f"upload of {declared_size} bytes exceeds the limit of {self.max_bytes}")
        return ArtifactWriter(self, filename, suffix, declared_sha256, declared_size)

    def get(self, sha256: str) -> Artifact:
        if not _SHA.match(sha256 or ""):
            raise InvalidArgument(f"artifact id {sha256!r} is not a sha256 (64 lowercase hex digits)")
        for suffix in ALLOWED_SUFFIXES:
            path = self.root / f"{sha256}{suffix}"
            if path.is_file():
                return Artifact(sha256, path.stat().st_size, path, self.filename(sha256) or path.name)
        raise NotFound(f"artifact {sha256[:12]}… was never uploaded (or was removed)")

    def filename(self, sha256: str) -> str | None:
        """The name the file was uploaded under (None: unknown, e.g. uploaded before names were kept)."""
        try:
            return (self.root / f"{sha256}{NAME_SUFFIX}").read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def name_files(self, message: str) -> str:
        """`message` with each stored artifact path replaced by `'<uploaded name>' (sha256 <first 12>…)`."""
        def label(match: re.Match[str]) -> str:
            name = self.filename(match.group(1))
            short = f"sha256 {match.group(1)[:12]}…"
            return f"{name!r} ({short})" if name else f"{match.group(1)[:12]}…{match.group(2)}"

        return _STORED_NAME.sub(label, message)

    def _remember_name(self, sha256: str, filename: str) -> None:
        name = "".join(c for c in Path(filename.replace("\\", "/")).name if c.isprintable())[:255]
        if not name:
            return
        temp = self.root / f".name-{os.getpid()}-{os.urandom(8).hex()}"
        temp.write_text(name, encoding="utf-8")
        os.replace(temp, self.root / f"{sha256}{NAME_SUFFIX}")


class ArtifactWriter:
    """Accumulates chunks in a temp file; `finish()` verifies and renames into place."""

    def __init__(self, store: ArtifactStore, filename: str, suffix: str, declared_sha256: str, declared_size: int):
        self.store, self.filename, self.suffix = store, filename, suffix
        self.declared_sha256, self.declared_size = declared_sha256, declared_size
        self.temp = store.root / f".upload-{os.getpid()}-{os.urandom(8).hex()}"
        self.handle = open(self.temp, "wb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.store.max_bytes:
            self.abort()
            raise ResourceExhausted(f"upload exceeds the limit of {self.store.max_bytes} bytes")
        self.digest.update(data)
        self.handle.write(data)

    def abort(self) -> None:
        if not self.handle.closed:
            self.handle.close()
        self.temp.unlink(missing_ok=True)

    def finish(self) -> Artifact:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        sha = self.digest.hexdigest()
        if self.declared_size and self.size != self.declared_size:
            self.abort()
            raise InvalidArgument(f"upload truncated or padded: declared {self.declared_size} bytes, received {self.size}")
        if self.declared_sha256 and sha != self.declared_sha256:
            self.abort()
            raise InvalidArgument(f"upload corrupted: sha256 {sha[:12]}… does not match the declared {self.declared_sha256[:12]}…")
        if self.size == 0:
            self.abort()
            raise InvalidArgument("upload is empty")
        target = self.store.root / f"{sha}{self.suffix}"
        os.replace(self.temp, target)
        self.store._remember_name(sha, self.filename)
        return Artifact(sha, self.size, target, self.filename)


def sweep_partial_uploads(store: ArtifactStore) -> None:
    """Remove temp files of uploads whose process is gone (after a crash)."""
    for leftover in [*store.root.glob(".upload-*"), *store.root.glob(".name-*")]:
        pid = leftover.name.split("-")[1]
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, ValueError):
            leftover.unlink(missing_ok=True)
        except PermissionError:
            pass


def iter_file(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            yield block
