"""A lean HTTP/1.1 client for the routed hot path: JSON POSTs over pooled keep-alive connections.

A routed chat completion spends most of its time in the HTTP client that calls the upstream: aiohttp's request and
response objects, its connector and its stream reader cost ~80 us of CPU per call on the 2-core machine we measure
on, where this client, an asyncio protocol around httptools' parser (uvicorn's), costs ~14 (bench/README.md,
"Routed overhead", third pass). It does what a routed call needs and no more:

* one request at a time per connection, connections kept alive and reused, at most ``max_connections`` open (a
  call beyond them waits for one to come back);
* ``Content-Length``, chunked and read-until-close bodies; gzip and deflate bodies decoded (none is asked for);
* a connect timeout, and a read timeout: the longest silence allowed while an answer is awaited, checked by one
  sweep per pool (every quarter of the timeout, at most a second) rather than a timer per call;
* a connection reused from the pool that the server closes before any byte of an answer (its keep-alive ran out
  as the request went out) is replaced and the request sent once more, as urllib3 and aiohttp do for a reused
  connection; a new connection that fails is the caller's to retry.

Anything else (streams, proxies, redirects, cookies) is for a full client: the upstream client keeps aiohttp for
streamed answers.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

MAX_SWEEP_SECONDS = 1.0


class ConnectionFailed(Exception):
    """No whole answer: the connection could not be opened, broke off, or carried something that is not HTTP."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    async def drain(self) -> bytes:
        """The body (already read): the same call as on a streamed answer, which must still read it."""
        return self.body


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request written whole, its answer parsed as it arrives."""

    def __init__(self, pool: Http1Pool) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[HttpResponse] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._received = False  # any byte of the current answer
        self._headers_done = False
        self.deadline = 0.0  # when the current answer's silence becomes a timeout (loop time)
        self.reusable = True
        self.reused = False
        self.closed = False

    # -- asyncio.Protocol ------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self._received = True
        self.deadline = self._pool.loop_time() + self._pool.read_timeout
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionFailed(f"the answer is not HTTP/1.1 ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable, self.closed = False, True
        self._pool.lost(self)
        answer = self._answer
        if answer is None or answer.done():
            return
        framed = "content-length" in self._headers or "transfer-encoding" in self._headers
        if self._headers_done and not framed:  # a body that ends where the connection does
            self._complete()
        else:
            self._fail(ConnectionFailed("the connection closed before the answer was whole"))

    # -- httptools callbacks ---------------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self._parser.should_keep_alive()
        self._complete()

    # -- one request -------------------------------------------------------------------------------------------
    def send(self, request: bytes) -> asyncio.Future[HttpResponse]:
        assert self.transport is not None
        self._answer = self._pool.loop().create_future()
        self._headers, self._body = {}, []
        self._received = self._headers_done = False
        self.deadline = self._pool.loop_time() + self._pool.read_timeout
        self.transport.write(request)
        return self._answer

    @property
    def waiting(self) -> bool:
        return self._answer is not None and not self._answer.done()

    @property
    def received(self) -> bool:
        return self._received

    def time_out(self) -> None:
        self._fail(TimeoutError(f"no answer within {self._pool.read_timeout}s"))
        if self.transport is not None:
            self.transport.abort()

    def _complete(self) -> None:
        body = b"".join(self._body)
        self._body = []
        answer = self._answer
        if answer is None or answer.done():
            return
        try:
            body = _decoded(body, self._headers.get("content-encoding"))
        except (zlib.error, ValueError) as exc:
            self._fail(ConnectionFailed(f"the answer's body could not be decoded ({exc})"))
            return
        answer.set_result(HttpResponse(self._parser.get_status_code(), self._headers, body))

    def _fail(self, error: Exception) -> None:
        self.reusable = False
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)


def _decoded(body: bytes, encoding: str | None) -> bytes:
    if encoding is None or encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:  # raw deflate, without the zlib wrapper, as some servers send it
            return zlib.decompress(body, -zlib.MAX_WBITS)
    raise ValueError(f"unsupported content-encoding {encoding!r}")


class Http1Pool:
    """Keep-alive connections to the origin of ``base_url``, POSTing JSON under its path."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int = 512,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if url.scheme == "https" else None
        self._prefix = url.path.rstrip("/")
        default_port = (url.scheme == "https" and self.port == 443) or (url.scheme == "http" and self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = host if default_port else f"{host}:{self.port}"
        lines = [f"Host: {authority}", *(f"{k}: {v}" for k, v in headers.items())]
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("a header name or value holds a line break")
        self._header_block = "".join(line + "\r\n" for line in lines).encode("latin-1")
        self._heads: dict[str, bytes] = {}
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._connected: set[_Connection] = set()
        self._open = 0  # connected, and being connected
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def loop_time(self) -> float:
        return self.loop().time()

    @property
    def open_connections(self) -> int:
        return self._open

    async def post(self, path: str, body: bytes) -> HttpResponse:
        """POST ``body`` (JSON) to ``path`` under the base URL; the whole answer, whatever its status.

        Raises :class:`ConnectionFailed` or ``TimeoutError`` when no whole answer came."""
        self._bind()
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = f"POST {self._prefix}{path} HTTP/1.1\r\n".encode("latin-1") + self._header_block
        request = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        connection = await self._acquire()
        try:
            try:
                answer = await connection.send(request)
            except ConnectionFailed:
                if not connection.reused or connection.received:
                    raise
                # The server had closed this kept-alive connection before reading the request: send it again.
                self._release(connection)
                connection = await self._acquire(fresh=True)
                answer = await connection.send(request)
        finally:
            self._release(connection)
        return answer

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in [*self._idle, *self._busy]:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()

    # -- the pool ----------------------------------------------------------------------------------------------
    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        # A pool belongs to one event loop (as aiohttp's session does): a new loop starts it afresh.
        self._loop, self._idle, self._busy, self._connected, self._open = loop, [], set(), set(), 0
        self._waiters = deque()
        self._sweeper = loop.create_task(self._sweep(), name="ftgw-http1-sweep")

    async def _acquire(self, fresh: bool = False) -> _Connection:
        while not fresh and self._idle:
            connection = self._idle.pop()
            if connection.reusable and connection.transport is not None and not connection.transport.is_closing():
                connection.reused = True
                self._busy.add(connection)
                return connection
        while self._open >= self.max_connections:
            waiter = self.loop().create_future()
            self._waiters.append(waiter)
            await waiter
            if not fresh and self._idle:
                return await self._acquire()
        self._open += 1
        try:
            _, connection = await asyncio.wait_for(
                self.loop().create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                ),
                self.connect_timeout,
            )
        except OSError as exc:
            self._open -= 1
            self._wake_one()
            raise ConnectionFailed(f"could not connect to {self.host}:{self.port} ({type(exc).__name__})") from exc
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        if connection.closed:  # closed by the server before we got to use it
            self._open -= 1
            self._wake_one()
            raise ConnectionFailed(f"{self.host}:{self.port} closed the connection at once")
        self._connected.add(connection)
        self._busy.add(connection)
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection not in self._busy:
            return
        self._busy.discard(connection)
        if connection.reusable and not connection.waiting:
            connection.reused = False
            self._idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()  # lost() counts it once it is gone
        self._wake_one()

    def lost(self, connection: _Connection) -> None:
        """A connection closed (by either side): it no longer counts against the limit."""
        if connection not in self._connected:  # not yet handed out, or from an earlier event loop
            return
        self._connected.discard(connection)
        self._open -= 1
        self._busy.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _sweep(self) -> None:
        """Time out the answers that have been silent for longer than the read timeout."""
        period = min(MAX_SWEEP_SECONDS, self.read_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = self.loop_time()
            for connection in [c for c in self._busy if c.waiting and c.deadline <= now]:
                connection.time_out()
