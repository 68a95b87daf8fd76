"""Loopback stand-ins for the outside world: a DNS that knows only the names a test gives it, and a webhook receiver.

Every test gateway resolves names with :class:`FakeDNS` (tests/conftest.py ``serve``), so no test asks a real DNS
server, and every URL a test delivers to is a :class:`Receiver` on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may still take it before the caller binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeDNS:
    """Names a test maps to addresses (changeable at any time, as DNS answers are); any other name does not exist."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: unknown to this test")
        return self.names[host]


@dataclass
class Receiver:
    """A loopback HTTP server that records webhook calls and answers ``status`` (the first ``fail_first`` with 500)."""

    url: str = ""
    port: int = 0
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    fail_first: int = 0
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def payloads(self) -> list[dict[str, Any]]:
        """Every call's body, parsed."""
        return [json.loads(body) for _, body in self.calls]

    def wait(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < n:
            assert time.monotonic() < deadline, f"{len(self.calls)} of {n} webhook calls arrived"
            time.sleep(0.05)


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A :class:`Receiver` serving on a free loopback port until the block ends."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            state.calls.append((dict(self.headers.items()), body))
            failing = len(state.calls) <= state.fail_first
            self.send_response(500 if failing else state.status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    state.url = f"http://127.0.0.1:{state.port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
