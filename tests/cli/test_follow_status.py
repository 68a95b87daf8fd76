"""The line under a followed job's events: never ``0/None``, a clock that counts from the job's creation (so it does
not restart when you follow again) and the ETA the gateway estimates."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from app.cli._api._follow import StatusLine, _duration


def test_a_queued_job_shows_no_steps_and_no_none() -> None:
    line = StatusLine({"status": "queued", "created_at": int(time.time()) - 5, "estimated_finish": None})

    text = line.text()

    assert text.startswith("queued · 0:0") and text.endswith("since created")
    assert "None" not in text and "/" not in text


def test_a_running_job_shows_its_step_clock_and_eta() -> None:
    now = int(time.time())
    line = StatusLine({"status": "running", "created_at": now - 125, "estimated_finish": now + 61})
    assert line.text().startswith("running · starting · 2:0")

    line.step, line.total = 3, 12

    text = line.text()
    assert "step 3/12" in text
    assert "2:05 since created" in text or "2:06 since created" in text
    assert "ETA 1:0" in text and time.strftime("%H:%M", time.localtime(now + 61)) in text


@given(st.integers(0, 10 * 86400))
def test_durations_read_as_clock_time(seconds: int) -> None:
    text = _duration(seconds)

    parts = [int(p) for p in text.split(":")]
    assert sum(p * 60**i for i, p in enumerate(reversed(parts))) == seconds
    assert all(p < 60 for p in parts[1:])
