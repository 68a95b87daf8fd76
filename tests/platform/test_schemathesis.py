"""Schemathesis against the served gateway: every operation of our own spec, bounded and seeded.

Each operation of ``/openapi.json`` is fuzzed on each backend, with inputs that fit the spec and (where it has any
parameter or body) inputs that do not, as an admin key of a fresh project so that admin routes run too. Two checks
on every answer: it is not a 5xx, and a documented answer matches the schema we publish. Generation is derandomised
(a fixed seed per test), so a failure reproduces. ``FTGW_SCHEMATHESIS_EXAMPLES`` raises the per-operation budget for
a deeper hunt than CI's.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import Gateway, make_tenant

EXAMPLES = int(os.environ.get("FTGW_SCHEMATHESIS_EXAMPLES", "25"))
SPEC = json.loads((Path(__file__).resolve().parents[2] / "openapi" / "openapi.json").read_text())


def _negatable(operation: dict[str, Any]) -> bool:
    """Whether a request can break the spec: a body, a query parameter, or a path parameter with constraints.

    A path parameter that is any string cannot be sent as anything else, so such an operation has no negative case.
    """
    if operation.get("requestBody"):
        return True
    for parameter in operation.get("parameters", []):
        plain_string = {k: v for k, v in parameter.get("schema", {}).items() if k != "title"} == {"type": "string"}
        if parameter["in"] != "path" or not plain_string:
            return True
    return False


def _operations() -> list[Any]:
    """(method, path, mode) for every operation; negative cases only where there is something to get wrong."""
    cases = []
    for path, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            cases.append(pytest.param(method.upper(), path, GenerationMode.POSITIVE, id=f"{method} {path} +"))
            if _negatable(operation):
                cases.append(pytest.param(method.upper(), path, GenerationMode.NEGATIVE, id=f"{method} {path} -"))
    return cases


# Cases sent and answers by status class, per backend: printed at the end of the run (tests/conftest.py).
TALLY: dict[str, Counter[str]] = {}


@pytest.fixture(scope="module")
def tally(database_url: str) -> Counter[str]:
    return TALLY.setdefault(database_url.split(":", 1)[0], Counter())


@pytest.fixture(scope="module")
def served_schema(gateway: Gateway) -> Any:
    return schemathesis.openapi.from_url(f"{gateway.base_url}/openapi.json")


@pytest.fixture(scope="module")
def auth_headers(gateway: Gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_tenant(gateway, role='admin').key}"}


@pytest.mark.parametrize(("method", "path", "mode"), _operations())
def test_operation(
    served_schema: Any,
    auth_headers: dict[str, str],
    tally: Counter[str],
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = served_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(headers=auth_headers, timeout=60)
        tally["cases"] += 1
        tally[f"{response.status_code // 100}xx"] += 1
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance], headers=auth_headers)

    run()
