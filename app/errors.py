"""The GatewayError tree and the handlers that render every error as OpenAI's envelope.

``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status, so the ``openai`` SDK raises
its typed errors (``BadRequestError``, ``AuthenticationError``, ``NotFoundError`` …) against ftgw as it does
against api.openai.com. Nothing here ever puts a stack trace on the wire.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope."""

    error: ErrorBody


class GatewayError(Exception):
    """Base of every error ftgw raises on purpose: a status, an OpenAI error type and a machine-readable code."""

    status_code: int = 400
    type: str = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(GatewayError):
    status_code = 400
    code = "invalid_value"


class AuthenticationFailed(GatewayError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status_code = 403
    type = "permission_error"
    code = "insufficient_permissions"


class NotFound(GatewayError):
    status_code = 404
    code = "not_found"


class Conflict(GatewayError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status_code = 413
    code = "file_too_large"


class RateLimited(GatewayError):
    status_code = 429
    type = "requests"
    code = "rate_limit_exceeded"


class BadGateway(GatewayError):
    """An upstream model failed and no fallback answered."""

    status_code = 502
    type = "server_error"
    code = "upstream_error"


class ServiceUnavailable(GatewayError):
    status_code = 503
    type = "server_error"
    code = "service_unavailable"


def error_response(
    status: int,
    message: str,
    *,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


_TYPE_BY_STATUS = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
_CODE_BY_STATUS = {
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def _param_of(loc: tuple[Any, ...], body: Any = None) -> str | None:
    # loc is ("query"|"body"|"path"|"header", name, ...nested); OpenAI names the top-level parameter.
    parts = list(loc[1:]) if loc and loc[0] in {"query", "body", "path", "header", "form"} else []
    if loc and loc[0] == "body":
        parts = _as_sent(parts, body)
    return ".".join(str(p) for p in parts) or None


def _as_sent(parts: list[Any], body: Any) -> list[Any]:
    """The location as the client wrote it: pydantic puts a union's tag in it (``data_source.completions.model``,
    the discriminator's value or the member's name), a key the body never had. Walking the body, a segment it does
    not hold is dropped, unless it is the last one (a missing field is named)."""
    kept, node = [], body
    for i, part in enumerate(parts):
        if _holds(node, part):
            node = node[part]
        elif i < len(parts) - 1:
            continue
        kept.append(part)
    return kept


def _holds(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def gateway_error_response(exc: GatewayError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _gateway_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return gateway_error_response(exc)


def invalid_request_body(errors: Sequence[Any], body: Any) -> dict[str, Any]:
    """OpenAI's 400 for a request body that fails validation (``errors`` located as FastAPI does, from "body"):
    the first problem's parameter and message, and how many more there are."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    param = _param_of(tuple(first.get("loc", ())), body)
    message = str(first.get("msg", "invalid request"))
    message = f"Invalid value for '{param}': {message}" if param else message
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    # OpenAI answers malformed parameters with 400 invalid_request_error, and the SDK maps that to BadRequestError.
    code = "missing_required_parameter" if first.get("type") == "missing" else "invalid_value"
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(invalid_request_body(exc.errors(), exc.body), status_code=400)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    if status == 404 and detail == "Not Found":
        detail = "Unknown request URL. Please check the URL and method."
    type_ = _TYPE_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return error_response(
        status, detail, type_=type_, code=_CODE_BY_STATUS.get(status), headers=getattr(exc, "headers", None)
    )


async def _unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    return unhandled_error_response(request.method, request.url.path, exc)


def unhandled_error_response(method: str, path: str, exc: Exception) -> JSONResponse:
    """The 500 for a bug: logged with its traceback; the caller learns nothing of the internals."""
    log.exception("unhandled error on %s %s", method, path, exc_info=exc)
    return error_response(
        500,
        "The server had an error while processing your request. It has been logged.",
        type_="server_error",
        code="internal_error",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled_error)
