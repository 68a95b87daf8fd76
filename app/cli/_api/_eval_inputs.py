"""What the options of ``ftgw evals`` become: JSON given inline or in a file, a local rows file ready to upload
(plain item objects wrapped as ``{"item": …}``), the prompt and sampling of a completions data source, and the
POST that creates runs on rows uploaded for it."""

from __future__ import annotations

import json as jsonlib
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli._errors import USAGE, CliError
from app.cli._output import echo, note, plural

if TYPE_CHECKING:
    from app.cli._client import Gateway


def json_file(path: Path, option: str) -> Any:
    if not path.is_file():
        raise CliError(f"{option}: no such file: {path}", None, USAGE)
    try:
        return jsonlib.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CliError(f"{option}: {path} is not JSON: {exc}", None, USAGE) from None


def json_arg(value: str, option: str) -> Any:
    """``value`` as JSON when it starts as JSON does, else the JSON in the file it names."""
    if not value.lstrip().startswith(("{", "[")):
        if not Path(value).is_file():
            raise CliError(f"{option} {value!r} is neither JSON nor a file.", None, USAGE)
        return json_file(Path(value), option)
    try:
        return jsonlib.loads(value)
    except ValueError as exc:
        raise CliError(f"{option} is not JSON: {exc}", None, USAGE) from None


def _rows_file(path: Path) -> tuple[Path, int, tempfile.TemporaryDirectory[str] | None]:
    """The file to upload for ``path`` and its number of rows: ``path`` itself when every line is a row already
    (``{"item": …, "sample"?: …}``), else a copy in a temporary folder with plain items wrapped as ``{"item": …}``."""
    if not path.is_file():
        raise CliError(f"No such file: {path}", None, USAGE)
    rows: list[str] = []
    wrapped = False
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = jsonlib.loads(line)
            except ValueError as exc:
                hint = "Rows are JSONL: one JSON object a line."
                raise CliError(f"{path} line {number} is not JSON: {exc}", hint, USAGE) from None
            if not isinstance(value, dict):
                raise CliError(f"{path} line {number}: a row is a JSON object.", None, USAGE)
            if not (isinstance(value.get("item"), dict) and set(value) <= {"item", "sample"}):
                value, wrapped = {"item": value}, True
            rows.append(jsonlib.dumps(value, ensure_ascii=False))
    if not rows:
        raise CliError(f"{path} has no rows.", None, USAGE)
    if not wrapped:
        return path, len(rows), None
    folder = tempfile.TemporaryDirectory(prefix="ftgw-evals-")
    copy = Path(folder.name) / path.name
    copy.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return copy, len(rows), folder


def post_runs(
    gw: Gateway, path: str, body: dict[str, Any], items: Path | None, file_id: str | None, *, json: bool
) -> tuple[dict[str, Any], int | None]:
    """POST ``body`` to ``path`` with its ``data_source.source``: ``file_id``, or ``items`` uploaded first (and
    deleted again when the gateway refuses the run, so a corrected retry leaves no stray copy). The gateway's
    answer and the number of rows, when known."""
    if (items is None) == (file_id is None):
        raise CliError("Give the rows: --items PATH.jsonl or --file-id file-….", None, USAGE)
    if file_id is not None:
        body["data_source"]["source"] = {"type": "file_id", "id": file_id}
        return gw.post(path, body), None
    assert items is not None
    from app.cli._api.files import upload

    upload_path, count, folder = _rows_file(items)
    try:
        uploaded = upload(gw, upload_path, purpose="evals")
    finally:
        if folder is not None:
            folder.cleanup()
    (note if json else echo)(f"Uploaded {items} ({plural(count, 'row')}): {uploaded['id']}")
    body["data_source"]["source"] = {"type": "file_id", "id": uploaded["id"]}
    try:
        return gw.post(path, body), count
    except CliError:
        with suppress(CliError):
            gw.delete(f"/v1/files/{uploaded['id']}")
        raise


def _input_messages(template: str | None, messages: str | None, system: str | None) -> dict[str, Any]:
    if (template is None) == (messages is None):
        raise CliError('Give the prompt: --template "…{{item.x}}…" or --messages JSON_OR_FILE.', None, USAGE)
    if template is not None:
        listed: Any = [{"role": "user", "content": template}]
    else:
        assert messages is not None
        listed = json_arg(messages, "--messages")
    if isinstance(listed, dict):
        if system is not None and listed.get("type") == "item_reference":
            raise CliError("--system cannot be added to an item_reference: put it in the items' messages.", None, USAGE)
        if listed.get("type") != "template" or system is None:
            return listed
        listed = listed.get("template")
    if not isinstance(listed, list):
        raise CliError("--messages must be a list of messages or an input_messages object.", None, USAGE)
    head = [{"role": "system", "content": system}] if system is not None else []
    return {"type": "template", "template": head + listed}


def completions(
    model: str | None,
    template: str | None,
    messages: str | None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    seed: int | None,
) -> dict[str, Any]:
    """A completions data source but its source (and without a model for a comparison)."""
    data_source: dict[str, Any] = {"type": "completions", "input_messages": _input_messages(template, messages, system)}
    if model is not None:
        data_source["model"] = model
    sampling = {"max_completion_tokens": max_tokens, "temperature": temperature, "seed": seed}
    if any(value is not None for value in sampling.values()):
        data_source["sampling_params"] = {key: value for key, value in sampling.items() if value is not None}
    return data_source
