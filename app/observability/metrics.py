"""Every Prometheus metric ftgw exports, named here and nowhere else, and the one-line calls that count them.

Counted as things happen (in this process): request latency by route template, method and status class; inference
latency by the model that answered; tokens in and out by model; rate-limit rejections; fallbacks taken; guard
refusals; adapter loads and evictions per backend. Read when scraped (see :func:`scraped`): the local engine's batch
size and queue depth, and, from the database, jobs and eval runs by status and the workers' leases held.

The request path pays a dict look-up and a histogram observation: label children are bound once per label values
and cached here, so prometheus-client's ``labels()`` (a lock and a tuple check) runs only the first time. Labels
stay bounded: routes are templates (``/v1/files/{file_id}``), never URLs; methods outside HTTP's are "OTHER".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.observability.context import current

CONTENT_TYPE = CONTENT_TYPE_LATEST
# A `_created` series beside every counter and histogram doubles what Prometheus stores, for a timestamp it can
# infer from resets anyway.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Inference answers take seconds; everything else milliseconds. Prometheus' defaults, stretched to two minutes.
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

REQUEST_SECONDS = Histogram(
    "ftgw_http_request_duration_seconds",
    "Time from a request's arrival to its response's last byte (a stream's end), by route template, method and "
    "status class.",
    ["route", "method", "status"],
    buckets=_SECONDS,
)
INFERENCE_SECONDS = Histogram(
    "ftgw_inference_duration_seconds",
    "Time of an inference request (chat, completion, classification) to its response's last byte, by the model "
    "that answered.",
    ["model"],
    buckets=_SECONDS,
)
TOKENS = Counter(
    "ftgw_inference_tokens", "Tokens counted by inference, by model and direction (in, out).", ["model", "direction"]
)
RATE_LIMITED = Counter(
    "ftgw_rate_limit_rejections",
    "Requests refused with 429 by a key's rate limit, by limit (requests, tokens).",
    ["limit"],
)
FALLBACKS = Counter(
    "ftgw_inference_fallbacks",
    "Requests answered by a fallback after their first target failed, by the model that answered.",
    ["model"],
)
GUARD_REFUSALS = Counter(
    "ftgw_guard_refusals", "Answers replaced by a guard's refusal, by guard model.", ["guard_model"]
)
FAST_PATH = Counter(
    "ftgw_inference_fast_path",
    "Chat and text completion calls by how they were taken in: served (a recently verified key and a valid JSON "
    "body, app/inference/fastpath.py) or deferred to the full route (anything else, errors of the request included).",
    ["outcome"],
)
FAST_PATH_SERVED = FAST_PATH.labels("served")
FAST_PATH_DEFERRED = FAST_PATH.labels("deferred")
ADAPTER_LOADS = Counter("ftgw_adapter_loads", "LoRA adapters loaded for serving, by backend.", ["backend"])
ADAPTER_EVICTIONS = Counter("ftgw_adapter_evictions", "LoRA adapters unloaded to make room, by backend.", ["backend"])

# Read when scraped, never counted: their values live elsewhere (the engine, the database).
ENGINE_BATCH_SIZE = "ftgw_engine_batch_size"
ENGINE_QUEUE_DEPTH = "ftgw_engine_queue_depth"
JOBS = "ftgw_fine_tuning_jobs"
EVAL_RUNS = "ftgw_eval_runs"
LEASES_HELD = "ftgw_worker_leases_held"
BACKEND_UP = "ftgw_backend_up"

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_by_route: dict[tuple[str | None, str, int], Histogram] = {}
_by_model: dict[str, Histogram] = {}
_tokens: dict[str, tuple[Counter, Counter]] = {}


# --- counted as it happens ----------------------------------------------------------------------------------------


def observe_request(route: object | None, method: str, status: int, seconds: float, model: str | None) -> None:
    """One finished HTTP request (the middleware's call). ``route`` is the route that matched, if any."""
    if method not in _METHODS:
        method = "OTHER"
    template = getattr(route, "path_format", None)
    key = (template, method, status // 100)
    child = _by_route.get(key)
    if child is None:
        label = template if isinstance(template, str) else "unmatched"
        child = _by_route[key] = REQUEST_SECONDS.labels(label, method, f"{status // 100}xx")
    child.observe(seconds)
    if model is not None:
        by_model = _by_model.get(model)
        if by_model is None:
            by_model = _by_model[model] = INFERENCE_SECONDS.labels(model)
        by_model.observe(seconds)


def answered(model: str, *, fallbacks: int = 0) -> None:
    """Inference of the current request was answered by ``model``, after ``fallbacks`` candidates failed."""
    context = current.get()
    if context is not None:
        context.model = model
    if fallbacks:
        FALLBACKS.labels(model).inc()


def count_tokens(model: str, prompt: int, completion: int) -> None:
    """Tokens ``model`` read and wrote for one request (usage as metered)."""
    children = _tokens.get(model)
    if children is None:
        children = _tokens[model] = (TOKENS.labels(model, "in"), TOKENS.labels(model, "out"))
    if prompt > 0:
        children[0].inc(prompt)
    if completion > 0:
        children[1].inc(completion)


def rate_limited(limit: str) -> None:
    """A request refused by a key's ``limit`` ("requests" or "tokens" per minute)."""
    RATE_LIMITED.labels(limit).inc()


def guard_refused(guard_model: str) -> None:
    GUARD_REFUSALS.labels(guard_model).inc()


def adapter_loaded(backend: str) -> None:
    ADAPTER_LOADS.labels(backend).inc()


def adapter_evicted(backend: str) -> None:
    ADAPTER_EVICTIONS.labels(backend).inc()


# --- read when scraped --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkCount:
    """Rows of one kind of leased work ("fine_tuning_job" or "eval_run") in one status, and how many are leased."""

    kind: str
    status: str
    count: int
    leased: int


@dataclass(frozen=True, slots=True)
class EngineLoad:
    running: int  # sequences in a decode batch now
    waiting: int  # sequences waiting for a place in one


def scraped(
    work: Sequence[WorkCount],
    statuses: Mapping[str, Sequence[str]],
    engine: EngineLoad | None,
    backends: Mapping[str, bool] | None = None,
) -> list[Metric]:
    """The gauges read at scrape time. ``statuses`` lists every status of each kind, so one with no rows reads 0
    instead of vanishing; ``engine`` is None when this process has not started a local engine; ``backends`` says
    whether each inference backend answers (a vLLM fleet: at least one replica)."""
    jobs = GaugeMetricFamily(JOBS, "Fine-tuning jobs by status, across all projects.", labels=["status"])
    runs = GaugeMetricFamily(EVAL_RUNS, "Eval runs by status, across all projects.", labels=["status"])
    leases = GaugeMetricFamily(
        LEASES_HELD, "Unexpired worker leases, by kind of work (across all workers).", labels=["kind"]
    )
    counts = {(w.kind, w.status): w.count for w in work}
    leased: dict[str, int] = dict.fromkeys(statuses, 0)
    for w in work:
        leased[w.kind] = leased.get(w.kind, 0) + w.leased
    for kind, family in (("fine_tuning_job", jobs), ("eval_run", runs)):
        for status in statuses[kind]:
            family.add_metric([status], counts.get((kind, status), 0))
    for kind, held in leased.items():
        leases.add_metric([kind], held)
    load = engine or EngineLoad(0, 0)
    batch = GaugeMetricFamily(ENGINE_BATCH_SIZE, "Sequences in the local engine's decode batches now.")
    batch.add_metric([], load.running)
    queue = GaugeMetricFamily(ENGINE_QUEUE_DEPTH, "Sequences waiting for a place in a local engine batch.")
    queue.add_metric([], load.waiting)
    up = GaugeMetricFamily(
        BACKEND_UP, "Whether each inference backend can answer now (1) or not (0).", labels=["backend"]
    )
    for name, healthy in (backends or {}).items():
        up.add_metric([name], 1 if healthy else 0)
    return [jobs, runs, leases, batch, queue, up]


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def exposition(families: list[Metric]) -> bytes:
    """This process's metrics and ``families`` in Prometheus' text format."""
    return generate_latest(REGISTRY) + generate_latest(_Families(families))
