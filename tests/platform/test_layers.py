"""The seams hold: what is above the inference backend interface, and what is outside the local engine and trainer
packages, imports only their public faces.

Read from the source with ``ast``, so a new import that crosses a seam fails here before it spreads.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
BACKENDS = "app.inference.backends"
ENGINE = "app.providers.local.engine"
TRAINING = "app.providers.local.training"


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(APP.parent).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def modules() -> Iterator[tuple[str, set[str]]]:
    for path in sorted(APP.rglob("*.py")):
        yield module_of(path), set(imports(path))


def test_only_the_backends_reach_the_local_engine_and_the_http_clients() -> None:
    """The gateway, routing, evals and the console talk to a backend, never to what is behind one."""
    behind = (ENGINE, "app.inference.local", "app.inference.remote")
    crossing = {
        module: sorted(name for name in names if name.startswith(behind))
        for module, names in modules()
        if not module.startswith((BACKENDS, ENGINE, "app.inference.local", "app.inference.remote"))
    }
    assert {m: n for m, n in crossing.items() if n} == {}


def test_the_gateway_knows_backends_only_through_the_interface() -> None:
    """No kind of backend is named above the seam: ``app.inference.setup`` alone builds them from settings."""
    kinds = (f"{BACKENDS}.local", f"{BACKENDS}.upstream", f"{BACKENDS}.vllm")
    naming = {module for module, names in modules() if any(name.startswith(kinds) for name in names)}
    assert naming - {module for module in naming if module.startswith(BACKENDS)} == {"app.inference.setup"}


def test_the_engine_and_the_trainer_are_reached_through_their_public_faces() -> None:
    private = {
        module: sorted(name for name in names if name.startswith((f"{ENGINE}._", f"{TRAINING}._")))
        for module, names in modules()
        if not module.startswith((ENGINE, TRAINING))
    }
    assert {m: n for m, n in private.items() if n} == {}
    # Neither package reaches into the other: what they share lives in app.providers.local.hf and base_models.
    for module, names in modules():
        if module.startswith(ENGINE):
            assert not [n for n in names if n.startswith(TRAINING)], module
        if module.startswith(TRAINING):
            assert not [n for n in names if n.startswith(ENGINE)], module


def test_routing_asks_providers_where_a_model_lives_instead_of_checking_their_class() -> None:
    source = (APP / "registry" / "routing.py").read_text()
    assert "Provider)" not in source  # no isinstance(provider, LocalProvider) / UpstreamProvider
    assert not [n for n in imports(APP / "registry" / "routing.py") if n.startswith("app.providers.local")]
