"""Usage: the project's tokens and requests over time, per model and per API key, as charts and totals.

The figures are read server-side through the same usage meter ``GET /v1/usage/completions`` reads (so they include
the requests this process has not written yet) and embedded in the page as JSON for the charts
(``static/usage.js``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.auth.models import ApiKey
from app.auth.service import auth_service
from app.console.web import ConsoleDep, ConsoleRoute, render
from app.db import SessionDep
from app.kit.pagination import Order
from app.kit.time import from_unix, utcnow
from app.usage.schemas import UsagePage
from app.usage.service import BUCKETS, UsageMeter

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

Period = Literal["24h", "7d", "30d"]


@dataclass(frozen=True, slots=True)
class PeriodSpec:
    label: str
    bucket_width: Literal["1h", "1d"]
    buckets: int


PERIODS: dict[str, PeriodSpec] = {
    "24h": PeriodSpec("Last 24 hours", "1h", 24),
    "7d": PeriodSpec("Last 7 days", "1d", 7),
    "30d": PeriodSpec("Last 30 days", "1d", 30),
}
KEYS_NAMED = 100  # keys beyond the project's first hundred are shown by id


@dataclass
class Series:
    """One model's or one key's figures: per bucket, and over the period."""

    id: str
    label: str
    requests: list[int]
    input_tokens: list[int]
    output_tokens: list[int]

    @classmethod
    def empty(cls, id_: str, label: str, size: int) -> Series:
        return cls(id_, label, [0] * size, [0] * size, [0] * size)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "totals": {
                "requests": sum(self.requests),
                "input_tokens": sum(self.input_tokens),
                "output_tokens": sum(self.output_tokens),
            },
        }


@dataclass
class Charts:
    starts: list[int]
    models: dict[str, Series] = field(default_factory=dict)
    keys: dict[str, Series] = field(default_factory=dict)


def charts(page: UsagePage, key_labels: dict[str, str]) -> Charts:
    """A usage page grouped by model and key, as one series per model and one per key (each over every bucket)."""
    found = Charts([bucket.start_time for bucket in page.data])
    size = len(found.starts)
    for i, bucket in enumerate(page.data):
        for result in bucket.results:
            model, key = result.model or "—", result.api_key_id or "—"
            for series in (
                found.models.setdefault(model, Series.empty(model, model, size)),
                found.keys.setdefault(key, Series.empty(key, key_labels.get(key, key), size)),
            ):
                series.requests[i] += result.num_model_requests
                series.input_tokens[i] += result.input_tokens
                series.output_tokens[i] += result.output_tokens
    return found


def _key_label(key: ApiKey) -> str:
    revoked = " (revoked)" if key.revoked_at is not None else ""
    return f"{key.name} · {key.redacted_value}{revoked}"


def _by_tokens(series: dict[str, Series]) -> list[dict[str, Any]]:
    rows = [s.as_dict() for s in series.values()]
    return sorted(rows, key=lambda r: (-(r["totals"]["input_tokens"] + r["totals"]["output_tokens"]), r["label"]))


@router.get("/usage", response_class=HTMLResponse)
async def usage(
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    period: Annotated[Period, Query()] = "24h",
) -> HTMLResponse:
    spec = PERIODS[period]
    width = BUCKETS[spec.bucket_width]
    # Whole buckets, the current one last: the period ends where the current bucket does.
    current = int(utcnow().timestamp()) // width * width
    start, end = current - (spec.buckets - 1) * width, current + width
    meter: UsageMeter = request.app.state.usage
    page = await meter.read(
        session,
        console.project_id,
        start=from_unix(start),
        end=from_unix(end),
        bucket_width=spec.bucket_width,
        group_by=["model", "api_key_id"],
    )
    keys = await auth_service.list_keys(session, console.project_id, limit=KEYS_NAMED, order=Order.asc, after=None)
    found = charts(page, {key.id: _key_label(key) for key in keys.items})
    models, by_key = _by_tokens(found.models), _by_tokens(found.keys)
    totals = {name: sum(m["totals"][name] for m in models) for name in ("requests", "input_tokens", "output_tokens")}
    data = {
        "period": period,
        "bucket_width": spec.bucket_width,
        "start_time": start,
        "end_time": end,
        "starts": found.starts,
        "models": models,
        "keys": by_key,
        "totals": totals,
    }
    return render(
        request,
        "usage.html",
        console=console,
        active="usage",
        title="Usage",
        period=period,
        periods=PERIODS,
        spec=spec,
        data=data,
        models=models,
        keys=by_key,
        totals=totals,
    )
