"""Following a job live: the last few events, then new ones as they come, a status line with the step, the
time since the job was created (so it does not restart when you follow again) and the ETA the gateway estimates."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from app.cli._client import decode
from app.cli._errors import UNREACHABLE, CliError
from app.cli._output import echo, note

if TYPE_CHECKING:
    from app.cli._client import Gateway

BACKLOG = 5  # events shown from before following started
RECONNECT_SECONDS = 60  # a dropped stream is resumed this long, losing and repeating nothing
JOB_REFRESH_SECONDS = 5
TERMINAL = {"succeeded", "failed", "cancelled"}


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class StatusLine:
    """The live line under the events: rendered anew on every refresh, so the clock ticks by itself."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.step: int | None = None
        self.total: int | None = None

    def text(self) -> str:
        status = self.job["status"]
        if self.total:
            steps = f"step {self.step or 0}/{self.total}"
        elif status == "running":
            steps = "starting"
        else:
            steps = ""
        parts = [status, steps, f"{_duration(time.time() - self.job['created_at'])} since created"]
        finish = self.job.get("estimated_finish")
        if finish and status == "running":
            parts.append(f"ETA {_duration(finish - time.time())} ({time.strftime('%H:%M', time.localtime(finish))})")
        return " · ".join(p for p in parts if p)

    def __rich__(self) -> str:
        return self.text()


def _print_event(event: dict[str, Any]) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["created_at"]))
    echo(f"[{stamp}] {event['message']}")


def follow(gw: Gateway, job_id: str) -> dict[str, Any]:
    """Print the job's latest events, then each new one until the job ends; return the job as it ended."""
    from rich.live import Live

    from app.cli._output import err_console

    path = f"/v1/fine_tuning/jobs/{job_id}"
    job: dict[str, Any] = gw.get(path)
    page = gw.get(f"{path}/events", limit=BACKLOG)
    if page.get("has_more"):
        note(f"… earlier events: ftgw fine-tunes events -i {job_id}")
    line = StatusLine(job)
    for event in reversed(page["data"]):
        _note_metrics(line, event)
        _print_event(event)
    last_id: str | None = page["data"][0]["id"] if page["data"] else None
    if job["status"] in TERMINAL:
        return job
    refreshed = time.monotonic()
    with Live(line, console=err_console(), refresh_per_second=2, transient=True):
        dropped: float | None = None
        while True:
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
            try:
                with gw.stream("GET", f"{path}/events", params={"stream": "true"}, headers=headers) as response:
                    dropped = None
                    for event_id, data in gw.events(response):
                        if data == "[DONE]":
                            ended: dict[str, Any] = gw.get(path)
                            return ended
                        last_id = event_id or last_id
                        event = decode(data)
                        _note_metrics(line, event)
                        _print_event(event)
                        if time.monotonic() - refreshed > JOB_REFRESH_SECONDS or event.get("type") != "metrics":
                            line.job = gw.get(path)
                            refreshed = time.monotonic()
            except CliError as exc:
                if exc.exit_code != UNREACHABLE:
                    raise
                dropped = dropped or time.monotonic()
                if time.monotonic() - dropped > RECONNECT_SECONDS:
                    raise
                time.sleep(1)


def _note_metrics(line: StatusLine, event: dict[str, Any]) -> None:
    data = event.get("data") or {}
    if event.get("type") == "metrics" and "step" in data:
        line.step = data["step"]
        line.total = data.get("total_steps") or line.total
