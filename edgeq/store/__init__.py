"""Model repository in the OpenVINO Model Server layout: `<root>/<name>/<version>/`.

Each version holds model.xml, model.bin (the INT8 IR), usually float.xml.alt and float.bin.alt
(the float IR, FP16 weights, which an edge box may serve instead: edgeq.runtime.choice),
edgeq.json (report), report.html and manifest.json (sha256 of every other file, the id of the job
that published it, which recovery after a crash reads: see edgeq.jobs.recovery, and, once a store
on the serving machine has chosen, which IR it serves and why: `serve`). Publishing is atomic: files are written and fsynced in a staging
directory, the directory is renamed into place. The manifest is written inside the staged
directory, last, so a visible version is always complete. Staging dirs start with '.', which
OVMS and our listing ignore; leftovers are swept on open.
"""

from edgeq.store.repository import ModelStore, VersionInfo

__all__ = ["ModelStore", "VersionInfo"]
