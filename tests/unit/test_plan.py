"""The pure parts of `--plan`: the order groups go to float, the front, the choice and its reason."""

from edgeq.quantization.accuracy import Budget
from edgeq.quantization.plan import choose, front, greedy_order
from edgeq.report.model import FLOAT_DEFAULT, GroupGain, PlanRow


def _row(plan: str, speedup: float, score: float, budget: Budget = Budget(0.01)) -> PlanRow:
    return PlanRow(plan, [], [], 100 * speedup, speedup, score, budget.drop(1.0, score), budget.met(1.0, score))


def test_groups_int8_slows_go_to_float_first_then_the_least_speed_per_point_recovered() -> None:
    gains = [GroupGain("qkv", 4, 1.30, 0.99, 0.01),  # 0.30 / 0.01 = 30
             GroupGain("head", 1, 0.95, 0.98, 0.0),  # INT8 slows it: first
             GroupGain("fc1", 4, 1.10, 0.99, 0.02),  # 0.10 / 0.02 = 5
             GroupGain("proj", 4, 0.90, 0.98, -0.01),  # slows more: before head
             GroupGain("fc2", 4, 1.20, 0.98, 0.0)]  # pays and costs nothing: stays INT8
    assert greedy_order(gains) == ["proj", "head", "fc1", "qkv"]


def test_front_keeps_the_plans_nothing_beats_on_both_speed_and_score() -> None:
    rows = [_row(FLOAT_DEFAULT, 1.0, 0.999), _row("all INT8", 1.6, 0.97), _row("float: head", 1.5, 0.99),
            _row("float: fc1", 1.4, 0.985), _row("float: qkv", 1.5, 0.99)]
    front(rows)
    assert {r.plan for r in rows if r.on_front} == {FLOAT_DEFAULT, "all INT8", "float: head", "float: qkv"}


def test_the_fastest_plan_within_the_budget_wins_and_the_reason_names_the_faster_ones_that_miss_it() -> None:
    rows = [_row(FLOAT_DEFAULT, 1.0, 0.999), _row("all INT8", 1.6, 0.97), _row("float: head", 1.5, 0.995),
            _row("float: fc1", 1.2, 0.996)]
    best, beats, why = choose(rows, "bf16", Budget(0.01))
    assert best.plan == "float: head" and best.chosen and beats
    assert "fastest of the 2 plan(s) within the budget" in why and "all INT8: x1.60" in why


def test_no_plan_faster_than_the_float_default_is_said_so() -> None:
    rows = [_row(FLOAT_DEFAULT, 1.0, 0.999), _row("all INT8", 0.9, 0.995), _row("float: head", 0.8, 0.996)]
    best, beats, why = choose(rows, "bf16", Budget(0.01))
    assert best.plan == "all INT8" and not beats and why.startswith("no INT8 plan beats bf16 on this CPU")


def test_without_a_plan_in_the_budget_the_most_accurate_is_kept_for_the_fallback() -> None:
    rows = [_row(FLOAT_DEFAULT, 1.0, 0.999), _row("all INT8", 1.6, 0.90), _row("float: head", 1.5, 0.95)]
    best, beats, why = choose(rows, "bf16", Budget(0.01))
    assert best.plan == "float: head" and beats and "no plan meets the budget" in why
