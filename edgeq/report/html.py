"""One self-contained HTML page per version: accuracy, fallback list, rules, SQNR chart, speed table."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from edgeq.report.summary import candidate_label, candidate_outcome, short_name


def _sqnr_chart(sqnr: dict[str, Any], limit: int = 40) -> str:
    """A horizontal bar chart of the worst layers' SQNR as an inline PNG (empty string if no data)."""
    items = [(name, value) for name, value in sqnr.items() if isinstance(value, (int, float))][:limit]
    if not items:
        return ""
    # matplotlib is heavy and serving never loads it. A Figure with no pyplot renders through Agg
    # by itself (savefig picks the canvas for the format): no global backend for the host to inherit.
    from matplotlib.figure import Figure

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


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _seconds(fallback: dict[str, Any]) -> str:
    return f" ({fallback['seconds']} s)" if fallback.get("seconds") else ""


def render(report: dict[str, Any]) -> str:
    acc, model = report["accuracy"], report["model"]
    verdict_class = "ok" if acc["met"] else "bad"
    parts = [
        f"<h1>edgeq report: {html.escape(model['name'])}</h1>",
        f"<p>Source: {html.escape(model['source'])}<br>Created {html.escape(report['created'])} with edgeq "
        f"{html.escape(report['edgeq_version'])} on {html.escape(report['cpu']['name'])}</p>",
    ]
    parts += [f"<p class='warn'>⚠ {html.escape(w)}</p>" for w in report["warnings"]]
    parts.append("<h2>Accuracy</h2>")
    parts.append(_table(["metric", "float (FP32)", "INT8 plain PTQ", "INT8 final", "drop", "budget", "verdict"], [[
        acc["metric"], _fmt(acc["float"]), _fmt(acc["int8_ptq"]), _fmt(acc["final"]), _fmt(acc["drop"]),
        f"{acc['budget']['max_drop']}{' relative' if acc['budget']['relative'] else ''}", acc["verdict"]]]))
    parts.append(f"<p class='{verdict_class}'>{html.escape(acc['verdict'])}</p>")
    extra = [[k, _fmt(acc.get(k))] for k in ("agreement", "cosine", "neighbour_agreement",
                                                       "neighbour_in_float_top2", "neighbour_changes_at_near_ties")
             if acc.get(k) is not None]
    if extra:
        parts.append(_table(["diagnostic vs float", "value"], extra))
    data = report["data"]
    parts.append(f"<p>Calibration: {data['calibration']['used']} of {data['calibration']['samples']} samples. "
                 f"Validation: {data['validation']['samples']} samples"
                 f"{' held out from the calibration set' if data['validation']['held_out_from_calibration'] else ''}.</p>")
    fallback = report["fallback"]
    parts.append("<h2>Fallback to float</h2>")
    parts.append(f"<p>Fallback: {html.escape(str(fallback.get('status')))}</p>")
    if fallback.get("requantize"):
        parts.append(_table(["lowest-SQNR layers in float, PTQ re-run", f"{acc['metric']}"],
                            [[step["reverted"], _fmt(step["score"])] for step in fallback["requantize"]]))
    control = fallback.get("accuracy_control")
    if control:
        parts.append(f"<p>NNCF accuracy control: {html.escape(str(control['status']))}"
                     f"{', ' + acc['metric'] + ' ' + _fmt(control['score']) if control.get('score') is not None else ''}"
                     f"{' — ' + html.escape(control['reason']) if control.get('reason') else ''}"
                     f"{_seconds(control)}</p>")
    if fallback.get("reverted"):
        parts.append(_table(["layer reverted to float", "type", "SQNR in plain PTQ (dB)", "why"],
                            [[r["layer"], r["type"], _fmt(r.get("plain_ptq_sqnr_db"), 1), r["reason"]]
                             for r in fallback["reverted"]]))
    layers = report["layers"]
    parts.append(f"<p>{layers['quantized']} of {layers['quantizable']} quantizable layers run in INT8; "
                 f"{layers['reverted']} reverted.</p>")
    if report.get("search"):
        parts.append("<h2>Recipe search</h2>")
        parts.append(_table(["candidate", "round, calibration samples", "changes", f"{acc['metric']} on ranking subset",
                             "seconds", "chosen"],
                            [[r["candidate"], candidate_label(r), r["changes"] or "-", candidate_outcome(r), r["seconds"],
                              "yes" if r.get("chosen") else ""] for r in report["search"]]))
    parts.append("<h2>Ignored-scope rules</h2>")
    parts.append(_table(["rule", "what it keeps in float", "nodes matched", "note"],
                        [[r["rule"], r["reason"], r["matched"], r["note"]] for r in report["rules"]]))
    parts.append("<h2>Per-layer error</h2>")
    chart = _sqnr_chart(layers["sqnr_db"])
    if chart:
        parts.append(f"<img alt='per-layer SQNR chart' src='data:image/png;base64,{chart}'>")
    worst = list(layers["sqnr_db"].items())[:10]
    parts.append(_table(["layer (worst first)", "SQNR dB"], [[n, _fmt(v, 1)] for n, v in worst]))
    attention = layers.get("attention_rank_correlation") or {}
    if attention:
        parts.append("<h2>Attention maps</h2><p>Spearman rank correlation of each query's attention weights, "
                     "INT8 against FP32 (1 = the same tokens in the same order), per Softmax, lowest first.</p>")
        parts.append(_table(["attention Softmax", "rank correlation"], [[n, _fmt(v, 4)] for n, v in attention.items()]))
    speed = report.get("speed")
    parts.append("<h2>Speed on this CPU</h2>")
    if speed:
        rows = [[b, _fmt(r["int8_throughput"], 1), _fmt(r["fp32_throughput"], 1), _fmt(r["float_default_throughput"], 1),
                 _fmt(r["speedup_vs_fp32"], 2), _fmt(r["speedup_vs_default"], 2), _fmt(r["int8_latency_ms"], 2),
                 _fmt(r["fp32_latency_ms"], 2), _fmt(r["float_default_latency_ms"], 2)] for b, r in speed["batches"].items()]
        parts.append(_table(["batch", "INT8 /s", "FP32 /s", f"float default ({speed['float_default_precision']}) /s",
                             "INT8/FP32", "INT8/default", "INT8 ms", "FP32 ms", "default ms"], rows))
        parts.append(f"<p>Medians of {speed['rounds']} alternating rounds. CPU ISA: "
                     f"{html.escape(', '.join(report['cpu']['isa_flags']))}.</p>")
        gate = report.get("speed_gate")
        if gate:
            verdict, css = ("met", "ok") if gate["met"] else ("NOT met", "bad")
            parts.append(f"<p class='{css}'>Speed gate: INT8 at x{gate['speedup_vs_default']:.2f} of the default float "
                         f"model, x{gate['min_speedup']} required: {verdict}"
                         f"{'' if gate['met'] else '; served anyway (forced)' if gate.get('forced') else '; held back from serving'}.</p>")
    else:
        parts.append("<p>Not measured.</p>")
    size = report["size"]
    parts.append(f"<p>Size: float {size['float_bytes'] / 1e6:.2f} MB, INT8 {size['int8_bytes'] / 1e6:.2f} MB "
                 f"(×{size['ratio']:.2f} smaller).</p>")
    parts.append("<h2>Time spent</h2>")
    parts.append(_table(["stage", "seconds"], [[k, v] for k, v in report["timings_s"].items()]))
    style = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
             "th{background:#f3f3f3}.ok{color:#1e8449;font-weight:bold}.bad{color:#c0392b;font-weight:bold}"
             ".warn{color:#9a6700}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>edgeq report {html.escape(model['name'])}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def write_html(report: dict[str, Any], path: Path) -> None:
    path.write_text(render(report), encoding="utf-8")
