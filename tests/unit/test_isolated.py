"""Child processes for NNCF steps: crashes are outcomes, retried once when they come from a signal."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from edgeq.errors import Cancelled
from edgeq.quantization.isolated import Task, run_tasks


def write_cores(path: str) -> None:
    Path(path).write_text(",".join(map(str, sorted(os.sched_getaffinity(0)))))


def crash_first_time(marker: str) -> None:
    if not Path(marker).exists():
        Path(marker).write_text("crashed once")
        os.kill(os.getpid(), signal.SIGSEGV)


def always_crash() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def raise_error() -> None:
    raise ValueError("calibration batch 3 is NaN")


def sleep_forever() -> None:
    import time

    time.sleep(600)


def test_outcomes_in_task_order_with_cores_shared_out(tmp_path: Path) -> None:
    tasks = [Task(f"t{i}", write_cores, (str(tmp_path / f"t{i}"),)) for i in range(3)]
    outcomes = run_tasks(tasks, workers=2)
    assert [o.name for o in outcomes] == ["t0", "t1", "t2"] and all(o.ok for o in outcomes)
    cores = sorted(os.sched_getaffinity(0))
    assert len(cores) >= 2, "sharing cores out needs at least 2 (the suite's machines have 2)"
    seen = {(tmp_path / f"t{i}").read_text() for i in range(3)}
    assert seen <= {",".join(map(str, cores[0::2])), ",".join(map(str, cores[1::2]))}


def test_a_signal_is_retried_once_then_reported(tmp_path: Path) -> None:
    flaky, broken = run_tasks([Task("flaky", crash_first_time, (str(tmp_path / "m"),)), Task("broken", always_crash)])
    assert flaky.ok and flaky.attempts == 2
    assert broken.status == "crashed" and broken.reason == "signal SIGSEGV" and broken.attempts == 2


def test_an_exception_is_reported_with_its_message_and_not_retried(tmp_path: Path) -> None:
    (outcome,) = run_tasks([Task("bad", raise_error, (), str(tmp_path))])
    assert outcome.status == "crashed" and outcome.attempts == 1
    assert outcome.reason == "exit code 1: ValueError: calibration batch 3 is NaN"


def test_timeout_and_cancel_kill_the_child() -> None:
    (outcome,) = run_tasks([Task("slow", sleep_forever)], time_budget_s=1.0)
    assert outcome.status == "timeout" and outcome.seconds < 30
    with pytest.raises(Cancelled, match="slow"):
        run_tasks([Task("slow", sleep_forever)], cancelled=lambda: True)


def quick() -> None:
    pass


def test_a_task_far_slower_than_the_fastest_is_stopped() -> None:
    quick_one, slow = run_tasks([Task("quick", quick), Task("slow", sleep_forever)], workers=2, slower_than_fastest=3.0)
    assert quick_one.ok and slow.status == "timeout" and "3x the fastest task" in slow.reason


def nap(seconds: float) -> None:
    import time

    time.sleep(seconds)


def test_follow_up_tasks_run_after_their_leader_and_are_never_cut(tmp_path: Path) -> None:
    """A quantized candidate's scoring is queued when its quantization succeeds; it does other work,
    so it neither sets the pace for `slower_than_fastest` nor is stopped by it."""
    def then(task: Task) -> list[Task]:
        return [Task(f"{task.name} follow-up", nap, (1.5,))] if task.name == "quick" else []

    outcomes = run_tasks([Task("quick", quick), Task("bad", raise_error, (), str(tmp_path))], workers=2,
                         slower_than_fastest=1.2, then=then)
    assert [o.name for o in outcomes] == ["quick", "bad", "quick follow-up"]
    assert outcomes[2].ok and outcomes[2].seconds >= 1.5  # far slower than "quick", not cut
    assert outcomes[1].status == "crashed"  # a failed task gets no follow-up
