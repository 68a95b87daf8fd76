"""How fast the console's pages render with 1,000 jobs and 10,000 events in the database, and how soon a job page's
live curve shows a new metrics event.

It starts ``ftgw serve`` (no worker) on a fresh SQLite database (``--database postgresql`` for a fresh PostgreSQL
one), seeds 1,000 jobs and 10,000 events in its project (one job holds 5,000 metrics events: the heaviest job page),
signs in like a browser and, back to back in one run:
- fetches each page N times over HTTP: the server's time to the full HTML (p50, p95);
- fetches the anchor N times: the API's own JSON for the jobs list (``GET /v1/fine_tuning/jobs?limit=25``), the
  cheapest read of the same data, and prints each page's ratio to it;
- loads each page in headless Chromium (Debian's, as the tests use) and reads the browser's navigation timing:
  first contentful paint and DOMContentLoaded (the issue's "first render", target < 300 ms);
- appends metrics events to a running job while its page is open and times each until the chart has drawn it
  (target < 1 s).

    .venv/bin/python bench/console_render.py [--requests 30] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import create_engine, func, insert, select, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.auth.models import Project
from app.db import sync_url
from app.fine_tuning.models import EventLevel, EventType, FineTuningJob, JobEvent, JobStatus
from app.kit.ids import new_id
from app.kit.time import utcnow
from bench.servers import served_gateway

JOBS = 1_000
EVENTS = 10_000
HEAVY_JOB_EVENTS = 5_000
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def seed(database_url: str) -> tuple[str, str]:
    """1,000 jobs and 10,000 events in the default project; returns (heavy job id, a running job id)."""
    rng = random.Random(7)
    engine = create_engine(sync_url(database_url))
    now = utcnow()
    statuses = [JobStatus.succeeded] * 6 + [JobStatus.failed, JobStatus.cancelled, JobStatus.queued, JobStatus.running]
    with engine.begin() as db:
        project_id = db.execute(select(Project.id).where(Project.name == "default")).scalar_one()
        jobs, ids = [], []
        for i in range(JOBS):
            job_id = new_id("ftjob")
            ids.append(job_id)
            status = JobStatus.running if i in (0, 1) else rng.choice(statuses)
            jobs.append(
                {
                    "id": job_id, "project_id": project_id, "model": "tiny-smollm2", "base_model": "tiny-smollm2",
                    "parent_model": None, "provider": "local", "training_file": new_id("file"),
                    "validation_file": None, "method": {"type": "supervised"},
                    "hyperparameters": {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 1.0},
                    "classification": None, "seed": i, "suffix": f"bench-{i}",
                    "job_metadata": {"team": rng.choice(["support", "search", "ops"])}, "status": status,
                    "error": None, "fine_tuned_model": None, "trained_tokens": None, "result_files": [],
                    "created_at": now - timedelta(minutes=JOBS - i), "attempts": 0, "event_seq": 0,
                }
            )  # fmt: skip
        db.execute(insert(FineTuningJob), jobs)
        events, seqs = [], dict.fromkeys(ids, 0)
        heavy = ids[0]
        for n in range(EVENTS):
            job_id = heavy if n < HEAVY_JOB_EVENTS else ids[1 + (n % (JOBS - 1))]
            seqs[job_id] += 1
            step = seqs[job_id]
            events.append(
                {
                    "id": new_id("ftevent"), "project_id": project_id, "job_id": job_id, "seq": step,
                    "level": EventLevel.info, "type": EventType.metrics,
                    "message": f"Step {step}/{HEAVY_JOB_EVENTS * 2}: training loss={2.0 / step:.4f}",
                    "data": {"step": step, "total_steps": HEAVY_JOB_EVENTS * 2, "train_loss": 2.0 / step ** 0.5,
                             "train_mean_token_accuracy": min(1.0, step / HEAVY_JOB_EVENTS)},
                    "created_at": now - timedelta(seconds=EVENTS - n),
                }
            )  # fmt: skip
        for start in range(0, len(events), 2_000):
            db.execute(insert(JobEvent), events[start : start + 2_000])
        for job_id, seq in seqs.items():
            if seq:
                db.execute(update(FineTuningJob).where(FineTuningJob.id == job_id).values(event_seq=seq))
        counts = (
            db.execute(select(func.count()).select_from(FineTuningJob)).scalar_one(),
            db.execute(select(func.count()).select_from(JobEvent)).scalar_one(),
        )
    engine.dispose()
    print(f"seeded {counts[0]:,} jobs and {counts[1]:,} events", flush=True)
    return heavy, ids[1]


def append_metrics(database_url: str, job_id: str) -> None:
    """One more metrics event on ``job_id``, as a worker writes it (next seq, the job's cursor moved with it)."""
    engine = create_engine(sync_url(database_url))
    with engine.begin() as db:
        current, project_id = db.execute(
            select(FineTuningJob.event_seq, FineTuningJob.project_id).where(FineTuningJob.id == job_id)
        ).one()
        seq = current + 1
        db.execute(
            insert(JobEvent).values(
                id=new_id("ftevent"), project_id=project_id, job_id=job_id, seq=seq, level=EventLevel.info,
                type=EventType.metrics, message=f"Step {seq}", created_at=utcnow(),
                data={"step": seq, "total_steps": seq * 2, "train_loss": 1.0 / seq, "train_mean_token_accuracy": 0.5},
            )
        )  # fmt: skip
        db.execute(update(FineTuningJob).where(FineTuningJob.id == job_id).values(event_seq=seq))
    engine.dispose()


def sign_in(base: str, key: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    form = client.get("/console/sign-in").text
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/console/sign-in", data={"api_key": key, "csrf_token": token, "next": "/console/jobs"})
    if answer.status_code != 303:
        raise SystemExit(f"sign-in failed: {answer.status_code} {answer.text[:300]}")
    return client


def timed(client: httpx.Client, path: str, n: int, headers: dict[str, str] | None = None) -> list[float]:
    for _ in range(3):
        client.get(path, headers=headers).raise_for_status()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return times


def p(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100, method="inclusive")[int(q) - 1] if len(times) > 1 else times[0]


def browser_timings(base: str, cookie: str, paths: list[str], loads: int) -> dict[str, tuple[float, float]]:
    from playwright.sync_api import sync_playwright

    results = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.add_cookies([{"name": "ftgw_session", "value": cookie, "url": base}])
        page = context.new_page()
        for path in paths:
            paints, ready = [], []
            for i in range(loads + 1):
                page.goto(base + path, wait_until="load")
                timing = page.evaluate(
                    """() => {
                      const nav = performance.getEntriesByType('navigation')[0];
                      const paint = performance.getEntriesByName('first-contentful-paint')[0];
                      return [paint ? paint.startTime : nav.domContentLoadedEventEnd, nav.domContentLoadedEventEnd];
                    }"""
                )
                if i:  # the first load warms the browser's cache of the packages
                    paints.append(timing[0])
                    ready.append(timing[1])
            results[path] = (statistics.median(paints), statistics.median(ready))
        browser.close()
    return results


def follow_latency(base: str, cookie: str, database_url: str, job_id: str, samples: int) -> list[float]:
    """Time from a metrics event's commit to the job page's chart holding one more point."""
    from playwright.sync_api import sync_playwright

    latencies = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.add_cookies([{"name": "ftgw_session", "value": cookie, "url": base}])
        page = context.new_page()
        page.goto(f"{base}/console/jobs/{job_id}", wait_until="load")
        points = page.locator("[data-points]").first
        points.wait_for()
        for _ in range(samples):
            before = int(points.get_attribute("data-points") or 0)
            started = time.perf_counter()
            append_metrics(database_url, job_id)
            page.wait_for_function(
                "n => Number(document.querySelector('[data-points]').dataset.points) > n", arg=before, timeout=10_000
            )
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.3)
        browser.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page (after 3 warm-ups)")
    parser.add_argument("--loads", type=int, default=5, help="browser loads per page")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--model-cache", type=Path, default=Path("data/models"))
    args = parser.parse_args()

    env = {"FTGW_EMBEDDED_WORKER": "false", "FTGW_TEST_MODELS": "true"}
    pg_name = None
    if args.database == "postgresql":
        pg_name = f"ftgw_bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{pg_name}"')
        env["FTGW_DATABASE_URL"] = PG_ADMIN.rsplit("/", 1)[0] + "/" + pg_name
    try:
        with served_gateway(args.model_cache, env) as gateway:
            database_url = env.get("FTGW_DATABASE_URL") or f"sqlite:///{gateway.log.parent / 'ftgw.db'}"
            heavy, running = seed(database_url)
            base = gateway.base_url.removesuffix("/v1")
            client = sign_in(base, gateway.key)
            cookie = client.cookies["ftgw_session"]
            pages = {
                "jobs list": "/console/jobs",
                "jobs, filtered": "/console/jobs?status=succeeded&metadata=team%3Dsupport",
                f"job page ({HEAVY_JOB_EVENTS:,} events)": f"/console/jobs/{heavy}",
                "datasets": "/console/datasets",
                "registry": "/console/registry",
                "evals": "/console/evals",
                "usage": "/console/usage",
                "playground": "/console/playground",
            }
            anchor_path = "/v1/fine_tuning/jobs?limit=25"
            auth = {"Authorization": f"Bearer {gateway.key}"}
            server = {name: timed(client, path, args.requests) for name, path in pages.items()}
            anchor = timed(client, anchor_path, args.requests, headers=auth)
            anchor_p50 = statistics.median(anchor)
            print(f"\nserver time to the full page, {args.requests} requests each ({args.database}):")
            print(f"{'page':34} {'p50 ms':>8} {'p95 ms':>8} {'x API list p50':>15}")
            for name, times in server.items():
                p50 = statistics.median(times)
                print(f"{name:34} {p50:8.1f} {p(times, 95):8.1f} {p50 / anchor_p50:15.2f}")
            print(f"{'anchor: GET ' + anchor_path:34} {anchor_p50:8.1f} {p(anchor, 95):8.1f} {1:15.2f}")

            paints = browser_timings(base, cookie, list(pages.values()), args.loads)
            print(f"\nfirst render in Chromium, median of {args.loads} loads (target < 300 ms):")
            print(f"{'page':34} {'first paint ms':>15} {'DOMContentLoaded ms':>20}")
            for name, path in pages.items():
                paint, ready = paints[path]
                print(f"{name:34} {paint:15.1f} {ready:20.1f}")

            latencies = follow_latency(base, cookie, database_url, running, samples=10)
            print(
                f"\nlive curve: event committed -> point drawn, {len(latencies)} events: p50 "
                f"{statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms (target < 1000 ms)"
            )
    finally:
        if pg_name:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
