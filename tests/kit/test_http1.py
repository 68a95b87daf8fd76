"""The routed hot path's HTTP/1.1 client against a real server on loopback that answers as each test scripts it."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.kit.http1 import ConnectionFailed, Http1Pool

Answer = Callable[["Request", asyncio.StreamWriter], Awaitable[bool]]  # writes the answer; False: close after it


@dataclass
class Request:
    line: str
    headers: dict[str, str]
    body: bytes
    connection: int  # which connection it came on, counted from 1


@dataclass
class Server:
    answer: Answer
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        number = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *rest = head.decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Request(line, headers, body, number))
                if not await self.answer(self.requests[-1], writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            self.open_now -= 1
            writer.close()


def reply(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def fixed(body: bytes = b'{"ok": true}', *extra: str, keep: bool = True) -> Answer:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply(body, f"Content-Length: {len(body)}", "Content-Type: application/json", *extra))
        await writer.drain()
        return keep

    return answer


@asynccontextmanager
async def serving(answer: Answer, **options: float) -> AsyncIterator[tuple[Server, Http1Pool]]:
    server = Server(answer)
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    pool = Http1Pool(
        f"http://127.0.0.1:{port}/v1",
        {"Authorization": "Bearer sk-test", "Content-Type": "application/json"},
        connect_timeout=options.get("connect_timeout", 2.0),
        read_timeout=options.get("read_timeout", 5.0),
        max_connections=int(options.get("max_connections", 512)),
    )
    try:
        yield server, pool
    finally:
        await pool.aclose()
        listening.close()
        await listening.wait_closed()


async def test_a_post_reaches_the_base_urls_path_with_its_headers_and_connections_are_kept() -> None:
    async with serving(fixed()) as (server, pool):
        for i in range(5):
            answer = await pool.post("/chat/completions", b'{"n": %d}' % i)
            assert (answer.status, answer.body) == (200, b'{"ok": true}')
            assert answer.header("content-type") == "application/json"
        assert [r.body for r in server.requests] == [b'{"n": %d}' % i for i in range(5)]
        first = server.requests[0]
        assert first.line == "POST /v1/chat/completions HTTP/1.1"
        assert first.headers["host"] == f"127.0.0.1:{pool.port}"
        assert first.headers["authorization"] == "Bearer sk-test"
        assert server.connections == 1  # one kept-alive connection for all five
        assert pool.open_connections == 1


async def test_chunked_gzip_deflate_and_until_close_bodies() -> None:
    payload = b'{"text": "' + b"x" * 5000 + b'"}'

    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        kind = request.body.decode()
        if kind == "chunked":
            chunks = [payload[i : i + 700] for i in range(0, len(payload), 700)]
            body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
            writer.write(reply(body, "Transfer-Encoding: chunked"))
        elif kind in ("gzip", "deflate", "raw-deflate"):
            packed = {
                "gzip": gzip.compress(payload),
                "deflate": zlib.compress(payload),
                "raw-deflate": zlib.compress(payload)[2:-4],
            }[kind]
            encoding = "gzip" if kind == "gzip" else "deflate"
            writer.write(reply(packed, f"Content-Length: {len(packed)}", f"Content-Encoding: {encoding}"))
        else:  # no length, not chunked: the body ends with the connection
            writer.write(reply(payload, "Connection: close"))
            await writer.drain()
            return False
        await writer.drain()
        return True

    async with serving(answer) as (server, pool):
        for kind in ("chunked", "gzip", "deflate", "raw-deflate", "until-close", "chunked"):
            got = await pool.post("/x", kind.encode())
            assert (got.status, got.body) == (200, payload), kind
        assert server.connections == 2  # a new one after the connection that closed


async def test_statuses_come_back_whole_and_connection_close_is_honoured() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply(b'{"error": {}}', "Content-Length: 13", "Retry-After: 3", status="429 Too Many Requests"))
        await writer.drain()
        return request.body != b"close"

    async with serving(answer) as (server, pool):
        got = await pool.post("/x", b"")
        assert (got.status, got.header("retry-after"), got.body) == (429, "3", b'{"error": {}}')
        await pool.post("/x", b"close")
        await pool.post("/x", b"")
        assert server.connections == 2


async def test_a_kept_connection_the_server_closed_is_replaced_without_failing_the_call() -> None:
    async with serving(fixed(keep=False)) as (server, pool):  # the server closes after each answer, unannounced
        for _ in range(4):
            assert (await pool.post("/x", b"{}")).status == 200
            await asyncio.sleep(0.05)  # the close reaches the pool: the idle connection is dropped, or found dead
        assert server.connections == 4
        assert len(server.requests) == 4  # each request sent once


async def test_a_kept_connection_closed_without_an_answer_is_retried_once_on_a_new_one() -> None:
    async def second_dropped(request: Request, writer: asyncio.StreamWriter) -> bool:
        if sum(r.connection == request.connection for r in server.requests) == 2:
            return False  # a keep-alive timeout racing the request: closed without a word
        return await fixed()(request, writer)

    async with serving(second_dropped) as (server, pool):
        assert (await pool.post("/x", b"1")).status == 200
        assert (await pool.post("/x", b"2")).status == 200  # dropped on connection 1, answered on connection 2
        assert [(r.body, r.connection) for r in server.requests] == [(b"1", 1), (b"2", 1), (b"2", 2)]

    async def always_dropped(request: Request, writer: asyncio.StreamWriter) -> bool:
        return False

    async with serving(always_dropped) as (server, pool):  # a fresh connection failing is not retried here
        with pytest.raises(ConnectionFailed, match="closed"):
            await pool.post("/x", b"{}")
        assert len(server.requests) == 1


async def test_a_silent_server_times_out_and_a_closed_port_or_garbage_fails() -> None:
    async def stall(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(3)
        return False

    async with serving(stall, read_timeout=0.4) as (_, pool):
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await pool.post("/x", b"{}")
        assert 0.35 < time.monotonic() - started < 1.5
        await asyncio.sleep(0.05)  # the aborted connection's close reaches the pool
        assert pool.open_connections == 0  # the timed-out connection is gone

    async def garbage(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        return True

    async with serving(garbage) as (_, pool):
        with pytest.raises(ConnectionFailed, match="not HTTP"):
            await pool.post("/x", b"{}")

    async def cut(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply(b'{"partial', "Content-Length: 100"))
        await writer.drain()
        return False

    async with serving(cut) as (_, pool):
        with pytest.raises(ConnectionFailed, match="before the answer was whole"):
            await pool.post("/x", b"{}")

    async with serving(fixed()) as (_, pool):
        pool.port = 1  # nothing listens on port 1 of the loopback
        with pytest.raises(ConnectionFailed, match="could not connect"):
            await pool.post("/x", b"{}")


async def test_at_most_max_connections_are_open_and_the_rest_wait_their_turn() -> None:
    async def slow(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        return await fixed()(request, writer)

    async with serving(slow, max_connections=2) as (server, pool):
        answers = await asyncio.gather(*(pool.post("/x", b"{}") for _ in range(7)))
        assert [a.status for a in answers] == [200] * 7
        assert server.most_open == 2 and server.connections == 2
        assert pool.open_connections <= 2


def test_headers_with_line_breaks_and_other_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        Http1Pool("http://127.0.0.1:9", {"Authorization": "Bearer x\r\nX-Evil: 1"}, connect_timeout=1, read_timeout=1)
    with pytest.raises(ValueError, match="not an http"):
        Http1Pool("ftp://127.0.0.1:9", {}, connect_timeout=1, read_timeout=1)
    https = Http1Pool("https://api.example.com/v1/", {}, connect_timeout=1, read_timeout=1)
    assert (https.host, https.port) == ("api.example.com", 443)


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject, *files],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_verifies_the_servers_certificate(
    self_signed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An https base URL is TLS with the system's verification: a certificate the client trusts (here through
    ``SSL_CERT_FILE``) for the address it dialled is accepted, one it does not trust is refused."""
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = Server(fixed())
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=context)
    base = f"https://127.0.0.1:{listening.sockets[0].getsockname()[1]}/v1"
    try:
        untrusted = Http1Pool(base, {}, connect_timeout=2, read_timeout=2)
        with pytest.raises(ConnectionFailed, match="could not connect"):
            await untrusted.post("/x", b"{}")
        await untrusted.aclose()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusted = Http1Pool(base, {}, connect_timeout=2, read_timeout=2)
        answer = await trusted.post("/x", b"{}")
        assert (answer.status, answer.body) == (200, b'{"ok": true}')
        assert server.requests[-1].line == "POST /v1/x HTTP/1.1"
        await trusted.aclose()
    finally:
        listening.close()
        await listening.wait_closed()
