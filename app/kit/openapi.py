"""What FastAPI cannot derive from a route: the server-sent events a route answers with beside its JSON.

A route that streams with ``stream=true`` declares ``responses=event_stream(Item, ...)``: its 200 answer then has
both content types, JSON (the route's ``response_model``) and ``text/event-stream`` described as FastAPI describes
its own SSE routes (OpenAPI 3.2's ``itemSchema``: each event's ``data`` is ``Item`` as JSON, then ``[DONE]``).
``publish_stream_items`` adds every such ``Item`` to the document's component schemas.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/{model}"
DONE = "[DONE]"

# Every model some route streams, by name: filled as the routers are defined, published by publish_stream_items.
_stream_items: dict[str, type[BaseModel]] = {}


def event_stream(item: type[BaseModel], description: str) -> dict[int | str, dict[str, Any]]:
    """The 200 response of a route that may answer with server-sent events whose data are ``item`` JSON."""
    _stream_items[item.__name__] = item
    data = {
        "anyOf": [
            {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": REF.format(model=item.__name__)},
            },
            {"const": DONE, "description": "The last event: the stream is over."},
        ]
    }
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": data,
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer", "minimum": 0},
        },
    }
    return {200: {"description": description, "content": {"text/event-stream": {"itemSchema": event}}}}


def publish_stream_items(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the schemas of the streamed items (and what they nest) as components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        items = [(model, "serialization") for _, model in sorted(_stream_items.items())]
        _, definitions = models_json_schema(items, ref_template=REF)  # type: ignore[arg-type]
        for name, schema in definitions.get("$defs", {}).items():
            schemas.setdefault(name, schema)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
