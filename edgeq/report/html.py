"""One self-contained HTML page per version, from a Jinja2 template: accuracy, fallback, rules, SQNR chart, speed."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from edgeq.report.model import Report
from edgeq.report.summary import candidate_label, candidate_outcome, short_name


def _sqnr_chart(sqnr: dict[str, float | str], limit: int = 40) -> str:
    """A horizontal bar chart of the worst layers' SQNR as a base64 PNG (empty string if no data)."""
    # matplotlib is heavy and serving never loads it. A Figure with no pyplot renders through Agg
    # by itself (savefig picks the canvas for the format): no global backend for the host to inherit.
    from matplotlib.figure import Figure

    items = [(name, value) for name, value in sqnr.items() if isinstance(value, (int, float))][:limit]
    if not items:
        return ""
    names = [short_name(n)[-48:] for n, _ in items]
    values = [v for _, v in items]
    figure = Figure(figsize=(9, 0.28 * len(items) + 1.2))
    axis = figure.subplots()
    colours = ["#c0392b" if v < 20 else "#e67e22" if v < 30 else "#27ae60" for v in values]
    axis.barh(range(len(values)), values, color=colours)
    axis.set_yticks(range(len(values)), names, fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("SQNR (dB), higher is better; red < 20 dB, orange < 30 dB")
    axis.set_title(f"Per-layer SQNR, worst {len(items)} layers (INT8 vs FP32)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode()


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render(report: Report) -> str:
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("edgeq.report"), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True)
    environment.filters.update(fmt=_fmt, candidate_label=candidate_label, candidate_outcome=candidate_outcome)
    return environment.get_template("report.html.j2").render(report=report, chart=_sqnr_chart(report.layers.sqnr_db))


def write_html(report: Report, path: Path) -> None:
    path.write_text(render(report), encoding="utf-8")
