"""Template strings of evals and graders: ``{{ item.x }}`` and ``{{ sample.output_text }}`` substituted per item.

As OpenAI's graders guide defines them: a ``{{ }}`` holds a namespace and a variable, ``{{ namespace.variable }}``;
the only namespaces are ``item`` (the data source's row) and ``sample`` (the model's answer: ``output_text``,
``output_json`` when the answer is JSON, ``output_tools``, ``choices``). Nested values are reached with a JSON-path
like syntax: ``{{ item.a.b }}``, ``{{ item.list[0] }}`` (or ``item.list.0``). A string value is substituted as it
is; any other value (number, boolean, null, object, list) as compact JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

NAMESPACES = ("item", "sample")
_REFERENCE = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)
_INDEX = re.compile(r"\[(\d+)\]")


class TemplateError(ValueError):
    """A template path that names no value: an unknown namespace or a missing key, index or field."""

    def __init__(self, path: str) -> None:
        super().__init__(f"The template variable '{{{{{path}}}}}' has no value.")
        self.path = path


def references(template: str) -> set[str]:
    """The paths a template uses, as written inside ``{{ }}`` (spaces around them dropped)."""
    return {match.group(1) for match in _REFERENCE.finditer(template)}


def segments(path: str) -> list[str]:
    """``item.a[0].b`` -> ``["item", "a", "0", "b"]``."""
    return _INDEX.sub(r".\1", path).split(".")


def lookup(path: str, namespaces: Mapping[str, Any]) -> Any:
    """The value ``path`` names in ``namespaces``; :class:`TemplateError` when it names none."""
    parts = segments(path)
    if parts[0] not in NAMESPACES or parts[0] not in namespaces or any(not part for part in parts):
        raise TemplateError(path)
    value: Any = namespaces[parts[0]]
    for part in parts[1:]:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isascii() and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise TemplateError(path)
    return value


def as_text(value: Any) -> str:
    """A value as a template substitutes it: a string as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render(template: str, namespaces: Mapping[str, Any]) -> str:
    """``template`` with every ``{{ path }}`` replaced by its value (:class:`TemplateError` for a missing one)."""
    return _REFERENCE.sub(lambda match: as_text(lookup(match.group(1), namespaces)), template)


def check_references(paths: Iterable[str], item_schema: Mapping[str, Any], *, sample_allowed: bool) -> str | None:
    """The first path (sorted, so the answer is stable) that an eval's items cannot provide, else None.

    ``item.x`` needs ``x`` among ``item_schema["properties"]`` when the schema lists properties (a schema that lists
    none promises nothing and refuses nothing); ``sample.*`` needs a sample (``sample_allowed``: the eval's config
    includes the sample schema, or its runs generate one). Any other namespace is never provided.
    """
    properties = item_schema.get("properties")
    for path in sorted(paths):
        parts = segments(path)
        if any(not part for part in parts):
            return path
        namespace = parts[0]
        if namespace == "sample":
            if not sample_allowed:
                return path
        elif namespace == "item":
            if len(parts) > 1 and isinstance(properties, Mapping) and parts[1] not in properties:
                return path
        else:
            return path
    return None
