"""One self-contained HTML page per version, from a Jinja2 template: accuracy, fallback, rules, SQNR chart, speed."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeq.report.model import FLOAT_DEFAULT, PlanSection, Report
from edgeq.report.summary import candidate_label, candidate_outcome, short_name


@dataclass(frozen=True)
class LayerRow:
    """One layer's SQNR as the page shows it: the chart and the table use the same `label`; the full
    OpenVINO node name (what `--rule name:REGEX` matches) is the table cell's tooltip."""

    label: str
    node: str
    sqnr_db: float | str


def sqnr_rows(sqnr: dict[str, float | str]) -> list[LayerRow]:
    """The report's per-layer SQNR, worst first, each layer named once for the chart and the table."""
    return [LayerRow(short_name(node), node, value) for node, value in sqnr.items()]


def sqnr_figure(rows: list[LayerRow], limit: int = 40) -> Any:
    """A horizontal bar chart of the worst measured layers (a matplotlib Figure), None without data."""
    # matplotlib is heavy and serving never loads it. A Figure with no pyplot renders through Agg
    # by itself (savefig picks the canvas for the format): no global backend for the host to inherit.
    from matplotlib.figure import Figure

    measured = [row for row in rows if isinstance(row.sqnr_db, (int, float))]
    shown = measured[:limit]
    if not shown:
        return None
    values = [float(row.sqnr_db) for row in shown]
    figure = Figure(figsize=(9, 0.28 * len(shown) + 1.2))
    axis = figure.subplots()
    colours = ["#c0392b" if v < 20 else "#e67e22" if v < 30 else "#27ae60" for v in values]
    axis.barh(range(len(values)), values, color=colours)
    axis.set_yticks(range(len(values)), [row.label for row in shown], fontsize=7)
    axis.invert_yaxis()
    axis.grid(axis="x", alpha=0.3)
    axis.set_axisbelow(True)
    axis.set_xlabel("SQNR (dB), higher is better; red < 20 dB, orange < 30 dB")
    what = f"all {len(shown)} measured layers" if len(shown) == len(measured) else \
        f"worst {len(shown)} of {len(measured)} measured layers"
    axis.set_title(f"Per-layer SQNR, INT8 vs FP32: {what}, worst first")
    figure.tight_layout()
    return figure


def plan_figure(plan: PlanSection, metric: str) -> Any:
    """Speed against accuracy of every precision plan tried: the front joined and named, the chosen plan
    ringed, the float default a square (the table names the rest)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2))
    axis = figure.subplots()
    rows = sorted(plan.plans, key=lambda row: row.speedup_vs_default)
    for marker, chosen in (("s", [r for r in rows if r.plan == FLOAT_DEFAULT]), ("o", [r for r in rows if r.plan != FLOAT_DEFAULT])):
        axis.scatter([r.speedup_vs_default for r in chosen], [r.score for r in chosen], marker=marker, zorder=3,
                     c=["#27ae60" if r.within_budget else "#c0392b" for r in chosen])
    front = [r for r in rows if r.on_front]
    axis.plot([r.speedup_vs_default for r in front], [r.score for r in front], color="#888", lw=1, zorder=2)
    for r in rows:
        if r.on_front or r.chosen or r.plan == FLOAT_DEFAULT:
            axis.annotate(r.plan, (r.speedup_vs_default, r.score), fontsize=7, xytext=(4, 3), textcoords="offset points")
        if r.chosen:
            axis.scatter([r.speedup_vs_default], [r.score], s=180, facecolors="none", edgecolors="#222", zorder=4)
    axis.axvline(1.0, color="#aaa", ls="--", lw=1)
    axis.margins(x=0.2, y=0.1)
    axis.set_xlabel(f"throughput vs the float default ({plan.float_default_precision}, square)")
    axis.set_ylabel(metric)
    axis.set_title("Precision plans: green within the budget, line = front, ring = chosen")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _png(figure: Any) -> str:
    """A figure as a base64 PNG (empty string for None)."""
    if figure is None:
        return ""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode()


def _sqnr_chart(sqnr: dict[str, float | str]) -> str:
    """The chart as a base64 PNG (empty string if no layer was measured)."""
    return _png(sqnr_figure(sqnr_rows(sqnr)))


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _changes(changes: dict[str, Any]) -> str:
    """A candidate's knobs as `name value` pairs, not a Python dict: 'rules_extra attention+head'."""
    def value(v: Any) -> str:
        return "+".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    return ", ".join(f"{name} {value(v)}" for name, v in changes.items()) or "-"


def _code(text: str) -> Any:
    """Escaped text with its `backticked` commands set as code."""
    from markupsafe import Markup, escape

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def render(report: Report) -> str:
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("edgeq.report"), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True)
    environment.filters.update(fmt=_fmt, code=_code, changes=_changes, layer=short_name,
                               candidate_label=candidate_label, candidate_outcome=candidate_outcome)
    rows = sqnr_rows(report.layers.sqnr_db)
    plan_chart = _png(plan_figure(report.plan, report.accuracy.metric)) if report.plan else ""
    return environment.get_template("report.html.j2").render(report=report, sqnr_rows=rows, plan_chart=plan_chart,
                                                             chart=_sqnr_chart(report.layers.sqnr_db))


def write_html(report: Report, path: Path) -> None:
    path.write_text(render(report), encoding="utf-8")
