"""Model repository in the OpenVINO Model Server layout: `<root>/<name>/<version>/`.

Each version holds model.xml, model.bin, edgeq.json (report), report.html and manifest.json
(sha256 of every other file, and the id of the job that published it, which recovery after a
crash reads: see edgeq.jobs.recovery). Publishing is atomic: files are written and fsynced in a staging
directory, the directory is renamed into place. The manifest is written inside the staged
directory, last, so a visible version is always complete. Staging dirs start with '.', which
OVMS and our listing ignore; leftovers are swept on open.
"""

from edgeq.store.repository import ModelStore, VersionInfo

__all__ = ["ModelStore", "VersionInfo"]
