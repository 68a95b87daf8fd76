"""The vLLM backend: a fleet of vLLM replicas serving a local base model, with ftgw's LoRA adapters loaded at runtime.

vLLM serves many LoRA adapters over one base model (``--enable-lora``) and, with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``, takes new ones while it runs (``POST /v1/load_lora_adapter``). ftgw
trains the adapters, so this backend publishes them: a fine-tune's first request loads its adapter on a replica
(from the path the replica sees ftgw's data folder at), and later requests go to a replica that already holds it
(adapter affinity), the least busy of those, else the least busy healthy replica, which loads it.

Each replica keeps at most ``max_loras`` adapters; loading one more unloads the least recently used that no
request is using. Bookkeeping is per ftgw process: another process sharing the fleet may load or unload behind
its back, which is why "already loaded" counts as loaded, and a request naming an adapter the replica no longer
has (404: it restarted, or another process unloaded it) reloads it there and retries once. A replica that does
not answer is skipped for ``cooldown_seconds`` and its adapters are presumed gone (a restarted vLLM has none);
the request tries the next replica, and when none answers the route falls back like any provider's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from app.config import UpstreamProviderConfig, VllmConfig
from app.inference import remote
from app.inference.answer import Answer, Tally
from app.inference.backends import FirstToken, Health
from app.inference.backends.upstream import first_token
from app.inference.schemas import ChatCompletionRequest, CompletionRequest, Sampling
from app.inference.upstream import UpstreamClient, UpstreamFailure
from app.observability import metrics
from app.observability.metrics import EngineLoad
from app.registry.routing import Endpoint

log = logging.getLogger(__name__)
T = TypeVar("T")

VLLM_LOGPROBS = 20  # vLLM's default --max-logprobs
NOT_LOADED = 404  # vLLM's answer to a request naming a model (adapter) it does not have
HEALTH_TIMEOUT = aiohttp.ClientTimeout(total=2.0)


class Replica:
    """One vLLM server: its client, the adapters it holds (least recently used first) and its requests."""

    def __init__(self, fleet: VllmConfig, index: int, url: str) -> None:
        self.url = url.rstrip("/")
        self.client = UpstreamClient(
            UpstreamProviderConfig(
                name=f"{fleet.name}-{index}",
                base_url=self.url,
                api_key_env=fleet.api_key_env or "FTGW_VLLM_NO_KEY",
                models={},
                timeout_seconds=fleet.timeout_seconds,
                max_retries=fleet.max_retries,
                retry_backoff_seconds=fleet.retry_backoff_seconds,
                cooldown_after_failures=1,
                cooldown_seconds=fleet.cooldown_seconds,
            )
        )
        self.adapters: OrderedDict[str, int] = OrderedDict()  # adapter name -> requests using it now
        self.loading: dict[str, asyncio.Future[None]] = {}
        self.in_flight = 0

    @property
    def name(self) -> str:
        return self.client.name

    @property
    def up(self) -> bool:
        return not self.client.cooling

    def lost(self) -> None:
        """The replica failed: whatever it held may be gone (a restart loses every runtime-loaded adapter)."""
        self.adapters.clear()


class VllmBackend:
    def __init__(self, config: VllmConfig, *, data_dir: Path, default_max_tokens: int) -> None:
        self.name = config.name
        self.default_max_tokens = default_max_tokens
        self.config = config
        self.data_dir = data_dir
        self.base_name = config.served_model_name or config.base_model
        self.replicas = [Replica(config, i, url) for i, url in enumerate(config.urls)]

    # --- the interface -------------------------------------------------------------------------------------------

    async def chat(self, endpoint: Endpoint, body: ChatCompletionRequest) -> Answer:
        if body.max_tokens is None and body.max_completion_tokens is None:
            # As on the local engine: an unbounded chat completion stops at FTGW_DEFAULT_MAX_TOKENS.
            body = body.model_copy(update={"max_completion_tokens": self.default_max_tokens})
        return await self._answer(endpoint, "/chat/completions", body)

    async def completion(self, endpoint: Endpoint, body: CompletionRequest) -> Answer:
        return await self._answer(endpoint, "/completions", body)

    async def first_token(self, endpoint: Endpoint, prompt: str) -> FirstToken:
        async def ask(replica: Replica, model: str) -> FirstToken:
            return await first_token(replica.client, model, prompt, VLLM_LOGPROBS)

        return await self._on_a_replica(endpoint, ask)

    async def warm(self, endpoint: Endpoint) -> None:
        if endpoint.adapter is None:
            return
        replica = self._pick(endpoint.model, set())
        if replica is not None:
            await self._ensure_loaded(replica, endpoint)

    async def forget(self, endpoint: Endpoint) -> None:
        # Every replica, not only those this process loaded it on: another process sharing the fleet may have, and
        # a replica that still lists the adapter when its folder is purged dies on its next load of it.
        for replica in self.replicas:
            replica.adapters.pop(endpoint.model, None)
            await self._unload(replica, endpoint.model)

    async def health(self) -> Health:
        answers = await asyncio.gather(*(self._healthy(r) for r in self.replicas))
        up = sum(answers)
        return Health(up > 0, f"{up}/{len(self.replicas)} replicas healthy")

    def load(self) -> EngineLoad | None:
        return None  # the replicas report their own (vLLM's /metrics)

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.client.aclose()

    # --- routing -------------------------------------------------------------------------------------------------

    def _model(self, endpoint: Endpoint) -> str:
        """What the replicas call the endpoint: its adapter's name (our model id), or the served base model."""
        return endpoint.model if endpoint.adapter is not None else self.base_name

    def _pick(self, model: str, tried: set[str]) -> Replica | None:
        """A healthy replica not yet tried: the least busy of those that hold ``model``, else of all (and of
        equally busy ones, the one holding fewest adapters, so that adapters spread over the fleet)."""
        healthy = [r for r in self.replicas if r.up and r.name not in tried]
        holding = [r for r in healthy if model in r.adapters]
        if holding:
            return min(holding, key=lambda r: r.in_flight)
        return min(healthy, key=lambda r: (r.in_flight, len(r.adapters))) if healthy else None

    async def _on_a_replica(self, endpoint: Endpoint, call: Callable[[Replica, str], Awaitable[T]]) -> T:
        """``call(replica, model)`` on the best replica; on another when it fails, until none is left."""
        model = self._model(endpoint)
        tried: set[str] = set()
        problems: list[str] = []
        while (replica := self._pick(model, tried)) is not None:
            tried.add(replica.name)
            replica.in_flight += 1
            try:
                if endpoint.adapter is None:
                    return await call(replica, model)
                await self._ensure_loaded(replica, endpoint)
                self._use(replica, model, +1)  # not evicted while this request runs
                try:
                    return await call(replica, model)
                except UpstreamFailure as exc:
                    if exc.status != NOT_LOADED:
                        raise
                    # The replica lost the adapter (a restart, or another ftgw process unloaded it): reload, retry.
                    replica.client.recovered()
                    replica.adapters.pop(model, None)
                    await self._ensure_loaded(replica, endpoint)
                    return await call(replica, model)
                finally:
                    self._use(replica, model, -1)
            except UpstreamFailure as exc:
                if exc.status is None:  # it did not answer at all: it may have restarted, losing its adapters
                    replica.lost()
                problems.append(str(exc))
            finally:
                replica.in_flight -= 1
        raise UpstreamFailure(self.name, "; ".join(problems) or "no replica is healthy")

    async def _answer(self, endpoint: Endpoint, path: str, body: Sampling) -> Answer:
        copies = body.n if body.n > 1 and body.temperature == 0 else 1
        if copies > 1:
            # vLLM refuses n > 1 at temperature 0 ("n must be 1 when using greedy sampling"); OpenAI and our engine
            # answer n identical choices. One greedy choice is asked for and copied.
            body = body.model_copy(update={"n": 1})

        async def ask(replica: Replica, model: str) -> Answer:
            served = dataclasses.replace(endpoint, upstream_model=model)
            answer = await remote.forward(replica.client, served, path, body)
            if answer.events is not None:
                answer.events = self._held(replica, model, _copied_events(answer.events, copies, answer.tally))
            elif answer.body is not None and copies > 1:
                _copy_choices(answer.body, copies)
                answer.tally.completion_tokens *= copies
            return answer

        return await self._on_a_replica(endpoint, ask)

    async def _held(
        self, replica: Replica, model: str, events: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[dict[str, Any]]:
        """A stream counts as the replica's work (and keeps its adapter from eviction) until it ends."""
        replica.in_flight += 1
        self._use(replica, model, +1)
        try:
            async for event in events:
                yield event
        finally:
            replica.in_flight -= 1
            self._use(replica, model, -1)

    def _use(self, replica: Replica, model: str, delta: int) -> None:
        if model in replica.adapters:
            replica.adapters[model] = max(replica.adapters[model] + delta, 0)

    # --- adapters ------------------------------------------------------------------------------------------------

    def _adapter_path(self, adapter: Path) -> str:
        if self.config.adapter_root is None:
            return str(adapter)
        relative = adapter.resolve().relative_to(self.data_dir)
        return f"{self.config.adapter_root.rstrip('/')}/{relative.as_posix()}"

    async def _ensure_loaded(self, replica: Replica, endpoint: Endpoint) -> None:
        model = endpoint.model
        if model in replica.adapters:
            replica.adapters.move_to_end(model)
            return
        pending = replica.loading.get(model)
        if pending is not None:
            await asyncio.shield(pending)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        replica.loading[model] = done
        try:
            await self._make_room(replica)
            assert endpoint.adapter is not None
            await self._admin(
                replica, "/load_lora_adapter", {"lora_name": model, "lora_path": self._adapter_path(endpoint.adapter)}
            )
            replica.adapters[model] = 0
            metrics.adapter_loaded(self.name)
            done.set_result(None)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # retrieved here: a waiter re-raises it, nobody else needs to
            raise
        finally:
            replica.loading.pop(model, None)

    async def _make_room(self, replica: Replica) -> None:
        while len(replica.adapters) >= self.config.max_loras:
            idle = next((name for name, users in replica.adapters.items() if users == 0), None)
            if idle is None:
                log.warning("%s: every adapter is in use; loading one more than max_loras", replica.name)
                return
            del replica.adapters[idle]
            await self._unload(replica, idle)
            metrics.adapter_evicted(self.name)

    async def _unload(self, replica: Replica, model: str) -> None:
        try:
            await self._admin(replica, "/unload_lora_adapter", {"lora_name": model})
        except UpstreamFailure as exc:
            log.warning("unloading %s from %s failed: %s", model, replica.name, exc)

    async def _admin(self, replica: Replica, path: str, payload: dict[str, Any]) -> None:
        """vLLM's LoRA management calls answer in plain text; "already loaded" and "not found" count as done."""
        try:
            async with replica.client.session().post(replica.url + path, json=payload) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamFailure(replica.name, f"unreachable ({type(exc).__name__})") from None
        if status < 300:
            return
        lowered = text.lower()
        if "already" in lowered or ("unload" in path and ("not found" in lowered or status == NOT_LOADED)):
            return
        raise UpstreamFailure(replica.name, f"{path} answered HTTP {status}: {text[:200]}", status)

    async def _healthy(self, replica: Replica) -> bool:
        root = replica.url.removesuffix("/v1")
        try:
            async with replica.client.session().get(root + "/health", timeout=HEALTH_TIMEOUT) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False


def _copies(choice: dict[str, Any], copies: int) -> list[dict[str, Any]]:
    """Choice ``index`` of a one-choice-per-prompt answer as the ``copies`` choices OpenAI numbers ``index * n + i``."""
    first = int(choice.get("index") or 0) * copies
    return [{**choice, "index": first + i} for i in range(copies)]


def _copy_choices(body: dict[str, Any], copies: int) -> None:
    body["choices"] = [copy for choice in body.get("choices") or [] for copy in _copies(choice, copies)]
    usage = body.get("usage")
    if isinstance(usage, dict) and "completion_tokens" in usage:
        usage["completion_tokens"] = int(usage["completion_tokens"]) * copies
        usage["total_tokens"] = int(usage.get("prompt_tokens") or 0) + usage["completion_tokens"]


async def _copied_events(
    events: AsyncIterator[dict[str, Any]], copies: int, tally: Tally
) -> AsyncIterator[dict[str, Any]]:
    async for event in events:
        if copies > 1:
            _copy_choices(event, copies)
        yield event
    tally.completion_tokens *= copies  # counted by the relay (``remote``) from the one choice generated
