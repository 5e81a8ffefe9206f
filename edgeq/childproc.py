"""Spawned edgeq processes: how they start and end, below both `quantization/` and `jobs/`.

The job worker (`edgeq.jobs.worker`) and the NNCF step children (`edgeq.quantization.isolated`)
are started with the spawn method: nothing of the parent's state reaches them but their
arguments, so each ties its life to its parent's and switches telemetry off for itself. That
must happen before OpenVINO loads, so `process` hands the child its target by name and its
arguments pickled: the child imports neither until `enter_child` has run.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import pickle
import signal
import sys
from collections.abc import Callable
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

from edgeq._offline import disable_telemetry, quiet_nncf, quiet_progress_bars

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so no orphan outlives a crashed server."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def process(context: SpawnContext, target: Callable[..., None], args: tuple[Any, ...], *, name: str,
            daemon: bool) -> SpawnProcess:
    """A spawned process (not started) running `target(*args)` after `enter_child`; `target` is a
    module-level function."""
    return context.Process(target=_run, args=(target.__module__, target.__qualname__, pickle.dumps(args)),
                           name=name, daemon=daemon)


def _run(module: str, function: str, args: bytes) -> None:
    enter_child()
    getattr(importlib.import_module(module), function)(*pickle.loads(args))


def enter_child() -> None:
    """First code in a spawned child: die with the parent, stay offline, keep NNCF's log short and
    its progress bars off pipes."""
    die_with_parent()
    disable_telemetry()
    quiet_nncf()
    quiet_progress_bars()


def exit_now() -> None:
    """Leave without interpreter teardown: the results are on disk, and tearing down torch, NNCF and
    OpenVINO together has crashed a child after its work was done."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
