"""Bundles: one version as a .tar (IR, edgeq.json, report.html, manifest.json) for edge devices.

`export_bundle` writes one (the float IR included when the version has it); `import_bundle`
verifies every sha256 against the manifest before publishing it atomically into a local store.
A tampered bundle changes nothing. Which IR the store serves is decided during the import, on
this machine (`decide`, e.g. edgeq.runtime.choice.choose), and recorded in the manifest; a
decision the bundle carries from another machine is dropped, since it was made for another CPU.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeq.archive import SafeArchive
from edgeq.errors import FailedPrecondition, InvalidArgument
from edgeq.store.repository import MANIFEST, SERVE, ModelStore, VersionInfo, check_float_pair, verify_manifest

Decide = Callable[[Path], dict[str, Any]]  # verified version folder -> the manifest's `serve` record


def export_bundle(info: VersionInfo, out: Path) -> Path:
    """Refuses a version the speed gate held back unless it carries the float IR: the gate measured
    INT8 on the quantizing machine's CPU, and a device should not get an INT8 model that is slower
    than float; with the float IR the device measures both on its own CPU and serves the faster
    (edgeq.runtime.choice), which is the case the gate cannot judge (e.g. held on an AMX machine,
    faster in INT8 on a VNNI box)."""
    held = info.held()
    if held is not None and not info.has_float:
        raise FailedPrecondition(f"{info.name} version {info.version} is held back from serving ({held}); "
                                 f"promote it first (edgeq models promote {info.name} --version {info.version})")
    verify_manifest(info.path)
    with tarfile.open(out, "w") as archive:
        for item in sorted(info.path.iterdir()):
            if item.is_file():
                archive.add(item, arcname=f"{info.name}/{info.version}/{item.name}", recursive=False)
    return out


def import_bundle(store: ModelStore, bundle: Path, name: str | None = None, decide: Decide | None = None) -> VersionInfo:
    """The bundle's version published into `store` (or the identical version already there, as it is)."""
    safe = SafeArchive(bundle)
    roots = {tuple(Path(e.name).parts[:1]) for e in safe.entries}
    if len(roots) != 1 or any(len(Path(e.name).parts) != 3 for e in safe.entries):
        raise InvalidArgument(f"{bundle.name}: not an edgeq bundle (expected <name>/<version>/<file> entries)")
    bundle_name = next(iter(roots))[0]
    staged = store.staging_dir()
    try:
        with safe.reader() as reader:
            for entry in safe.entries:
                (staged / Path(entry.name).name).write_bytes(reader.read(entry))
        manifest = verify_manifest(staged)
        check_float_pair(staged)
        same = _identical_version(store, name or bundle_name, manifest)
        if same is not None:  # re-importing the same bundle is a no-op (idempotent installs)
            shutil.rmtree(staged, ignore_errors=True)
            return same
        (staged / MANIFEST).unlink()  # publish rewrites it after the files are fsynced
        extra = {k: v for k, v in manifest.items() if k not in ("files", "format", SERVE)}
        if decide is not None:
            extra[SERVE] = decide(staged)
        return store.publish(name or bundle_name, staged, extra)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def _identical_version(store: ModelStore, name: str, manifest: dict[str, object]) -> VersionInfo | None:
    files: dict[str, dict[str, object]] = manifest["files"]  # type: ignore[assignment]
    wanted = {k: v["sha256"] for k, v in files.items()}
    for info in store.versions(name):
        existing = json.loads((info.path / MANIFEST).read_text())["files"]
        if {k: v["sha256"] for k, v in existing.items()} == wanted:
            return info
    return None
