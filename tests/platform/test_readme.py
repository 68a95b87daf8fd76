"""Every fenced example in README.md runs, in order, against a served gateway that trains for real, so the README
cannot rot: ``sh`` blocks in bash (``ftgw`` is this checkout's; ``curl`` fails on an HTTP error; ``make`` is a dry
run: the target must exist), ``python`` blocks in a fresh interpreter. A block in any other language fails the test.

The README's placeholders are replaced by real values: the default address by the test gateway's, ``sk-ftgw-…`` by
its admin key, ``smollm2-135m-instruct`` by the tiny test model, ``ftjob-…`` by the newest job, the ``ft:…``
models by the model the README's own job trained, ``remote-mini`` (an upstream model) by the tiny model.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.cli.runner import ROOT, cli_env
from tests.conftest import Gateway

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
BASE = "smollm2-135m-instruct"
TINY = "tiny-smollm2"
PLACEHOLDER_MODELS = (f"ft:{BASE}:default:bot:abc", f"ft:{BASE}:default:bot:def", f"ft:{BASE}:default:topic:xyz")


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer((ROOT / "README.md").read_text())]


def _prelude() -> str:
    python = shlex.quote(sys.executable)
    return "\n".join(
        [
            "set -euo pipefail",
            f'ftgw() {{ {python} -m app.cli "$@"; }}',
            'curl() { command curl --fail-with-body -sS "$@"; echo; }',
            'make() { command make -n -C "$FTGW_REPO" "$@" >/dev/null; }',
            "latest_job() { ftgw fine-tunes list --limit 1 --json | "
            f'{python} -c \'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])\'; }}',
        ]
    )


def _substitute(text: str, gateway: Gateway, trained: str | None) -> str:
    for placeholder in PLACEHOLDER_MODELS:
        if placeholder in text:
            assert trained is not None, f"{placeholder} is used before the README trained a model"
            text = text.replace(placeholder, trained)
    return (
        text.replace("http://127.0.0.1:8000", gateway.base_url)
        .replace("sk-ftgw-…", gateway.admin_key)
        .replace("ftjob-…", "$(latest_job)")
        .replace(BASE, TINY)
        .replace("remote-mini", TINY)
    )


def _workdir(tmp_path: Path) -> Path:
    """The files the README's examples start from."""
    with (tmp_path / "qa.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "completion"])
        writer.writerows([f"Is {i} a number?", "yes"] for i in range(10))
    rows = [{"prompt": f"Is {i} a number?", "completion": " yes"} for i in range(10)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_every_readme_example_runs(training_gateway: Gateway, tmp_path: Path) -> None:
    gateway = training_gateway
    cwd = _workdir(tmp_path)
    env = cli_env(
        gateway,
        gateway.admin_key,
        OPENAI_BASE_URL=f"{gateway.base_url}/v1",
        OPENAI_API_KEY=gateway.admin_key,
        FTGW_DATABASE_URL=gateway.settings.resolved_database_url,
        FTGW_REPO=str(ROOT),
    )
    admin = gateway.openai(gateway.admin_key)
    found = blocks()
    assert {language for language, _ in found} <= {"sh", "python"}, "a README block no test runs"
    assert len(found) >= 8

    outputs: list[str] = []
    for language, code in found:
        jobs = admin.fine_tuning.jobs.list(limit=1).data
        trained = jobs[0].fine_tuned_model if jobs else None
        code = _substitute(code, gateway, trained)
        shell = ["bash", "-c", _prelude() + "\n" + code]
        command = shell if language == "sh" else [sys.executable, "-c", code]
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (
            f"README block failed:\n{code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
        outputs.append(result.stdout)

    everything = "\n".join(outputs)
    assert "Job complete! Fine-tuned model: ft:tiny-smollm2:default:qa-bot:" in everything
    assert "wrote " in everything and "_results.csv" in everything
    assert '"version.rolled_back"' in everything  # the audit log the README fetched
    keys = [line for line in everything.splitlines() if line.startswith("sk-ftgw-")]
    assert keys, "ftgw keys create --local printed no key"
    assert admin.models.retrieve(TINY).id == TINY
    assert gateway.openai(keys[-1]).models.list().data  # the key the operator minted works
