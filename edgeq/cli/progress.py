"""Progress of a job, shared by local jobs, the demo and `edgeq submit`.

On a terminal: one rich bar that names the stage. Elsewhere (a pipe, a log file, CI): one plain
line per stage, so the output is complete and readable instead of a bar cut off at its last redraw.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO


def plain_progress(stream: TextIO) -> Callable[[Any], None]:
    """An event sink writing `stage  message` once per stage (and the last event's message)."""
    seen: list[str] = []

    def on_event(event: Any) -> None:
        if seen and seen[-1] == event.stage:
            return
        seen.append(event.stage)
        print(f"{event.stage:<9} {event.message}", file=stream, flush=True)

    return on_event


@contextmanager
def stage_progress(first: str = "starting", transient: bool = False) -> Iterator[Callable[[Any], None]]:
    """Yields an event sink: each event (stage, fraction, message) moves the bar."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console()
    if not console.is_terminal:
        yield plain_progress(sys.stdout)
        return
    with Progress(TextColumn("[bold]{task.fields[stage]:<9}"), BarColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), transient=transient, console=console) as progress:
        task = progress.add_task(first, total=1.0, stage="")

        def on_event(event: Any) -> None:
            progress.update(task, completed=event.fraction, description=event.message, stage=event.stage)

        yield on_event


def run_with_progress(request: Any) -> Any:
    """Run a quantization job in this process with the progress bar."""
    from edgeq.quantization.pipeline import run

    with stage_progress() as on_event:
        return run(request, on_event)
