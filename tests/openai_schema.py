"""Validate our wire objects against OpenAI's own OpenAPI schemas.

``tests/reference/openai-openapi-subset.json`` is a verbatim subset of OpenAI's published OpenAPI document (MIT, see
its ``info.license``): the paths ftgw mirrors and every schema they reference. It lives in the repository so that a
plain clone checks conformance against OpenAI's own definitions, with nothing read from outside the tree.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

REFERENCE = Path(__file__).resolve().parent / "reference" / "openai-openapi-subset.json"


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` as JSON Schema: the same schema, or null."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _nullable(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = _nullable(json.loads(REFERENCE.read_text()))
    return document


def assert_matches(instance: Any, schema_name: str) -> None:
    """Fail with every violation if ``instance`` does not validate against OpenAI's ``schema_name``."""
    document = _document()
    assert schema_name in document["components"]["schemas"], schema_name
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
