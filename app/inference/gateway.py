"""Serving one inference request end to end: limits, route, guard, the call with fallbacks, usage.

Nothing here waits on the database: keys, routes and models come from in-memory caches (see
``app.registry.routing``), limits are counted in memory (or in Redis, shared by every replica), and usage is
written in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from app.auth.principal import Principal
from app.errors import BadGateway, ServiceUnavailable
from app.inference.answer import Answer, Tally, answer_texts, include_usage, now, response_id
from app.inference.backends import Backend, Backends
from app.inference.classify import classify, labels_for
from app.inference.schemas import (
    ChatCompletionRequest,
    ClassificationRequest,
    ClassificationResponse,
    ClassificationResult,
    CompletionRequest,
    Usage,
)
from app.inference.upstream import UpstreamFailure
from app.kit.tasks import all_or_none
from app.observability import metrics
from app.registry.routing import Endpoint, ModelCatalog, Plan
from app.registry.schemas import Guard
from app.usage.limits import Limiter
from app.usage.service import UsageMeter

Request = ChatCompletionRequest | CompletionRequest
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Served:
    answer: Answer
    plan: Plan
    failed: int  # candidates that failed before the one that answered

    def headers(self) -> dict[str, str]:
        headers = {"x-ftgw-model": self.answer.endpoint.model, "x-ftgw-fallbacks": str(self.failed)}
        if self.plan.alias is not None:
            headers["x-ftgw-alias"] = self.plan.alias
            headers["x-ftgw-alias-version"] = str(self.plan.version)
        if self.answer.guard is not None:
            headers["x-ftgw-guard"] = self.answer.guard
        return headers


class InFlight:
    """The inference calls this process has accepted and not yet answered (an answer streamed counts as answered
    once its first chunk is ready), each counted while it is inside ``with in_flight.call():``, and how many of
    them are still being routed: not yet handed to a backend (:meth:`dispatched`). The local engine reads the
    latter (:class:`app.providers.local.engine.Traffic`): a call that wakes it while none is on its way does not
    wait for a burst, and a burst is whole once none is."""

    def __init__(self) -> None:
        self._calls = 0
        self._routing = 0

    @contextmanager
    def call(self) -> Iterator[None]:
        """Count one call while the block runs (the tasks it starts belong to it too)."""
        state = _Call()
        self._calls += 1
        self._routing += 1
        token = _CALL.set(state)
        try:
            yield
        finally:
            _CALL.reset(token)
            self._calls -= 1
            if not state.dispatched:
                self._routing -= 1

    def dispatched(self) -> None:
        """The current call is being handed to a backend: it is no longer on its way (the first time counts)."""
        state = _CALL.get()
        if state is not None and not state.dispatched:
            state.dispatched = True
            self._routing -= 1

    def calls(self) -> int:
        return self._calls

    def routing(self) -> int:
        return self._routing


@dataclass(slots=True)
class _Call:
    dispatched: bool = False


_CALL: ContextVar[_Call | None] = ContextVar("ftgw_inference_call", default=None)


class InferenceGateway:
    def __init__(
        self,
        catalog: ModelCatalog,
        backends: Backends,
        meter: UsageMeter,
        limiter: Limiter,
        in_flight: InFlight | None = None,
    ) -> None:
        self.catalog = catalog
        self.backends = backends
        self.meter = meter
        self.limiter = limiter
        self.in_flight = in_flight or InFlight()
        self._upkeep: set[asyncio.Task[None]] = set()  # warming and forgetting models, in the background

    async def serve(self, principal: Principal, body: Request, sticky: str | None) -> Served:
        with self.in_flight.call():
            await self.limiter.check(principal)
            plan = await self.catalog.plan(principal.project_id, body.model, sticky or body.user)
            if plan.guard is not None:
                refusal = await self._guard_input(principal, plan, body)
                if refusal is not None:
                    return Served(refusal, plan, 0)
            check_output = plan.guard is not None and plan.guard.check_output
            # An answer the guard must read first is generated whole, even for a caller that streams: nothing of it
            # may reach the caller before the guard has passed it.
            call = body.model_copy(update={"stream": False, "stream_options": None}) if check_output else body
            answer, failed = await self._first_that_answers(plan, call)
            metrics.answered(answer.endpoint.model, fallbacks=failed)
            if plan.guard is not None:
                answer.guard = "passed"
            if check_output:
                answer = await self._guard_output(principal, plan, body, answer)
            if answer.events is not None:
                answer.events = self._metered(principal, answer.endpoint, answer.tally, answer.events)
            else:
                self._meter(principal, answer.endpoint, answer.tally)
            return Served(answer, plan, failed)

    async def classify(
        self, principal: Principal, body: ClassificationRequest, sticky: str | None
    ) -> ClassificationResponse:
        """Label probabilities for each input from a classifier (a model or an alias's chosen target)."""
        with self.in_flight.call():
            await self.limiter.check(principal)
            plan = await self.catalog.plan(principal.project_id, body.model, sticky)
            endpoint = next((e for e in plan.candidates if e is not None), None)
            if endpoint is None:
                raise BadGateway(f"No model of '{body.model}' exists any more.", param="model")
            labels = labels_for(endpoint, body.labels)
            metrics.answered(endpoint.model)
            backend = self._backend(endpoint)
            texts = [body.input] if isinstance(body.input, str) else body.input
            try:
                # Every input at once: the local engine prefills a batch of short prompts in one pass.
                verdicts = await all_or_none([classify(backend, endpoint, text, labels) for text in texts])
            except UpstreamFailure as exc:
                raise BadGateway(f"'{endpoint.model}' did not answer: {exc}", param="model") from None
            results = [
                ClassificationResult(index=i, label=v.label, probabilities=v.probabilities, coverage=v.coverage)
                for i, v in enumerate(verdicts)
            ]
            tally = Tally(prompt_tokens=sum(v.prompt_tokens for v in verdicts))
            self._meter(principal, endpoint, tally)
            return ClassificationResponse(model=endpoint.model, data=results, usage=Usage(**tally.usage()))

    # --- calling -------------------------------------------------------------------------------------------------

    async def _first_that_answers(self, plan: Plan, body: Request) -> tuple[Answer, int]:
        problems: list[str] = []
        for endpoint, name in zip(plan.candidates, plan.names, strict=True):
            if endpoint is None:
                problems.append(f"{name}: deleted")
                continue
            try:
                return await self._call(endpoint, body), len(problems)
            except UpstreamFailure as exc:
                problems.append(f"{name}: {exc}")
        raise BadGateway(f"No model of '{body.model}' answered ({'; '.join(problems)}).", param="model")

    def _backend(self, endpoint: Endpoint) -> Backend:
        """The backend that answers ``endpoint``, the current call handed to it."""
        self.in_flight.dispatched()
        return self.backends.get(endpoint.backend)

    async def _call(self, endpoint: Endpoint, body: Request) -> Answer:
        backend = self._backend(endpoint)
        if isinstance(body, ChatCompletionRequest):
            return await backend.chat(endpoint, body)
        return await backend.completion(endpoint, body)

    # --- models coming and going ----------------------------------------------------------------------------------

    def warm(self, provider: str, base_model: str, artifact: str | None, model: str | None) -> None:
        """A model about to be asked for (a job's base model as it starts, its fine-tune ``model`` as it
        succeeds): its backend loads it in the background."""
        endpoint = self.catalog.address(provider, base_model, artifact, model)
        self._background(self.backends.get(endpoint.backend).warm(endpoint))

    def forget(self, provider: str, base_model: str, artifact: str, model: str) -> None:
        """The fine-tuned ``model`` was deleted: its backend frees what it loaded for it, in the background."""
        endpoint = self.catalog.address(provider, base_model, artifact, model)
        self._background(self.backends.get(endpoint.backend).forget(endpoint))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="ftgw-backend-upkeep")
        self._upkeep.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._upkeep.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("loading or unloading a model failed: %s", task.exception())

    # --- guards --------------------------------------------------------------------------------------------------

    async def _allowed(self, plan: Plan, text: str) -> tuple[bool, int]:
        guard, endpoint = plan.guard, plan.guard_endpoint
        assert guard is not None
        if endpoint is None:
            # Fail closed: a guarded alias never answers unguarded.
            raise ServiceUnavailable(
                f"The guard model '{guard.model}' of '{plan.alias}' no longer exists.", code="guard_unavailable"
            )
        labels = _guard_labels(guard, endpoint)
        try:
            found = await classify(self._backend(endpoint), endpoint, text, labels)
        except UpstreamFailure as exc:
            raise ServiceUnavailable(f"The guard model did not answer: {exc}", code="guard_unavailable") from None
        allowed = sum(p for label, p in found.probabilities.items() if label in guard.allowed_labels)
        return allowed >= guard.min_probability, found.prompt_tokens

    async def _guard_input(self, principal: Principal, plan: Plan, body: Request) -> Answer | None:
        passed, tokens = await self._allowed(plan, _input_text(body))
        guard_endpoint = plan.guard_endpoint
        assert guard_endpoint is not None and plan.guard is not None
        self._meter(principal, guard_endpoint, Tally(prompt_tokens=tokens))
        if passed:
            return None
        return refusal(guard_endpoint, body, plan.guard.refusal)

    async def _guard_output(self, principal: Principal, plan: Plan, body: Request, answer: Answer) -> Answer:
        """Classify the whole ``answer``; the caller gets it (replayed as a stream if it asked for one) or the
        refusal."""
        assert answer.body is not None and plan.guard is not None and plan.guard_endpoint is not None
        texts = answer_texts(answer.body)
        passed, tokens = await self._allowed(plan, texts[0] if texts else "")
        self._meter(principal, plan.guard_endpoint, Tally(prompt_tokens=tokens))
        if not passed:
            self._meter(principal, answer.endpoint, answer.tally)  # the refused answer was still generated
            return refusal(plan.guard_endpoint, body, plan.guard.refusal, tally=answer.tally)
        if body.stream:
            answer.events = replayed(answer.body, with_usage=include_usage(body))
            answer.body = None
        return answer

    # --- usage ---------------------------------------------------------------------------------------------------

    def _meter(self, principal: Principal, endpoint: Endpoint, tally: Tally) -> None:
        self.meter.record(principal, endpoint.model, tally.prompt_tokens, tally.completion_tokens)
        metrics.count_tokens(endpoint.model, tally.prompt_tokens, tally.completion_tokens)
        self.limiter.spend(principal, tally.prompt_tokens + tally.completion_tokens)

    async def _metered(
        self, principal: Principal, endpoint: Endpoint, tally: Tally, events: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            async for event in events:
                yield event
        finally:
            self._meter(principal, endpoint, tally)


def _guard_labels(guard: Guard, endpoint: Endpoint) -> list[str]:
    fmt = endpoint.prompt_format
    if fmt is not None and fmt.labels:
        return fmt.labels
    return labels_for(endpoint, guard.allowed_labels)


def _input_text(body: Request) -> str:
    if isinstance(body, ChatCompletionRequest):
        users = [m.text() for m in body.messages if m.role == "user"]
        return users[-1] if users else body.messages[-1].text()
    return "\n".join(body.prompts())


def refusal(endpoint: Endpoint, body: Request, text: str, tally: Tally | None = None) -> Answer:
    """The configured refusal, shaped as the caller's kind of response (a stream when it asked for one)."""
    answer = Answer(endpoint, guard="refused")
    metrics.guard_refused(endpoint.model)
    choices = body.n * (len(body.prompts()) if isinstance(body, CompletionRequest) else 1)
    chat = isinstance(body, ChatCompletionRequest)
    whole: dict[str, Any] = {
        "id": response_id("chatcmpl" if chat else "cmpl"),
        "object": "chat.completion" if chat else "text_completion",
        "created": now(),
        "model": endpoint.model,
        "choices": [
            {
                "index": i,
                **({"message": {"role": "assistant", "content": text, "refusal": None}} if chat else {"text": text}),
                "finish_reason": "content_filter",  # OpenAI's reason for an answer its filter replaced
                "logprobs": None,
            }
            for i in range(choices)
        ],
        "usage": (tally or Tally()).usage(),
    }
    if body.stream:
        answer.events = replayed(whole, with_usage=include_usage(body))
    else:
        answer.body = whole
    return answer


async def replayed(whole: dict[str, Any], *, with_usage: bool) -> AsyncIterator[dict[str, Any]]:
    """A whole chat completion or completion as the chunks a stream of it would have sent: each choice's text
    (and logprobs) in one chunk, its finish reason, then the usage when the caller asked for it."""
    chat = whole["object"] == "chat.completion"
    base = {k: whole[k] for k in ("id", "created", "model")} | {
        "object": "chat.completion.chunk" if chat else "text_completion"
    }
    for choice in whole["choices"]:
        if chat:
            message = choice["message"]
            delta = {"role": "assistant", "content": message.get("content") or ""}
            opening = {"index": choice["index"], "delta": delta, "logprobs": choice.get("logprobs")}
            yield {**base, "choices": [{**opening, "finish_reason": None}]}
            yield {
                **base,
                "choices": [{"index": choice["index"], "delta": {}, "finish_reason": choice["finish_reason"]}],
            }
        else:
            yield {**base, "choices": [choice]}
    if with_usage:
        yield {**base, "choices": [], "usage": whole.get("usage")}
