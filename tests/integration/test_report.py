"""The report of a real job: edgeq.json valid against its published schema, report.html from its template."""

from __future__ import annotations

import copy
import json
import re
from html import unescape

import jsonschema
import pytest
from markupsafe import escape

from edgeq.report import html, schema


def test_edgeq_json_is_valid_against_the_published_schema(fmnist_result) -> None:  # type: ignore[no-untyped-def]
    report = json.loads((fmnist_result.path / "edgeq.json").read_text())
    published = json.loads(schema.PUBLISHED.read_text())
    jsonschema.Draft202012Validator.check_schema(published)
    jsonschema.validate(report, published, cls=jsonschema.Draft202012Validator)
    assert report == json.loads(json.dumps(fmnist_result.report.to_dict()))  # tuples become lists
    assert report["schema_version"] == 2 and list(report)[0] == "schema_version"
    # A report that drifts from the schema fails: a key the schema does not know, a missing one, a wrong type.
    for broken in ({**report, "extra": 1}, {k: v for k, v in report.items() if k != "fallback"},
                   {**report, "accuracy": {**report["accuracy"], "final": "high"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, published, cls=jsonschema.Draft202012Validator)


def test_report_html_shows_the_values_and_escapes_names(fmnist_result) -> None:  # type: ignore[no-untyped-def]
    report = copy.deepcopy(fmnist_result.report)
    hostile = "blocks.0/<script>alert(1)</script>/MatMul"
    report.layers.sqnr_db = {hostile: 3.5, **report.layers.sqnr_db}
    report.warnings.append("a warning with <b>markup</b>")
    page = html.render(report)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a warning with &lt;b&gt;markup&lt;/b&gt;" in page
    accuracy = report.accuracy
    assert f"<td>{accuracy.float:.4f}</td>" in page and f"<td>{accuracy.final:.4f}</td>" in page
    assert f"<td>{escape(hostile)}</td><td>3.5</td>" in page
    assert f"{report.layers.quantized} of {report.layers.quantizable} quantizable layers" in page
    assert escape(report.model.name) in page and escape(report.cpu.name) in page and "data:image/png;base64," in page
    rule = report.rules[0]
    assert f"<td>{escape(rule.rule)}</td><td>{escape(rule.reason)}</td><td>{rule.matched}</td>" in page
    assert report.speed is not None
    speed = report.speed.batches["1"]
    assert f"<td>1</td><td>{speed.int8_throughput:.1f}</td>" in page


def test_the_sqnr_chart_and_table_name_each_layer_the_same_way(fmnist_result) -> None:  # type: ignore[no-untyped-def]
    report = fmnist_result.report
    rows = html.sqnr_rows(report.layers.sqnr_db)
    chart = [label.get_text() for label in html.sqnr_figure(rows).axes[0].get_yticklabels()]
    page = html.render(report)
    table_html = page.split("SQNR (dB)</th>", 1)[1].split("</table>", 1)[0]
    table = re.findall(r'<tr><td(?: title="([^"]*)")?>([^<]*)</td><td>([^<]*)</td></tr>', table_html)
    assert len(table) == min(10, len(rows)) and chart, page
    for (node, label, value), row in zip(table, rows):
        assert unescape(label) == row.label and unescape(node or label) == row.node
        assert unescape(node or label) in report.layers.sqnr_db  # the tooltip is the full node name
        if value not in ("inf", "-inf"):
            assert row.label in chart  # the same words in the chart
    assert not any("__module" in label or "aten::" in label for label in chart + [row.label for row in rows])


def test_report_html_says_its_units_and_sets_commands_as_code(fmnist_result) -> None:  # type: ignore[no-untyped-def]
    report = copy.deepcopy(fmnist_result.report)
    report.warnings.append("promote it with `edgeq models promote <b>` later")
    page = html.render(report)
    assert "throughput (samples/s)" in page and "latency (ms per request, median)" in page and "SQNR (dB)" in page
    assert "promote it with <code>edgeq models promote &lt;b&gt;</code> later" in page
    assert '<meta name="viewport"' in page and 'class="scroll"' in page  # readable on a narrow screen
