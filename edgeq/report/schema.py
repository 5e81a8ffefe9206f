"""The JSON Schema of `edgeq.json`, generated from the Report dataclasses (pydantic reads the types).

`python -m edgeq.report.schema` rewrites the published edgeq.schema.json; a test fails when the two differ.
Every key a report writes is required and no other is allowed, so a report that drifts from its
schema fails validation instead of passing it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PUBLISHED = Path(__file__).with_name("edgeq.schema.json")


def _strict(definition: dict[str, Any]) -> dict[str, Any]:
    definition.pop("title", None)
    for value in definition.get("properties", {}).values():
        value.pop("title", None)
        value.pop("default", None)
    if "properties" in definition:
        definition.update(required=list(definition["properties"]), additionalProperties=False)
    return definition


def generate() -> dict[str, Any]:
    from pydantic import TypeAdapter

    from edgeq.report.model import SCHEMA_VERSION, Report

    schema = TypeAdapter(Report).json_schema(mode="serialization")
    for definition in schema.get("$defs", {}).values():
        _strict(definition)
    _strict(schema)["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "edgeq.json", **schema,
            "description": f"The report of one edgeq quantization job, schema version {SCHEMA_VERSION}."}


def dumps(schema: dict[str, Any]) -> str:
    """One line per definition: a change to a section is a one-line diff."""
    rows = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in schema.items() if key != "$defs"]
    definitions = [f"    {json.dumps(name)}: {json.dumps(value)}" for name, value in schema["$defs"].items()]
    return "{\n" + ",\n".join(rows) + ',\n  "$defs": {\n' + ",\n".join(definitions) + "\n  }\n}\n"


if __name__ == "__main__":
    PUBLISHED.write_text(dumps(generate()))
