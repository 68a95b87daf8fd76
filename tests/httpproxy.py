"""A forwarding HTTP proxy for tests: it can answer 503 or stall, to exercise retries, timeouts and fallbacks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass
class Proxy:
    """Forwards to the upstream gateway; ``fail`` answers the next N requests with 503, ``stall`` sleeps first;
    ``fail_matching`` answers 503 to every request whose path holds it (until unset)."""

    target: str
    url: str = ""
    fail: int = 0
    fail_matching: str | None = None
    stall: int = 0
    stall_seconds: float = 3.0
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, path: str = "") -> str | None:
        with self.lock:
            if self.fail_matching is not None and self.fail_matching in path:
                return "fail"
            if self.fail > 0:
                self.fail -= 1
                return "fail"
            if self.stall > 0:
                self.stall -= 1
                return "stall"
        return None


@contextmanager
def proxies() -> Iterator[Callable[[str], Proxy]]:
    """Start proxies to targets; all are shut down on exit."""
    servers: list[ThreadingHTTPServer] = []

    def start(target: str) -> Proxy:
        proxy = Proxy(target=target)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                proxy.seen.append(f"{self.command} {self.path}")
                action = proxy.take(self.path)
                if action == "fail":
                    payload = (
                        b'{"error": {"message": "upstream busy", "type": "server_error", "param": null, "code": null}}'
                    )
                    self.send_response(503)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if action == "stall":
                    time.sleep(proxy.stall_seconds)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}}
                response = httpx.request(
                    self.command, proxy.target + self.path, content=body, headers=headers, timeout=60
                )
                self.send_response(response.status_code)
                for key, value in response.headers.items():
                    if key.lower() not in {"content-length", "transfer-encoding", "connection", "content-encoding"}:
                        self.send_header(key, value)
                self.send_header("content-length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
        return proxy

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
