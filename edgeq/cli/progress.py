"""One rich progress bar that names the stage, shared by local jobs, the demo and `edgeq submit`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def stage_progress(first: str = "starting", transient: bool = False) -> Iterator[Callable[[Any], None]]:
    """Yields an event sink: each event (stage, fraction, message) moves the bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.fields[stage]:<9}"), BarColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), transient=transient) as progress:
        task = progress.add_task(first, total=1.0, stage="")

        def on_event(event: Any) -> None:
            progress.update(task, completed=event.fraction, description=event.message, stage=event.stage)

        yield on_event


def run_with_progress(request: Any) -> Any:
    """Run a quantization job in this process with the progress bar."""
    from edgeq.quantization.pipeline import run

    with stage_progress() as on_event:
        return run(request, on_event)
