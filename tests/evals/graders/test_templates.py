"""Template strings: the paths they use, rendering (nested, JSON values, missing paths), checking against a schema."""

from __future__ import annotations

import pytest

from app.evals.templates import TemplateError, check_references, references, render

NAMESPACES = {
    "item": {"label": "positive", "a": {"b": [10, {"c": "deep"}]}, "n": 3, "flag": True, "none": None},
    "sample": {"output_text": "The answer", "output_json": {"field": "x", "list": [1, 2]}},
}


def test_references_are_the_paths_inside_braces_without_spaces() -> None:
    assert references("Label: {{item.label}} {{ sample.output_text }}") == {"item.label", "sample.output_text"}
    assert references("no templates { here }") == set()
    assert references("{{item.a}}{{item.a}}") == {"item.a"}


def test_render_substitutes_strings_as_they_are() -> None:
    assert render("Label: {{item.label}} / {{ sample.output_text }}", NAMESPACES) == "Label: positive / The answer"


def test_render_reaches_nested_values_by_dots_and_indices() -> None:
    assert render("{{item.a.b[1].c}} {{item.a.b.0}}", NAMESPACES) == "deep 10"
    assert render("{{sample.output_json.field}}", NAMESPACES) == "x"


def test_render_writes_other_values_as_compact_json() -> None:
    assert render("{{item.n}} {{item.flag}} {{item.none}}", NAMESPACES) == "3 true null"
    assert render("{{item.a}}", NAMESPACES) == '{"b":[10,{"c":"deep"}]}'
    assert render("{{sample.output_json.list}}", NAMESPACES) == "[1,2]"


@pytest.mark.parametrize(
    "path", ["item.missing", "item.a.b[5]", "item.label.x", "sample.output_json.nope", "other.x", "item..a", ""]
)
def test_a_path_with_no_value_is_a_template_error_naming_it(path: str) -> None:
    with pytest.raises(TemplateError) as raised:
        render("before {{" + path + "}} after", NAMESPACES)
    assert raised.value.path == path
    assert isinstance(raised.value, ValueError)


SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}, "text": {"type": "string"}}}


def test_check_references_finds_the_first_path_items_cannot_provide() -> None:
    assert check_references({"item.label", "item.text"}, SCHEMA, sample_allowed=False) is None
    assert check_references({"item.label", "item.missing"}, SCHEMA, sample_allowed=False) == "item.missing"
    assert check_references({"item.label.deeper"}, SCHEMA, sample_allowed=False) is None
    assert check_references({"sample.output_text"}, SCHEMA, sample_allowed=False) == "sample.output_text"
    assert check_references({"sample.output_text"}, SCHEMA, sample_allowed=True) is None
    assert check_references({"nonsense.x"}, SCHEMA, sample_allowed=True) == "nonsense.x"


def test_a_schema_that_lists_no_properties_refuses_no_item_path() -> None:
    assert check_references({"item.anything"}, {"type": "object"}, sample_allowed=False) is None
