"""What ``ftgw evals`` shows: the progress of runs while they go, a run's and an eval's summary, graded rows, and a
comparison of runs side by side; and the exit code a run's end means.

A run's progress is its ``result_counts.total``: the gateway counts the rows graded so far while the run is queued
or in progress, so one request a poll tells it, whatever the run's size.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import typer

from app.cli._errors import CANCELLED, FAILED, UNREACHABLE, CliError
from app.cli._output import FREE_MIN_WIDTH, cell, console, echo, err_console, note, plural, table, when

if TYPE_CHECKING:
    from app.cli._client import Gateway

FINAL = {"completed", "failed", "canceled"}
POLL_SECONDS = 0.5
LINE_SECONDS = 5.0  # away from a terminal, a line per run at most this often (and at each change of status)
RECONNECT_SECONDS = 60  # a gateway that stops answering is asked again this long
RUN_COLUMNS = ("id", "model", "status", "passed", "created_at")


# --- progress ------------------------------------------------------------------------------------------------------


def _graded(run: dict[str, Any]) -> int:
    return int((run.get("result_counts") or {}).get("total") or 0)


def _poll(gw: Gateway, eval_id: str, run_id: str) -> dict[str, Any]:
    dropped: float | None = None
    while True:
        try:
            run: dict[str, Any] = gw.get(f"/v1/evals/{eval_id}/runs/{run_id}")
            return run
        except CliError as exc:
            if exc.exit_code != UNREACHABLE:
                raise
            dropped = dropped or time.monotonic()
            if time.monotonic() - dropped > RECONNECT_SECONDS:
                raise
            time.sleep(1)


def _labels(runs: Sequence[dict[str, Any]]) -> list[str]:
    """What names each run on screen: its model, else its name, when no other run has the same; else its id."""
    labels = []
    for run in runs:
        for key in ("model", "name"):
            value = run.get(key)
            if value and value != run["id"] and sum(1 for other in runs if other.get(key) == value) == 1:
                labels.append(str(value))
                break
        else:
            labels.append(str(run["id"]))
    return labels


def wait(gw: Gateway, eval_id: str, runs: Sequence[dict[str, Any]], rows: int | None) -> list[dict[str, Any]]:
    """Poll the runs until each has ended: a progress bar per run on a terminal (rows graded, of ``rows`` when
    known), a line per change elsewhere. The runs as they ended."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = err_console()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows graded"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    current = list(runs)
    if all(run["status"] in FINAL for run in current):
        return current
    labels = _labels(current)
    tasks = [progress.add_task(label, total=rows) for label in labels]
    told: dict[int, tuple[str, int, float]] = {}
    with progress:
        while True:
            for i, run in enumerate(current):
                status, graded = run["status"], _graded(run)
                progress.update(tasks[i], description=f"{labels[i]} {status}", completed=graded)
                if not console.is_terminal:
                    _tell(told, i, labels[i], status, graded, rows)
            if all(run["status"] in FINAL for run in current):
                return current
            time.sleep(POLL_SECONDS)
            current = [run if run["status"] in FINAL else _poll(gw, eval_id, run["id"]) for run in current]


def _tell(
    told: dict[int, tuple[str, int, float]], i: int, label: str, status: str, graded: int, rows: int | None
) -> None:
    last = told.get(i)
    now = time.monotonic()
    if last is not None and (last[:2] == (status, graded) or (last[0] == status and now - last[2] < LINE_SECONDS)):
        return
    told[i] = (status, graded, now)
    of = f"/{rows}" if rows is not None else ""
    note(f"{label}: {status}, {graded}{of} rows graded")


def exit_for(eval_id: str, runs: Sequence[dict[str, Any]]) -> None:
    """Exit 1 when a run failed, 4 when one was canceled (its graded rows are kept); return when all completed."""
    for run in runs:
        if run["status"] == "failed":
            message = (run.get("error") or {}).get("message") or "no reason given"
            hint = f"The rows it graded: ftgw evals items {eval_id} {run['id']}"
            raise CliError(f"Run {run['id']} failed: {message}", hint, FAILED)
    for run in runs:
        if run["status"] == "canceled":
            note(f"Run {run['id']} was canceled; the rows it graded: ftgw evals items {eval_id} {run['id']}")
            raise typer.Exit(CANCELLED)


# --- summaries -----------------------------------------------------------------------------------------------------


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _lines(rows: Sequence[tuple[str, str | list[str]]]) -> None:
    """``key  value`` lines, keys aligned; a list value continues under the first of its lines."""
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        values = value if isinstance(value, list) else [value]
        for j, line in enumerate(values or [""]):
            echo(f"{(key if j == 0 else '').ljust(width)}  {line}")


def _criteria_names(evaluation: dict[str, Any]) -> dict[str, str]:
    return {c.get("id", ""): c.get("name") or c.get("type", "") for c in evaluation["testing_criteria"]}


def show_run(evaluation: dict[str, Any], run: dict[str, Any]) -> None:
    counts = run["result_counts"]
    total = counts["total"]
    graded = (
        f"{total} graded: {counts['passed']} passed, {counts['failed']} failed, {counts['errored']} errored "
        f"(pass rate {_percent(counts['passed'], total)})"
        if total
        else "none graded yet"
    )
    names = _criteria_names(evaluation)
    criteria = [
        f"{names.get(r['testing_criteria'], r['testing_criteria'])}: {r['passed']}/{r['passed'] + r['failed']} "
        f"passed ({_percent(r['passed'], r['passed'] + r['failed'])})"
        for r in run["per_testing_criteria_results"]
    ]
    if not criteria and run["status"] not in FINAL:
        criteria = ["counted when the run ends"]
    usage = [
        f"{u['model_name']}: {plural(u['invocation_count'], 'call')}, {u['prompt_tokens']} prompt + "
        f"{u['completion_tokens']} completion tokens"
        for u in run["per_model_usage"]
    ]
    rows: list[tuple[str, str | list[str]]] = [
        ("run", run["id"] if run["name"] in (run["id"], run.get("model")) else f"{run['id']} ({run['name']})"),
        ("eval", f"{evaluation['id']} ({evaluation['name']})"),
        ("model", run.get("model") or "none: the rows' own answers (jsonl)"),
        ("status", run["status"]),
        ("rows", graded),
        ("criteria", criteria),
        ("usage", usage or ("none" if run["status"] in FINAL else "counted when the run ends")),
    ]
    if run.get("error"):
        rows.append(("error", f"{run['error']['message']} ({run['error']['code']})"))
    rows.append(("items", f"ftgw evals items {evaluation['id']} {run['id']} [--status fail]"))
    _lines(rows)


def describe(criterion: dict[str, Any]) -> str:
    """A grader in a few words: what it compares and how."""
    c = criterion
    kind = c.get("type")
    if kind == "string_check":
        return f"{c.get('input')} {c.get('operation')} {c.get('reference')!r}"
    if kind == "text_similarity":
        return f"{c.get('evaluation_metric')}({c.get('input')}, {c.get('reference')}) >= {c.get('pass_threshold')}"
    if kind == "label_model":
        labels, passing = ", ".join(c.get("labels") or []), ", ".join(c.get("passing_labels") or [])
        return f"{c.get('model')} labels it {labels}; passing: {passing}"
    if kind == "score_model":
        threshold = c.get("pass_threshold")
        return f"{c.get('model')} scores it" + (f"; passing: >= {threshold}" if threshold is not None else "")
    if kind == "multi":
        return f"{c.get('calculate_output')} over {', '.join(c.get('graders') or {})}"
    return ""


def show_eval(evaluation: dict[str, Any], runs: dict[str, Any]) -> None:
    schema = evaluation["data_source_config"].get("schema") or {}
    properties = schema.get("properties") or {}
    item = properties.get("item") or {}
    required = set(item.get("required") or [])
    fields = [
        f"{name}{'' if name in required else '?'}: {cell(spec.get('type', 'any') if isinstance(spec, dict) else spec)}"
        for name, spec in (item.get("properties") or {}).items()
    ]
    criteria = [
        f"{i}. {c.get('name') or c.get('type')} ({c.get('type')}): {describe(c)}"
        for i, c in enumerate(evaluation["testing_criteria"], 1)
    ]
    _lines(
        [
            ("id", evaluation["id"]),
            ("name", evaluation["name"]),
            ("created", when(evaluation["created_at"])),
            ("items", ", ".join(fields) or "any object"),
            ("answers", "read by the criteria ({{sample.…}})" if "sample" in properties else "not read"),
            ("criteria", criteria),
        ]
    )
    if runs["data"]:
        echo()
        echo("Latest runs:")
        table([run_row(r) for r in runs["data"]], RUN_COLUMNS, times=("created_at",))


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    counts = run["result_counts"]
    return {**run, "model": run.get("model") or "(jsonl)", "passed": f"{counts['passed']}/{counts['total']}"}


def _unique(names: Iterable[str], taken: Iterable[str]) -> list[str]:
    """Column names: each given name, numbered where it repeats one before it."""
    seen = set(taken)
    out = []
    for name in names:
        column, n = name, 2
        while column in seen:
            column, n = f"{name} ({n})", n + 1
        seen.add(column)
        out.append(column)
    return out


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def show_items(evaluation: dict[str, Any], page: dict[str, Any]) -> None:
    fixed = ("id", "row", "status")
    names = _unique((c.get("name") or c.get("type", "") for c in evaluation["testing_criteria"]), (*fixed, "answer"))
    rows = []
    for item in page["data"]:
        sample = item.get("sample") or {}
        output = sample.get("output") or [{}]
        answer = _one_line(output[0].get("content"))
        if item["status"] == "error" and sample.get("error"):
            answer = f"error: {_one_line(sample['error'].get('message'))}"
        verdicts = {
            name: f"{'pass' if result.get('passed') else 'fail'} {float(result.get('score') or 0):.2f}"
            for name, result in zip(names, item["results"], strict=False)
        }
        rows.append({"id": item["id"], "row": item["datasource_item_id"], "status": item["status"], **verdicts})
        rows[-1]["answer"] = answer
    table(rows, (*fixed, *names, "answer"), cut=("answer",))
    if page.get("has_more"):
        note(f"… more rows: --limit {len(page['data']) * 2} (or --json for every field)")


# --- comparisons ---------------------------------------------------------------------------------------------------


def _rate(rate: dict[str, Any]) -> str:
    if rate["pass_rate"] is None:
        return "- 0/0"
    return (
        f"{rate['pass_rate']:.1%} [{rate['ci_low'] * 100:.1f}-{rate['ci_high'] * 100:.1f}] "
        f"{rate['passed']}/{rate['total']}"
    )


def show_comparison(comparison: dict[str, Any], runs: Sequence[dict[str, Any]], limit: int) -> None:
    """The comparison's runs side by side (``runs``: the same runs, each named by its model, else by its name), then
    up to ``limit`` rows they disagree on, each run's verdict and answer cut to the terminal's width."""
    columns = comparison["runs"]
    labels = _labels(runs)
    fixed = ("run", "id", "status", "overall")
    names = _unique((c["name"] or c["testing_criteria"] for c in columns[0]["per_testing_criteria"]), fixed)
    echo(f"{plural(len(columns), 'run')} of {comparison['eval_id']}, {comparison['status']}.")
    echo(
        f"Each: pass rate [{comparison['confidence_level']:.0%} interval] passed/graded; "
        "overall: the rows that passed every criterion."
    )
    rows = [
        {
            "run": label if label != column["run_id"] else column["model"] or "(jsonl)",
            "id": column["run_id"],
            "status": column["status"],
            "overall": _rate(column["overall"]),
            **{name: _rate(rate) for name, rate in zip(names, column["per_testing_criteria"], strict=True)},
        }
        for label, column in zip(labels, columns, strict=True)
    ]
    table(rows, (*fixed, *names))
    disagreements = comparison["disagreements"]
    echo()
    if not disagreements["total"]:
        echo("They agree on every row they all graded.")
        return
    shown = disagreements["data"][:limit]
    more = f" (the first {len(shown)})" if len(shown) < disagreements["total"] else ""
    echo(f"They disagree on {plural(disagreements['total'], 'row')}{more}:")
    width = max(len(label) for label in labels)
    for row in shown:
        fields = ", ".join(f"{key}={cell(value)}" for key, value in row["datasource_item"].items())
        _fit(f"row {row['datasource_item_id']}: {_one_line(fields)}")
        for label, outcome in zip(labels, row["outcomes"], strict=True):
            _fit(f"  {label.ljust(width)}  {outcome['status'] or 'not graded':<5} {_one_line(outcome['output_text'])}")


def _fit(line: str) -> None:
    """One line, cut with an ellipsis where the terminal is too narrow (ids come first, so they stay whole)."""
    from rich.text import Text

    text = Text(line)
    text.truncate(max(console().width, FREE_MIN_WIDTH), overflow="ellipsis")
    echo(text.plain)
