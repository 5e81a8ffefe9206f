"""Run NNCF steps in spawned child processes: a native crash there is an outcome, never our death.

NNCF and OpenVINO have crashed (SIGSEGV inside statistics collection) in long-lived processes that
quantize many models in a row; a crash in-process would kill the caller's Python, the server's job
worker or the test run. Each step gets its inputs through files in a work directory and writes its
results there. A crash by signal is retried once (the crashes seen were not reproducible), then
reported. Several children can run at once, each pinned to its own share of the CPU cores, so
candidates of a recipe search do not fight over the same cores.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeq import childproc
from edgeq.errors import Cancelled

ERROR_FILE = "error.txt"


@dataclass(frozen=True)
class Task:
    name: str
    target: Callable[..., None]  # a module-level function (spawn pickles it by reference)
    args: tuple[Any, ...] = ()
    workdir: str = ""  # where the child writes error.txt when it raises
    cut_if_slow: bool = True  # held to run_tasks' slower_than_fastest (a task doing several candidates' work is not)


@dataclass
class Outcome:
    name: str
    status: str  # "done" | "crashed" | "timeout"
    seconds: float
    reason: str = ""
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.status == "done"


@dataclass
class _Running:
    task: Task
    process: Any
    started: float
    attempts: int
    cores: list[int] = field(default_factory=list)


def _bootstrap(task: Task, cores: list[int]) -> None:
    """The child, once offline (`childproc.process`): keep to our cores, record why the task failed."""
    if cores:
        os.sched_setaffinity(0, cores)
    try:
        task.target(*task.args)
    except BaseException as error:
        if task.workdir:
            Path(task.workdir, ERROR_FILE).write_text(f"{type(error).__name__}: {error}")
        raise
    childproc.exit_now()


def _core_shares(workers: int) -> list[list[int]]:
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return [[] for _ in range(workers)]
    if workers <= 1:
        return [[]]
    return [available[i::workers] for i in range(workers)]


def run_tasks(tasks: Sequence[Task], *, workers: int = 1, time_budget_s: float | None = None,
              cancelled: Callable[[], bool] = lambda: False, retries: int = 1,
              slower_than_fastest: float | None = None,
              then: Callable[[Task], Sequence[Task]] | None = None) -> list[Outcome]:
    """Run every task in its own spawned process, at most `workers` at a time; outcomes in task order.

    `slower_than_fastest`: once one task is done, stop any task running longer than this many times
    the fastest finished one (a recipe candidate 5x slower than the rest is not worth waiting for),
    unless the task says it may not be cut.
    `then`: called with each task that succeeds; the tasks it returns queue behind the others (a
    quantized candidate's scoring), and their outcomes follow. They are never stopped by
    `slower_than_fastest` and do not set its pace: they do other work than the tasks given.
    """
    context = multiprocessing.get_context("spawn")
    workers = max(1, min(workers, len(tasks)))
    shares = _core_shares(workers)
    free = list(range(workers))
    pending: list[tuple[Task, int]] = [(task, 1) for task in tasks]
    order = list(tasks)
    followers: set[str] = set()
    running: dict[int, _Running] = {}
    outcomes: dict[str, Outcome] = {}

    def start(task: Task, attempts: int) -> None:
        slot = free.pop(0)
        process = childproc.process(context, _bootstrap, (task, shares[slot]), name=f"edgeq-{task.name}", daemon=True)
        process.start()
        running[slot] = _Running(task, process, time.perf_counter(), attempts, shares[slot])

    try:
        while pending or running:
            while pending and free:
                start(*pending.pop(0))
            time.sleep(0.1)
            if cancelled():
                raise Cancelled(f"cancelled while running {', '.join(r.task.name for r in running.values())}")
            for slot, item in list(running.items()):
                elapsed = time.perf_counter() - item.started
                budget, why = time_budget_s, f"its time budget of {time_budget_s or 0:.0f} s"
                fastest = min((o.seconds for o in outcomes.values() if o.ok and o.name not in followers), default=None)
                if slower_than_fastest and fastest is not None and item.task.cut_if_slow and item.task.name not in followers and (
                        budget is None or fastest * slower_than_fastest < budget):
                    budget, why = fastest * slower_than_fastest, f"{slower_than_fastest:g}x the fastest task ({fastest:.0f} s)"
                if item.process.is_alive() and (budget is None or elapsed < budget):
                    continue
                if item.process.is_alive():
                    item.process.kill()
                    item.process.join()
                    outcome = Outcome(item.task.name, "timeout", elapsed, f"stopped after {elapsed:.0f} s: {why}",
                                      item.attempts)
                else:
                    item.process.join()
                    outcome = _finished(item, elapsed)
                del running[slot]
                free.append(slot)
                if outcome.status == "crashed" and outcome.reason.startswith("signal") and item.attempts <= retries:
                    pending.insert(0, (item.task, item.attempts + 1))
                else:
                    outcomes[item.task.name] = outcome
                    if outcome.ok and then is not None:
                        for follower in then(item.task):
                            followers.add(follower.name)
                            order.append(follower)
                            pending.append((follower, 1))
    finally:
        for item in running.values():
            item.process.kill()
            item.process.join()
    return [outcomes[task.name] for task in order]


def _finished(item: _Running, elapsed: float) -> Outcome:
    code = item.process.exitcode or 0
    if code == 0:
        return Outcome(item.task.name, "done", elapsed, attempts=item.attempts)
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    error = Path(item.task.workdir, ERROR_FILE) if item.task.workdir else None
    if error is not None and error.is_file():
        how = f"{how}: {error.read_text()[:500]}"
    return Outcome(item.task.name, "crashed", elapsed, how, item.attempts)
