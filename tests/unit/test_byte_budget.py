"""The byte budget's reservations for messages not yet read: held before reading, settled after,
waited for only while other messages are being read, refused once the budget is full of known sizes."""

from __future__ import annotations

import asyncio

import pytest

from edgeq.errors import ResourceExhausted, Unavailable
from edgeq.runtime.memory import ByteBudget

MiB = 1 << 20


def test_a_reservation_holds_the_most_then_what_the_message_costs() -> None:
    async def run() -> tuple[int, int, int, int]:
        budget = ByteBudget(100 * MiB)
        with await budget.reserve(64 * MiB) as reservation:
            reserved, provisional = budget.used, budget.provisional
            reservation.settle(10 * MiB)
            settled = budget.used
        return reserved, provisional, settled, budget.used

    assert asyncio.run(run()) == (64 * MiB, 1, 10 * MiB, 0)


def test_no_room_and_nothing_being_read_is_refused_at_once() -> None:
    async def run() -> str:
        budget = ByteBudget(100 * MiB)
        budget.admit(90 * MiB)  # a request of known size
        with pytest.raises(ResourceExhausted) as refused:
            await budget.reserve(20 * MiB)
        assert budget.used == 90 * MiB and budget.provisional == 0
        return str(refused.value)

    assert "holding 90.0 MiB" in asyncio.run(run())


def test_a_call_waits_while_another_message_is_read_and_gets_its_room() -> None:
    async def run() -> list[str]:
        budget = ByteBudget(100 * MiB)
        events: list[str] = []
        first = await budget.reserve(64 * MiB)

        async def second() -> None:
            with await budget.reserve(64 * MiB) as reservation:
                events.append(f"second admitted with {budget.used // MiB} MiB used")
                reservation.settle(MiB)

        task = asyncio.create_task(second())
        await asyncio.sleep(0.01)
        events.append("second waiting" if not task.done() else "second did not wait")
        first.settle(4 * MiB)  # the first message turned out small
        await task
        first.release()
        events.append(f"{budget.used} used, {budget.provisional} provisional")
        return events

    assert asyncio.run(run()) == ["second waiting", "second admitted with 68 MiB used", "0 used, 0 provisional"]


def test_a_waiting_call_is_refused_once_the_read_message_fills_the_budget() -> None:
    async def run() -> str:
        budget = ByteBudget(100 * MiB)
        first = await budget.reserve(64 * MiB)
        waiting = asyncio.create_task(budget.reserve(64 * MiB))
        await asyncio.sleep(0.01)
        first.settle(60 * MiB)  # known now, and too big to leave room
        with pytest.raises(ResourceExhausted) as refused:
            await waiting
        first.release()
        assert budget.used == 0 and budget.provisional == 0
        return str(refused.value)

    assert "needs 64.0 MiB more" in asyncio.run(run())


def test_stopping_ends_the_wait_with_the_stop_error() -> None:
    async def run() -> str:
        budget = ByteBudget(100 * MiB)
        stopping: list[Unavailable] = []
        first = await budget.reserve(64 * MiB)
        waiting = asyncio.create_task(budget.reserve(64 * MiB, lambda: stopping[0] if stopping else None))
        await asyncio.sleep(0.01)
        stopping.append(Unavailable("stopping"))
        budget.wake()
        with pytest.raises(Unavailable) as refused:
            await waiting
        first.release()
        return str(refused.value)

    assert asyncio.run(run()) == "stopping"


def test_a_reservation_larger_than_the_budget_takes_the_whole_budget() -> None:
    async def run() -> int:
        budget = ByteBudget(10 * MiB)
        with await budget.reserve(128 * MiB):
            return budget.used

    assert asyncio.run(run()) == 10 * MiB


def test_settling_above_the_reservation_is_admitted_or_refused() -> None:
    budget = ByteBudget(100 * MiB)

    async def run() -> None:
        reservation = await budget.reserve(10 * MiB)
        reservation.settle(50 * MiB)
        assert budget.used == 50 * MiB
        budget.admit(40 * MiB)
        other = await budget.reserve(10 * MiB)
        with pytest.raises(ResourceExhausted):
            other.settle(20 * MiB)
        other.release()
        reservation.release()
        budget.release(40 * MiB)

    asyncio.run(run())
    assert budget.used == 0 and budget.provisional == 0
