"""edgeq.json's published JSON Schema is the one the Report dataclasses give."""

from __future__ import annotations

import json

from edgeq.report import schema
from edgeq.report.model import SCHEMA_VERSION


def test_the_published_schema_is_generated_from_the_report_dataclasses() -> None:
    published = json.loads(schema.PUBLISHED.read_text())
    assert published == schema.generate(), "the Report dataclasses changed: run `python -m edgeq.report.schema`"
    assert published["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    accuracy = published["$defs"]["AccuracySection"]
    assert accuracy["additionalProperties"] is False and {"float", "final", "met"} <= set(accuracy["required"])
