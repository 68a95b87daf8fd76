"""The three fine-tuning formats: detecting which one an example is in, and checking one example.

* chat: ``{"messages": [{"role", "content", "name"?, "weight"?}, ...]}``, roles system/user/assistant;
* prompt-completion: ``{"prompt": str, "completion": str}``;
* preference (OpenAI's DPO format): ``{"input": {"messages": [...]}, "preferred_output": [assistant message],
  "non_preferred_output": [assistant message]}``.

:func:`inspect_example` returns the example's problems plus what the token count needs: the texts to tokenize
and the fixed overhead, counted as OpenAI's data-prep cookbook does (3 tokens per message, the tokens of each
value, 1 more for a ``name``, 3 to prime the reply).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from app.datasets.errors import IssueCode
from app.datasets.schemas import Format

ROLES = frozenset({"system", "user", "assistant"})
CHAT_KEYS = frozenset({"messages", "tools", "functions", "parallel_tool_calls"})
MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "function_call", "tool_calls"})
PROMPT_COMPLETION_KEYS = frozenset({"prompt", "completion"})
PREFERENCE_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
PREFERENCE_INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMING = 3

IssueList = list[tuple[IssueCode, str]]


@dataclass(slots=True)
class Example:
    """One inspected example. ``texts`` and ``roles`` are tokenized; ``targets`` index the trained texts."""

    format: Format | None
    issues: IssueList = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    overhead: int = 0
    countable: bool = False
    label: str | None = None
    prompt: str | None = None


def detect_format(value: dict[str, object]) -> Format | None:
    """The format an object is written in, from its keys; None when it has none of them."""
    if "messages" in value:
        return Format.CHAT
    if "input" in value or "preferred_output" in value or "non_preferred_output" in value:
        return Format.PREFERENCE
    if "prompt" in value or "completion" in value:
        return Format.PROMPT_COMPLETION
    return None


def inspect_example(value: object, expected: Format | None) -> Example:
    """Check one parsed line against ``expected`` (the file's format, once known)."""
    if not isinstance(value, dict):
        kind = "an array" if isinstance(value, list) else type(value).__name__
        return Example(None, [(IssueCode.NOT_AN_OBJECT, f"the line is {kind}, not a JSON object")])
    found = detect_format(value)
    fmt = found or expected
    if fmt is None:
        keys = ", ".join(sorted(map(str, value))[:5]) or "none"
        return Example(
            None, [(IssueCode.UNKNOWN_FORMAT, f"no messages, prompt/completion or input key (keys: {keys})")]
        )
    if expected is not None and found is not None and found is not expected:
        return Example(found, [(IssueCode.MIXED_FORMATS, f"a {found} example in a {expected} file")])
    if fmt is Format.CHAT:
        return _chat(value)
    if fmt is Format.PROMPT_COMPLETION:
        return _prompt_completion(value)
    return _preference(value)


def _unrecognized(value: dict[str, object], allowed: frozenset[str], where: str, issues: IssueList) -> None:
    for key in value:
        if key not in allowed:
            issues.append((IssueCode.UNRECOGNIZED_KEY, f"unrecognized key {key!r}{where}"))


def _messages(messages: list[object], where: str, ex: Example) -> str | None:
    """Check a message list, add its texts to ``ex``; return the last trained assistant content (or None)."""
    issues = ex.issues
    texts = ex.texts
    roles = ex.roles
    last_assistant: str | None = None
    for index, message in enumerate(messages):
        if type(message) is not dict:
            issues.append((IssueCode.WRONG_TYPE, f"{where}[{index}] is not an object"))
            continue
        ex.overhead += TOKENS_PER_MESSAGE
        role = message.get("role")
        content = message.get("content")
        # The common shape, {"role": known, "content": str}, takes only these few checks.
        if len(message) == 2 and role in ROLES and type(content) is str:
            roles.append(role)
            if role == "assistant":
                ex.targets.append(len(texts))
                last_assistant = content
            texts.append(content)
            continue
        last_assistant = _message(message, role, content, f"{where}[{index}]", ex) or last_assistant
    return last_assistant


def _message(message: dict[str, object], role: object, content: object, where: str, ex: Example) -> str | None:
    issues = ex.issues
    texts = ex.texts
    _unrecognized(message, MESSAGE_KEYS, f" in {where}", issues)
    if role is None:
        issues.append((IssueCode.MISSING_ROLE, f"{where} has no role"))
    elif not isinstance(role, str) or role not in ROLES:
        issues.append((IssueCode.UNKNOWN_ROLE, f"{where} has unknown role {role!r}"))
    else:
        ex.roles.append(role)
    is_assistant = role == "assistant"
    trained_content: str | None = None
    if content is None:
        if not (is_assistant and ("tool_calls" in message or "function_call" in message)):
            issues.append((IssueCode.MISSING_CONTENT, f"{where} has no content"))
    elif not isinstance(content, str):
        issues.append((IssueCode.WRONG_TYPE, f"{where}.content is not a string"))
    else:
        trained = True
        if "weight" in message:
            weight = message["weight"]
            if type(weight) is not int or weight not in (0, 1) or not is_assistant:
                issues.append((IssueCode.INVALID_WEIGHT, f"{where}.weight must be 0 or 1 on an assistant message"))
            trained = weight != 0
        if is_assistant and trained:
            ex.targets.append(len(texts))
            trained_content = content
        texts.append(content)
    name = message.get("name")
    if name is not None:
        if isinstance(name, str):
            texts.append(name)
            ex.overhead += TOKENS_PER_NAME
        else:
            issues.append((IssueCode.WRONG_TYPE, f"{where}.name is not a string"))
    for extra in ("tool_calls", "function_call"):
        if extra in message:
            # Not a string in the cookbook either; its JSON text is the closest count.
            texts.append(orjson.dumps(message[extra]).decode())
    return trained_content


def _chat(value: dict[str, object]) -> Example:
    ex = Example(Format.CHAT, countable=True)
    if len(value) > 1:
        _unrecognized(value, CHAT_KEYS, "", ex.issues)
    messages = value.get("messages")
    if not isinstance(messages, list):
        code = IssueCode.MISSING_MESSAGES if messages is None else IssueCode.WRONG_TYPE
        ex.issues.append((code, "messages is missing" if messages is None else "messages is not a list"))
        ex.countable = False
        return ex
    if not messages:
        ex.issues.append((IssueCode.MISSING_MESSAGES, "messages is empty"))
        ex.countable = False
        return ex
    ex.overhead = TOKENS_REPLY_PRIMING
    last = _messages(messages, "messages", ex)
    if "assistant" not in ex.roles:
        ex.issues.append((IssueCode.NO_ASSISTANT_MESSAGE, "no assistant message"))
    elif last is not None and not last.strip():
        ex.issues.append((IssueCode.EMPTY_COMPLETION, "the last assistant message is empty"))
    ex.label = last
    return ex


def _prompt_completion(value: dict[str, object]) -> Example:
    ex = Example(Format.PROMPT_COMPLETION)
    if len(value) > 2:
        _unrecognized(value, PROMPT_COMPLETION_KEYS, "", ex.issues)
    prompt = value.get("prompt")
    completion = value.get("completion")
    if prompt is None:
        ex.issues.append((IssueCode.MISSING_PROMPT, "prompt is missing"))
    elif not isinstance(prompt, str):
        ex.issues.append((IssueCode.WRONG_TYPE, "prompt is not a string"))
    if completion is None:
        ex.issues.append((IssueCode.MISSING_COMPLETION, "completion is missing"))
    elif not isinstance(completion, str):
        ex.issues.append((IssueCode.WRONG_TYPE, "completion is not a string"))
    elif not completion.strip():
        ex.issues.append((IssueCode.EMPTY_COMPLETION, "completion is empty"))
    if isinstance(prompt, str) and isinstance(completion, str):
        ex.texts = [prompt, completion]
        ex.targets = [1]
        ex.countable = True
        ex.label = completion
        ex.prompt = prompt
    return ex


def _output(value: dict[str, object], key: str, missing: IssueCode, ex: Example) -> None:
    output = value.get(key)
    if output is None:
        ex.issues.append((missing, f"{key} is missing"))
        return
    if not isinstance(output, list):
        ex.issues.append((IssueCode.WRONG_TYPE, f"{key} is not a list of messages"))
        return
    targets_before = len(ex.targets)
    roles_before = len(ex.roles)
    _messages(output, key, ex)
    roles = ex.roles[roles_before:]
    if roles != ["assistant"]:
        ex.issues.append((IssueCode.INVALID_OUTPUT, f"{key} must hold exactly one assistant message"))
    if key != "preferred_output":
        del ex.targets[targets_before:]  # only the preferred answer is trained towards


def _preference(value: dict[str, object]) -> Example:
    ex = Example(Format.PREFERENCE, countable=True)
    _unrecognized(value, PREFERENCE_KEYS, "", ex.issues)
    given = value.get("input")
    if given is None:
        ex.issues.append((IssueCode.MISSING_INPUT, "input is missing"))
    elif not isinstance(given, dict):
        ex.issues.append((IssueCode.WRONG_TYPE, "input is not an object"))
    else:
        _unrecognized(given, PREFERENCE_INPUT_KEYS, " in input", ex.issues)
        messages = given.get("messages")
        if not isinstance(messages, list) or not messages:
            ex.issues.append((IssueCode.MISSING_MESSAGES, "input.messages is missing or empty"))
        else:
            _messages(messages, "input.messages", ex)
    ex.overhead += TOKENS_REPLY_PRIMING
    _output(value, "preferred_output", IssueCode.MISSING_PREFERRED_OUTPUT, ex)
    _output(value, "non_preferred_output", IssueCode.MISSING_NON_PREFERRED_OUTPUT, ex)
    if not ex.texts:
        ex.countable = False
    return ex
