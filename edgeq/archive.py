"""Safe reading of user archives (.tar, .tar.gz, .zip): list, check, then read one entry at a time.

Refused: absolute paths, `..` components, links, devices and other non-regular entries, entries
over the size cap, too many entries, too much in total, and (zip) suspicious compression ratios.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from edgeq.errors import InvalidArgument, ResourceExhausted


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 200_000
    max_entry_bytes: int = 64 * 2**20
    max_total_bytes: int = 16 * 2**30
    max_ratio: float = 200.0  # uncompressed / compressed, per zip entry


def check_zip_member(label: str, info: zipfile.ZipInfo, limits: ArchiveLimits, max_bytes: int) -> None:
    """Refuse a zip member that would expand past `max_bytes` or by more than the ratio cap, from
    the sizes the zip declares (reading never goes past the declared size: zipfile stops there)."""
    if info.file_size > max_bytes:
        raise ResourceExhausted(f"{label}: entry {info.filename!r} expands to {info.file_size} bytes; the limit is {max_bytes}")
    if info.compress_size and info.file_size / info.compress_size > limits.max_ratio:
        raise ResourceExhausted(
            f"{label}: entry {info.filename!r} expands {info.file_size / info.compress_size:.0f}x "
            f"(limit {limits.max_ratio:.0f}x): refusing a possible decompression bomb"
        )


@dataclass(frozen=True)
class Entry:
    name: str
    size: int


def _check_name(archive: str, name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise InvalidArgument(f"{archive}: entry {name!r} has an absolute path")
    if ".." in path.parts:
        raise InvalidArgument(f"{archive}: entry {name!r} climbs out of the archive with '..'")
    return str(path)


class SafeArchive:
    """Lists regular-file entries after checking every entry; `open(entry)` streams one."""

    def __init__(self, path: Path, limits: ArchiveLimits = ArchiveLimits()):
        self.path = path
        self.limits = limits
        self.is_zip = zipfile.is_zipfile(path)
        self.entries = self._list()

    def _list(self) -> list[Entry]:
        label = self.path.name
        entries: list[Entry] = []
        total = 0
        try:
            if self.is_zip:
                with zipfile.ZipFile(self.path) as archive:
                    infos = archive.infolist()
                    self._check_count(len(infos))
                    for info in infos:
                        name = _check_name(label, info.filename)
                        mode = (info.external_attr >> 16) & 0o170000
                        if mode == 0o120000:
                            raise InvalidArgument(f"{label}: entry {info.filename!r} is a symbolic link")
                        if info.is_dir():
                            continue
                        check_zip_member(label, info, self.limits, self.limits.max_total_bytes)
                        total = self._add(entries, name, info.file_size, total)
            else:
                with tarfile.open(self.path, "r:*") as archive:
                    count = 0
                    for member in archive:
                        count += 1
                        self._check_count(count)
                        name = _check_name(label, member.name)
                        if member.isdir():
                            continue
                        if not member.isfile():
                            kind = "link" if (member.issym() or member.islnk()) else "device or special file"
                            raise InvalidArgument(f"{label}: entry {member.name!r} is a {kind}; only regular files are accepted")
                        total = self._add(entries, name, member.size, total)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
            reason = " ".join(str(error).split())  # tarfile lists every method it tried, one per line
            raise InvalidArgument(f"{label} is not a readable archive (truncated or corrupt?): {reason}") from error
        if not entries:
            raise InvalidArgument(f"{label}: the archive holds no files")
        return entries

    def _check_count(self, count: int) -> None:
        if count > self.limits.max_entries:
            raise ResourceExhausted(f"{self.path.name}: more than {self.limits.max_entries} entries")

    def _add(self, entries: list[Entry], name: str, size: int, total: int) -> int:
        if size > self.limits.max_entry_bytes:
            raise ResourceExhausted(
                f"{self.path.name}: entry {name!r} is {size} bytes; the limit is {self.limits.max_entry_bytes}"
            )
        total += size
        if total > self.limits.max_total_bytes:
            raise ResourceExhausted(f"{self.path.name}: more than {self.limits.max_total_bytes} bytes in total")
        entries.append(Entry(name, size))
        return total

    @contextmanager
    def reader(self) -> Iterator["EntryReader"]:
        """An open archive for reading several entries, closed on exit."""
        handle: zipfile.ZipFile | tarfile.TarFile
        handle = zipfile.ZipFile(self.path) if self.is_zip else tarfile.open(self.path, "r:*")
        try:
            yield EntryReader(handle, self.limits.max_entry_bytes, self.path.name)
        finally:
            handle.close()


class EntryReader:
    def __init__(self, handle: zipfile.ZipFile | tarfile.TarFile, cap: int, label: str):
        self.handle = handle
        self.cap = cap
        self.label = label

    def read(self, entry: Entry) -> bytes:
        stream: IO[bytes] | None
        try:
            if isinstance(self.handle, zipfile.ZipFile):
                stream = self.handle.open(entry.name)
            else:
                stream = self.handle.extractfile(entry.name)
            if stream is None:
                raise InvalidArgument(f"{self.label}: entry {entry.name!r} cannot be read")
            with stream:
                data = stream.read(self.cap + 1)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, KeyError) as error:
            raise InvalidArgument(f"{self.label}: entry {entry.name!r} cannot be read: {error}") from error
        if len(data) > self.cap:
            raise ResourceExhausted(f"{self.label}: entry {entry.name!r} is larger than declared")
        return data
