"""Keep edgeq quiet and offline: OpenVINO/NNCF telemetry never runs.

OpenVINO's converter and NNCF send usage events through `openvino_telemetry` (DNS look-ups of an
analytics host during one `nncf.quantize`). Both fall back to a no-op stub when that package
cannot be imported, so `disable_telemetry` makes it unimportable before either is loaded, and
sets NNCF's own opt-out variable for child processes. Importing edgeq changes nothing: the
entry points call it (the `edgeq` command, the server, `edgeq.quantize`, every spawned child,
see `edgeq.childproc`). `import openvino` itself imports the telemetry package (with its
converter), so a program that loads OpenVINO before calling edgeq keeps OpenVINO's telemetry as
that program configured it. Set EDGEQ_ALLOW_TELEMETRY=1 to opt back in.
"""

from __future__ import annotations

import logging
import os
import sys


def quiet_nncf() -> None:
    """NNCF logs every ignored node at INFO; our report says it once, better."""
    logging.getLogger("nncf").setLevel(logging.WARNING)


def quiet_progress_bars() -> None:
    """For edgeq's own child processes, where NNCF runs: no bars off a terminal.

    NNCF draws its progress bars (`nncf.common.logging.track_progress.track`) with rich on rich's
    global console, and has no switch for them. Off a terminal (a pipe, a log file, a server's
    log) rich prints each bar's last frame as a line of its own between edgeq's stage lines, so
    there that console is made quiet; on a terminal the bars stay. Only in processes edgeq owns:
    a host program's console (a notebook's, say) is its own."""
    import rich

    console = rich.get_console()
    if not console.is_terminal:
        console.quiet = True


def disable_telemetry() -> None:
    if os.environ.get("EDGEQ_ALLOW_TELEMETRY") == "1":
        return
    os.environ.setdefault("NNCF_CI", "1")
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
