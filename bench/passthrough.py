"""The floor of a routed call: a bare uvicorn + aiohttp passthrough (no auth, registry, limits, usage or metrics).

It forwards each POST body to ``UPSTREAM`` (one pooled aiohttp session, as ftgw's upstream client keeps) and
returns the upstream's answer as it came. ``bench/routed_inference.py`` runs it as the target ftgw is held to
(ftgw's req/s at 16 connections >= 0.75x this one's). Run by hand:

    UPSTREAM=http://127.0.0.1:18081 .venv/bin/uvicorn --app-dir bench passthrough:app --port 18095
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:18081")
_session: aiohttp.ClientSession | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _session
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-upstream"}
    async with _session.post(UPSTREAM + scope["path"], data=body, headers=headers) as response:
        answer, status = await response.read(), response.status
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})
