"""The floor of a routed call: a bare uvicorn + aiohttp passthrough (no auth, registry, limits, usage or metrics).

It forwards each POST body to ``UPSTREAM`` (one pooled aiohttp session) and returns the upstream's answer as it
came. ``bench/routed_inference.py`` runs it as the target ftgw is held to (issue 18: ftgw's req/s at 16
connections >= 0.75x this one's). With ``CLIENT=http1`` it forwards through ftgw's own upstream client instead
(:class:`app.kit.http1.Http1Pool`), the floor of a routed call on that client: ``routed_inference.py`` runs it as a
second row, so that what ftgw gains from its client is not mistaken for what it gains elsewhere. Run by hand:

    UPSTREAM=http://127.0.0.1:18081 [CLIENT=http1] .venv/bin/uvicorn --app-dir bench passthrough:app --port 18095
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.kit.http1 import Http1Pool

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:18081")
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-upstream"}
_session: aiohttp.ClientSession | None = None
_pool = (
    Http1Pool(UPSTREAM, HEADERS, connect_timeout=10, read_timeout=60) if os.environ.get("CLIENT") == "http1" else None
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _session
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    if _pool is not None:
        reply = await _pool.post(scope["path"], body)
        answer, status = reply.body, reply.status
    else:
        if _session is None:
            _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
        async with _session.post(UPSTREAM + scope["path"], data=body, headers=HEADERS) as response:
            answer, status = await response.read(), response.status
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})
