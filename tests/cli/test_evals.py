"""`ftgw evals …` as a user runs it, against a live gateway whose worker samples and grades for real: create an eval,
run it (a local JSONL uploaded, progress, a summary with the counts), read its rows, compare two models and two
existing runs; Ctrl-C, cancel and the exit codes; errors in one or two lines."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

from tests.cli.runner import ftgw, popen, short_error
from tests.cli.test_fine_tunes import _read_until
from tests.conftest import Gateway, Tenant, make_tenant

MODEL = "tiny-smollm2"
ALIAS = "tiny-alias"
ITEM_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "label": {"type": "string"}},
    "required": ["text", "label"],
}
LABEL_CHECK = {
    "type": "string_check",
    "name": "Label matches",
    "input": "{{sample.output_text}}",
    "reference": "{{item.label}}",
    "operation": "eq",
}
# A criterion every row passes whatever the tiny model answers: the counts of a completions run are certain.
LABELLED = {
    "type": "string_check",
    "name": "Labelled",
    "input": "{{item.label}}",
    "reference": "",
    "operation": "ne",
}
ROWS = [
    {"text": "I loved it", "label": "positive"},
    {"text": "Awful, dull and long", "label": "negative"},
    {"text": "It was a film", "label": "neutral"},
]


def ok(result: Any) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return str(result.stdout)


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _answered(path: Path, answers: list[str]) -> Path:
    """Rows that bring their answers (a jsonl run's): row i answered ``answers[i]``."""
    return _jsonl(path, [{"item": r, "sample": {"output_text": a}} for r, a in zip(ROWS, answers, strict=True)])


def _create(run: dict[str, Any], tmp_path: Path) -> str:
    criterion_file = tmp_path / "label.json"
    criterion_file.write_text(json.dumps(LABEL_CHECK))
    created = ok(
        ftgw(
            "evals", "create", "--name", "Sentiment", "--item-schema", json.dumps(ITEM_SCHEMA),
            "--criterion", str(criterion_file), "--criterion", json.dumps(LABELLED), **run,
        )
    )  # fmt: skip
    eval_id = created.strip()
    assert re.fullmatch(r"eval_\w+", eval_id), created
    return eval_id


def test_evals_help_lists_the_commands() -> None:
    listed = ok(ftgw("evals", "--help"))

    for command in ("create", "list", "get", "delete", "run", "follow", "runs", "cancel", "items", "compare"):
        assert re.search(rf"^\s+{command}\s", listed, re.MULTILINE), (command, listed)
    assert re.search(r"^\s+evals\s+Evaluate models", ok(ftgw("--help")), re.MULTILINE)
    run_help = " ".join(ok(ftgw("evals", "run", "--help", COLUMNS="80")).split())
    assert "ftgw evals cancel" in run_help and "Exit code 1 when the run failed, 4 when it was canceled" in run_help


def test_create_run_items_and_compare(training_gateway: Gateway, tmp_path: Path) -> None:
    tenant = make_tenant(training_gateway)
    run: dict[str, Any] = {"gateway": training_gateway, "key": tenant.key, "timeout": 240.0}
    eval_id = _create(run, tmp_path)
    assert eval_id in ok(ftgw("evals", "list", **run))
    shown = ok(ftgw("evals", "get", eval_id, **run))
    assert "text: string, label: string" in shown
    assert "1. Label matches (string_check): {{sample.output_text}} eq '{{item.label}}'" in shown

    # A completions run on plain items (one object a line, wrapped by the CLI), sampled by the tiny model.
    items = _jsonl(tmp_path / "reviews.jsonl", ROWS)
    ran = ftgw(
        "evals", "run", eval_id, "-m", MODEL, "--items", str(items), "--template", "Review: {{item.text}}",
        "--system", "Answer positive, negative or neutral.", "--max-tokens", "2", "--temperature", "0", **run,
    )  # fmt: skip

    out = ok(ran)
    run_id = re.search(r"Created eval run: (evalrun_\w+)", out).group(1)  # type: ignore[union-attr]
    assert re.search(r"^Uploaded \S+reviews.jsonl \(3 rows\): file-\w+$", out, re.MULTILINE), out
    assert re.search(rf"{MODEL}: (queued|in_progress|completed), \d/3 rows graded", ran.stderr), ran.stderr
    summary = out.split(f"Created eval run: {run_id}\n", 1)[1]
    assert re.search(r"^status +completed$", summary, re.MULTILINE), summary
    assert re.search(r"^rows +3 graded: \d passed, \d failed, 0 errored", summary, re.MULTILINE), summary
    assert re.search(r"Labelled: 3/3 passed \(100\.0%\)", summary), summary
    assert re.search(rf"^usage +{MODEL}: 3 calls, \d+ prompt \+ [1-6] completion tokens$", summary, re.MULTILINE)
    got = json.loads(ok(ftgw("evals", "get", eval_id, run_id, "--json", **run)))
    assert (got["id"], got["status"], got["model"]) == (run_id, "completed", MODEL)
    assert got["result_counts"]["total"] == 3 and got["result_counts"]["errored"] == 0
    sent = got["data_source"]
    system = {"role": "system", "content": "Answer positive, negative or neutral."}
    assert sent["input_messages"]["template"][0] == system
    assert sent["sampling_params"] == {"max_completion_tokens": 2, "temperature": 0}

    table = ok(ftgw("evals", "items", eval_id, run_id, **run))
    header, *lines = table.splitlines()
    assert header.split()[:5] == ["id", "row", "status", "Label", "matches"] and "answer" in header
    assert len(lines) == 3 and all(re.match(r"outputitem_\w+ +[0-2] +(pass|fail) ", line) for line in lines)
    page = json.loads(ok(ftgw("evals", "items", eval_id, run_id, "--status", "fail", "--json", **run)))
    assert all(item["status"] == "fail" and item["run_id"] == run_id for item in page["data"])

    # Rows with their own answers (a jsonl run): the counts are known, and --json prints the ended run.
    answers = _answered(tmp_path / "a.jsonl", ["positive", "negative", "positive"])
    answered = ftgw(
        "evals", "run", eval_id, "--samples", "--items", str(answers), "--name", "answers A", "--json", **run
    )
    run_a = json.loads(ok(answered))
    assert run_a["status"] == "completed" and run_a["model"] is None and run_a["name"] == "answers A"
    assert run_a["result_counts"] == {"total": 3, "errored": 0, "failed": 1, "passed": 2}
    assert f"Created eval run: {run_a['id']}" in answered.stderr
    summary_a = ok(ftgw("evals", "get", eval_id, run_a["id"], **run))
    assert "3 graded: 2 passed, 1 failed, 0 errored (pass rate 66.7%)" in summary_a
    assert "Label matches: 2/3 passed (66.7%)" in summary_a
    other = _answered(tmp_path / "b.jsonl", ["positive", "sad", "neutral"])
    run_b = json.loads(ok(ftgw("evals", "run", eval_id, "--samples", "--items", str(other), "--json", **run)))

    # Two existing runs side by side: the rows they disagree on are rows 1 and 2.
    pair = f"{run_a['id']},{run_b['id']}"
    compared = ok(ftgw("evals", "compare", eval_id, "--runs", pair, **run))
    assert "pass rate [95% interval]" in " ".join(compared.split()).lower()
    assert re.search(rf"^answers A +{run_a['id']} +completed +66\.7% \[20\.8-93\.9\] 2/3", compared, re.MULTILINE)
    disagreeing = compared.split("They disagree on 2 rows:\n", 1)[1].splitlines()
    assert disagreeing == [
        "row 1: text=Awful, dull and long, label=negative",
        f"  answers A{' ' * (len(run_b['id']) - 9)}  pass  negative",
        f"  {run_b['id']}  fail  sad",
        "row 2: text=It was a film, label=neutral",
        f"  answers A{' ' * (len(run_b['id']) - 9)}  fail  positive",
        f"  {run_b['id']}  pass  neutral",
    ]
    as_json = json.loads(ok(ftgw("evals", "compare", eval_id, "--runs", pair, "--json", **run)))
    assert [r["run_id"] for r in as_json["runs"]] == [run_a["id"], run_b["id"]]
    assert as_json["disagreements"]["total"] == 2
    assert [d["datasource_item_id"] for d in as_json["disagreements"]["data"]] == [1, 2]
    assert "disagree on 2 rows (the first 1)" in ok(
        ftgw("evals", "compare", eval_id, "--runs", pair, "--disagreements", "1", **run)
    )

    # Two models: the base model and an alias of it, which the gateway lists.
    ok(ftgw("aliases", "create", "-n", ALIAS, **run))
    ok(ftgw("aliases", "add-version", "-n", ALIAS, "--target", MODEL, **run))
    models = {m["id"] for m in json.loads(ok(ftgw("models", "list", "--json", **run)))["data"]}
    assert {MODEL, ALIAS} <= models
    both = ftgw(
        "evals", "compare", eval_id, "-m", MODEL, "-m", ALIAS, "--items", str(items),
        "--template", "Review: {{item.text}}", "--max-tokens", "2", "--temperature", "0", "--name", "base vs alias",
        **run,
    )  # fmt: skip
    text = ok(both)
    created = re.findall(r"Created eval run: (evalrun_\w+) \((\S+)\)", text)
    assert [model for _, model in created] == [MODEL, ALIAS]
    for run_id_, model in created:
        assert re.search(rf"^{model} +{run_id_} +completed +\S+ \[", text, re.MULTILINE), text
    assert "Labelled" in text and "100.0% [43.9-100.0] 3/3" in text  # every row passes it: 3/3, Wilson 95%
    listed = json.loads(ok(ftgw("evals", "runs", eval_id, "--json", **run)))
    names = {r["name"] for r in listed["data"]}
    assert {f"base vs alias: {MODEL}", f"base vs alias: {ALIAS}", "answers A"} <= names
    assert run_a["id"] in ok(ftgw("evals", "runs", eval_id, **run))

    ok(ftgw("evals", "delete", eval_id, run_b["id"], **run))
    assert ftgw("evals", "get", eval_id, run_b["id"], **run).returncode == 1
    ok(ftgw("evals", "delete", eval_id, **run))
    assert ftgw("evals", "get", eval_id, **run).returncode == 1


def test_ctrl_c_stops_watching_then_cancel_and_a_canceled_run_exits_4(
    gateway: Gateway, tenant: Tenant, tmp_path: Path
) -> None:
    run: dict[str, Any] = {"gateway": gateway, "key": tenant.key}
    eval_id = _create(run, tmp_path)
    rows = _answered(tmp_path / "answers.jsonl", ["positive", "negative", "neutral"])
    # This gateway has no worker: the run stays queued while the CLI watches it.
    watching = popen("evals", "run", eval_id, "--samples", "--items", str(rows), **run)
    run_id = re.search(r"Created eval run: (evalrun_\w+)", _read_until(watching, "Created eval run")).group(1)  # type: ignore[union-attr]
    _read_until(watching, "rows graded")
    watching.send_signal(signal.SIGINT)
    rest = watching.communicate(timeout=30)[0]

    assert watching.returncode == 130, rest
    assert "the run goes on" in rest and "Traceback" not in rest
    assert f"ftgw evals follow {eval_id} {run_id}" in rest and f"ftgw evals cancel {eval_id} {run_id}" in rest
    assert json.loads(ok(ftgw("evals", "get", eval_id, run_id, "--json", **run)))["status"] == "queued"

    assert ok(ftgw("evals", "cancel", eval_id, run_id, **run)).strip() == f"{run_id}: canceled"
    followed = ftgw("evals", "follow", eval_id, run_id, **run)
    assert followed.returncode == 4, followed.stdout + followed.stderr
    assert f"Run {run_id} was canceled" in followed.stderr
    assert re.search(r"^status +canceled$", followed.stdout, re.MULTILINE), followed.stdout
    again = ftgw("evals", "cancel", eval_id, run_id, **run)
    assert again.returncode == 1 and "Cannot cancel a run that is canceled" in short_error(again)[0]


def test_errors_are_one_or_two_lines_naming_what_is_wrong(gateway: Gateway, tenant: Tenant, tmp_path: Path) -> None:
    run: dict[str, Any] = {"gateway": gateway, "key": tenant.key}
    items = _jsonl(tmp_path / "rows.jsonl", ROWS)

    unknown = ftgw("evals", "get", "eval_nope", **run)
    assert unknown.returncode == 1
    assert "No such eval: eval_nope" in short_error(unknown)[0] and "(404)" in short_error(unknown)[0]
    not_run = ftgw("evals", "run", "eval_nope", "-m", MODEL, "--items", str(items), "--template", "{{item.x}}", **run)
    assert not_run.returncode == 1 and "No such eval: eval_nope" in short_error(not_run)[0]
    assert json.loads(ok(ftgw("files", "list", "--json", **run)))["data"] == []  # nothing was uploaded

    bad = ftgw(
        "evals", "create", "--item-schema", json.dumps(ITEM_SCHEMA), "--criterion", json.dumps(LABELLED),
        "--criterion", json.dumps({**LABEL_CHECK, "operation": "contains"}), **run,
    )  # fmt: skip
    assert bad.returncode == 1
    lines = short_error(bad)
    assert "(400)" in lines[0] and "testing_criteria[1]" in " ".join(lines)

    eval_id = _create(run, tmp_path)
    missing = ftgw("evals", "run", eval_id, "-m", MODEL, "--items", str(items), "--template", "{{item.nope}}", **run)
    assert missing.returncode == 1 and "data_source.input_messages.template[0]" in " ".join(short_error(missing))
    assert json.loads(ok(ftgw("files", "list", "--json", **run)))["data"] == []  # its upload was deleted again
    assert ftgw("evals", "run", eval_id, "-m", MODEL, "--template", "x", **run).returncode == 2  # no rows
    assert ftgw("evals", "run", eval_id, "--items", str(items), "--template", "x", **run).returncode == 2  # no model
    mixed = ftgw("evals", "run", eval_id, "--samples", "-m", MODEL, "--items", str(items), **run)
    assert mixed.returncode == 2 and "drop --model" in short_error(mixed)[0]
    one = ftgw("evals", "compare", eval_id, "-m", MODEL, "--items", str(items), "--template", "x", **run)
    assert one.returncode == 2 and "two models or more" in short_error(one)[0]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine", "label": "x"}\n{nope\n')
    bad_line = ftgw("evals", "run", eval_id, "-m", MODEL, "--items", str(broken), "--template", "x", **run)
    assert bad_line.returncode == 2 and "line 2 is not JSON" in short_error(bad_line)[0]
