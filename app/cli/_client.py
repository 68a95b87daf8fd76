"""The connection to a gateway and the one HTTP client every API command uses.

The base URL and key come from ``--base-url``/``--api-key``, else ``FTGW_BASE_URL``/``FTGW_API_KEY``, else
``OPENAI_BASE_URL``/``OPENAI_API_KEY`` (as the SDK reads them); the URL may end in ``/v1`` or not. Every failure
becomes a :class:`CliError`: what failed, the server's message, what to do. A gateway that is not there is said so
at once (short connect timeout, no retries), not after a minute of retries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.cli._errors import FAILED, UNREACHABLE, USAGE, CliError

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 600.0  # a long completion on a CPU


def normalise_base_url(url: str) -> str:
    """``http://h:8000``, ``http://h:8000/`` and ``http://h:8000/v1/`` all name the same gateway."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


@dataclass
class Connection:
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = None
    debug: bool = False
    key_variable: str = "FTGW_API_KEY"  # the variable a pasted command should read the key from

    @classmethod
    def resolve(cls, base_url: str | None, api_key: str | None, *, debug: bool = False) -> Connection:
        env = os.environ
        url = base_url or env.get("FTGW_BASE_URL") or env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        variable = (
            "OPENAI_API_KEY"
            if not api_key and not env.get("FTGW_API_KEY") and env.get("OPENAI_API_KEY")
            else "FTGW_API_KEY"
        )
        key = api_key or env.get("FTGW_API_KEY") or env.get("OPENAI_API_KEY")
        return cls(normalise_base_url(url), key or None, debug, variable)


# Set once by the root command (``ftgw --base-url … COMMAND``); API commands read it through :func:`gateway`.
current = Connection()


def _message(response: httpx.Response) -> tuple[str, str | None]:
    """The server's message and the parameter it names, from OpenAI's error envelope (or the raw body)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return (text[0] if text else response.reason_phrase), None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or response.reason_phrase), error.get("param")
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"]), None
    return response.reason_phrase, None


class Gateway:
    """A small JSON client for ftgw's API (httpx is imported only when a command talks to the gateway)."""

    def __init__(self, connection: Connection) -> None:
        import httpx

        if not connection.api_key:
            raise CliError(
                "No API key.",
                "Pass --api-key or set FTGW_API_KEY (OPENAI_API_KEY works too); on the server, an operator can mint "
                "one with `ftgw keys create --project default --role admin --local`.",
                USAGE,
            )
        self.connection = connection
        self.http = httpx.Client(
            base_url=connection.base_url,
            headers={"Authorization": f"Bearer {connection.api_key}"},
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
            transport=httpx.HTTPTransport(retries=0),
        )

    def _unreachable(self, exc: Exception) -> CliError:
        import httpx

        where = self.connection.base_url
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return CliError(
                f"Cannot reach the gateway at {where} ({exc or type(exc).__name__}).",
                "Is it running? Start it with `make run` (or `ftgw serve`), or point --base-url / FTGW_BASE_URL at it.",
                UNREACHABLE,
            )
        return CliError(
            f"The connection to the gateway at {where} failed: {exc or type(exc).__name__}.", None, UNREACHABLE
        )

    def _check(self, method: str, path: str, response: httpx.Response) -> None:
        if response.is_success:
            return
        response.read()
        message, param = _message(response)
        status = response.status_code
        what = f"{method} {path} failed ({status})"
        hint: str | None = None
        if status == 401:
            hint = (
                "Check --api-key / FTGW_API_KEY. Lost the admin key? On the server run "
                "`ftgw keys create --project default --role admin --local`."
            )
        elif status == 403:
            hint = "This needs an admin key."
        elif status == 404 and "Unknown request URL" in message:
            hint = f"Is {self.connection.base_url} the gateway's address? (FTGW_BASE_URL, with or without /v1)"
        elif param:
            hint = f"(parameter: {param})"
        raise CliError(f"{what}: {message}", hint, FAILED)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        self._check(method, path, response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    def post(self, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if body is not None:
            kwargs["json"] = {k: v for k, v in body.items() if v is not None}
        return self.request("POST", path, **kwargs).json()

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path).json()

    @contextmanager
    def stream(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Iterator[httpx.Response]:
        import httpx

        try:
            with self.http.stream(method, path, headers=headers, **kwargs) as response:
                self._check(method, path, response)
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def events(self, response: httpx.Response) -> Iterator[tuple[str | None, str]]:
        """Server-sent events as (id, data); ``[DONE]`` ends them."""
        event_id: str | None = None
        for line in response.iter_lines():
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
                yield event_id, data
                if data == "[DONE]":
                    return

    def close(self) -> None:
        self.http.close()


def gateway() -> Gateway:
    return Gateway(current)


def decode(data: str) -> Any:
    return json.loads(data)
