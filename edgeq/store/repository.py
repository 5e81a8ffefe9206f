"""The model store: list, publish atomically, read, delete, verify."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeq.errors import FailedPrecondition, InvalidArgument, NotFound
from edgeq.names import check_model_name, check_version

MANIFEST = "manifest.json"
REPORT = "edgeq.json"
MODEL_FILES = ("model.xml", "model.bin")
# The float IR beside the INT8 one, so the edge box can measure both and serve the faster
# (edgeq.runtime.choice). Not named *.xml/*.bin: OpenVINO Model Server loads the first .xml and the
# first .bin it finds in a version folder (directory order), so a second IR under those suffixes
# could make it serve the float graph, or pair one IR's graph with the other's weights. OpenVINO
# reads these names when given both paths (`Core.read_model(xml, bin)`).
FLOAT_FILES = ("float.xml.alt", "float.bin.alt")
SERVE = "serve"  # the manifest field with the edge box's choice of IR (edgeq.runtime.choice.ServeChoice)
STAGING = ".staging"
HELD_SUFFIX = ".held"
OVMS_CONFIG = "config.json"  # OpenVINO Model Server's multi-model configuration (`ovms --config_path`)
DELETIONS = ".deleted.jsonl"  # one line per version deleted on purpose: tells recovery "deleted", not "lost"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for item in path.iterdir():
        if item.is_file():
            with open(item, "rb") as stream:
                os.fsync(stream.fileno())
    _fsync_dir(path)


def write_manifest(directory: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    files = {p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
             for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {"format": "edgeq-manifest/1", "files": files, **(extra or {})}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def verify_manifest(directory: Path) -> dict[str, Any]:
    """Raise InvalidArgument unless every file listed matches its sha256 and size, and nothing is extra."""
    path = directory / MANIFEST
    if not path.is_file():
        raise InvalidArgument(f"{directory}: no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(f"{path}: not a valid manifest ({error})") from error
    present = {p.name for p in directory.iterdir() if p.is_file() and p.name != MANIFEST}
    if set(files) != present:
        raise InvalidArgument(f"{directory}: files {sorted(present ^ set(files))} differ from the manifest")
    for name, entry in files.items():
        if "/" in name or name.startswith("."):
            raise InvalidArgument(f"{path}: bad file name {name!r} in manifest")
        actual = sha256_file(directory / name)
        if actual != entry.get("sha256"):
            raise InvalidArgument(f"{directory / name}: sha256 {actual[:12]}… does not match the manifest")
    return dict(manifest)


def has_float_ir(directory: Path) -> bool:
    """Whether the version in `directory` (published or staged) carries its float IR."""
    return all((directory / name).is_file() for name in FLOAT_FILES)


def check_float_pair(directory: Path) -> None:
    """A float IR is both its files or neither: half of one is a broken version."""
    present = [name for name in FLOAT_FILES if (directory / name).is_file()]
    if len(present) == 1:
        raise InvalidArgument(f"{directory}: {present[0]} without {(set(FLOAT_FILES) - set(present)).pop()}")


def save_float_ir(model: Any, directory: Path) -> None:
    """`model` (an openvino.Model) as the version's float IR, weights stored in FP16 to halve the
    size: the CPU plugin decompresses them at load and still runs its default float precision
    (BF16 where the CPU has it, FP32 elsewhere), which is the float the edge box compares INT8 with."""
    import openvino as ov

    xml = directory / ".float.xml"
    ov.save_model(model, str(xml), compress_to_fp16=True)
    os.rename(xml, directory / FLOAT_FILES[0])
    os.rename(xml.with_suffix(".bin"), directory / FLOAT_FILES[1])


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    path: Path

    def report(self) -> dict[str, Any]:
        path = self.path / REPORT
        return dict(json.loads(path.read_text())) if path.is_file() else {}

    def manifest(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.path / MANIFEST).read_text()))
        except (OSError, ValueError, TypeError):
            return {}

    @property
    def job(self) -> str | None:
        """The id of the job that published this version (None: published by hand or before jobs were named)."""
        job = self.manifest().get("job")
        return str(job) if job else None

    @property
    def xml(self) -> Path:
        return self.path / "model.xml"

    @property
    def has_float(self) -> bool:
        return has_float_ir(self.path)

    def serve_choice(self) -> dict[str, Any] | None:
        """What this store decided to serve, and why (the manifest's `serve`; None: nothing decided)."""
        choice = self.manifest().get(SERVE)
        return dict(choice) if isinstance(choice, dict) else None

    @property
    def serve_reason(self) -> str:
        """Why `served_ir`: the recorded choice's reason ("" when nothing was decided: INT8)."""
        return str((self.serve_choice() or {}).get("why", ""))

    @property
    def served_ir(self) -> str:
        """"float" when the recorded choice says so and the float IR is here; "int8" otherwise."""
        choice = self.serve_choice() or {}
        return "float" if choice.get("ir") == "float" and self.has_float else "int8"

    def served_files(self) -> tuple[Path, Path]:
        """(graph, weights) of the IR a server of this store loads."""
        names = FLOAT_FILES if self.served_ir == "float" else MODEL_FILES
        return self.path / names[0], self.path / names[1]

    @property
    def hold_marker(self) -> Path:
        """`<name>/<version>.held`: outside the version dir, so the manifest never changes."""
        return self.path.parent / f"{self.version}{HELD_SUFFIX}"

    def held(self) -> str | None:
        """Why this version is held back from serving (None: promoted)."""
        try:
            return str(json.loads(self.hold_marker.read_text()).get("reason", "held back"))
        except FileNotFoundError:
            return None
        except ValueError:
            return "held back (unreadable hold marker)"


class ModelStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            self.root.mkdir(parents=True)
        self.read_only = not os.access(self.root, os.W_OK)
        if not self.read_only:
            self.sweep_staging()

    def sweep_staging(self) -> int:
        """Remove staging dirs whose writer process is gone (they were never visible); how many."""
        staging = self.root / STAGING
        removed = 0
        if staging.is_dir():
            for leftover in staging.iterdir():
                if not _owner_alive(leftover.name):
                    shutil.rmtree(leftover, ignore_errors=True)
                    removed += 1
        return removed

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ---- reading -------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".") and self.versions(p.name))

    def versions(self, name: str) -> list[VersionInfo]:
        check_model_name(name)
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = []
        for child in folder.iterdir():
            if child.is_dir() and child.name.isdigit() and (child / MANIFEST).is_file():
                found.append(VersionInfo(name, int(child.name), child))
        return sorted(found, key=lambda v: v.version)

    def servable(self, name: str) -> list[VersionInfo]:
        """Versions that may be served: not held back by the speed gate (or promoted since)."""
        return [info for info in self.versions(name) if info.held() is None]

    def get(self, name: str, version: int | None = None) -> VersionInfo:
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"model {name!r} not found in the store")
        if version is None or version == 0:
            return versions[-1]
        version = check_version(version)
        for info in versions:
            if info.version == version:
                return info
        raise NotFound(f"model {name!r} has no version {version} (versions: {[v.version for v in versions]})")

    def published_by(self, name: str, job: str) -> VersionInfo | None:
        """The version of `name` whose manifest names `job`, if that job published one."""
        return next((info for info in self.versions(name) if info.job == job), None)

    def deleted(self, name: str, version: int, job: str | None) -> dict[str, Any] | None:
        """The record of `delete` having removed this version of `job` (or of no named job);
        None: it was not deleted on purpose."""
        try:
            lines = (self.root / DELETIONS).read_text().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn last line after a crash
            if entry.get("name") == name and entry.get("version") == version and entry.get("job") in (None, job):
                return dict(entry)
        return None

    # ---- writing -------------------------------------------------------------------------
    def staging_dir(self) -> Path:
        """`.staging/<pid>-t<start time>-<uuid>`: the start time tells a reused pid from its writer."""
        pid = os.getpid()
        path = self.root / STAGING / f"{pid}-t{_start_time(pid)}-{uuid.uuid4().hex}"
        path.mkdir(parents=True)
        return path

    def publish(self, name: str, staged: Path, manifest_extra: dict[str, Any] | None = None,
                hold: str | None = None, job: str | None = None) -> VersionInfo:
        """Move a fully written staging dir into place as the next version of `name`.

        With `hold` (a reason), the version is stored but not served until `promote`: the marker is
        written before the rename, so a held version is never visible as servable, not even briefly.
        With `job`, the manifest names the job, and a job publishes at most one version: a second
        publish by the same job returns the version it already made (recovery after a crash relies
        on the manifest to tell what a job left behind).
        """
        check_model_name(name)
        missing = [f for f in MODEL_FILES if not (staged / f).is_file()]
        if missing:
            raise FailedPrecondition(f"cannot publish {name!r}: staged version lacks {missing}")
        check_float_pair(staged)
        write_manifest(staged, {**(manifest_extra or {}), **({"job": job} if job else {})})
        _fsync_tree(staged)
        with self._lock():
            if job and (earlier := self.published_by(name, job)) is not None:
                shutil.rmtree(staged, ignore_errors=True)
                return earlier
            folder = self.root / name
            folder.mkdir(exist_ok=True)
            existing = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
            version = max(existing, default=0) + 1
            target = folder / str(version)
            marker = folder / f"{version}{HELD_SUFFIX}"
            if hold is not None:
                _write_atomically(marker, json.dumps({"reason": hold}))
            else:
                marker.unlink(missing_ok=True)  # left by a crash between marker and rename
            os.rename(staged, target)
            _fsync_dir(folder)
            self._write_ovms_config()
            _fsync_dir(self.root)
        return VersionInfo(name, version, target)

    def record_serve_choice(self, info: VersionInfo, choice: dict[str, Any]) -> VersionInfo:
        """Replace the recorded choice of IR of a published version (`edgeq models import --choose`
        on a version already here). The manifest is rewritten atomically, its file list unchanged;
        a server that has the version loaded keeps what it loaded until it loads the version again."""
        if self.read_only:
            raise FailedPrecondition(f"the store {self.root} is read-only here; record choices where it is written")
        with self._lock():
            manifest = verify_manifest(info.path)
            manifest[SERVE] = choice
            _write_atomically(info.path / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
            _fsync_dir(info.path)
        return info

    @contextmanager
    def _changing(self, name: str, version: int, action: str) -> Iterator[VersionInfo]:
        """The version `action` changes, under the store lock; then its hold marker goes and the OVMS config follows."""
        info = self.get(name, check_version(version))
        if self.read_only:
            raise FailedPrecondition(f"the store {self.root} is read-only here; {action} versions where it is written")
        with self._lock():
            yield info
            info.hold_marker.unlink(missing_ok=True)
            _fsync_dir(info.path.parent)
            self._write_ovms_config()

    def promote(self, name: str, version: int) -> VersionInfo:
        """Serve a held version after all (the user's override of the speed gate)."""
        with self._changing(name, version, "promote") as info:
            return info

    def delete(self, name: str, version: int) -> None:
        with self._changing(name, version, "delete") as info:
            trash = self.root / STAGING / f"deleted-{name}-{info.version}-{uuid.uuid4().hex}"
            trash.parent.mkdir(exist_ok=True)
            _append_line(self.root / DELETIONS, json.dumps(
                {"name": name, "version": info.version, "job": info.job, "deleted_unix": round(time.time(), 3)}))
            os.rename(info.path, trash)  # atomic disappearance, then slow removal
        shutil.rmtree(trash, ignore_errors=True)
        parent = self.root / name
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()

    def ovms_config(self) -> dict[str, Any]:
        """What OpenVINO Model Server reads from `<store>/config.json`: each model with the versions
        it may serve. Held versions are left out (OVMS knows nothing of `.held` markers); a model
        whose every version is held is left out whole. `base_path` is relative to config.json."""
        models = []
        for name in self.names():
            servable = [info.version for info in self.servable(name)]
            if servable:
                models.append({"config": {"name": name, "base_path": f"./{name}",
                                          "model_version_policy": {"specific": {"versions": servable}}}})
        return {"model_config_list": models}

    def _write_ovms_config(self) -> None:
        """Rewritten (atomically) whenever what may be served changes; called under the store lock."""
        _write_atomically(self.root / OVMS_CONFIG, json.dumps(self.ovms_config(), indent=2) + "\n")

    def validate(self) -> list[str]:
        """Problems found (empty when every visible version matches its manifest)."""
        problems = []
        for name in self.names():
            for info in self.versions(name):
                try:
                    verify_manifest(info.path)
                except InvalidArgument as error:
                    problems.append(str(error))
        return problems


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with open(temporary, "w", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
    os.rename(temporary, path)


def _append_line(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(line + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None off Linux / when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str:
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else "0"


def _owner_alive(staging_name: str) -> bool:
    """Staging dirs are named '<pid>-t<start time>-<uuid>' (older ones '<pid>-<uuid>'); anything else
    (e.g. deleted versions) is garbage. A zombie (killed, not yet reaped: common when a container's
    init does not reap) or a different process that reuses the pid does not keep a dir alive."""
    parts = staging_name.split("-")
    if not parts[0].isdigit():
        return False
    pid = int(parts[0])
    fields = _proc_stat(pid)
    if fields is not None:
        if fields[0] in ("Z", "X"):
            return False
        started = parts[1][1:] if len(parts) > 2 and parts[1].startswith("t") else None
        return started is None or started == "0" or started == fields[19]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
