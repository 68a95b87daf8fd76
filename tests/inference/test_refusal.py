"""A guard's refusal is shaped like OpenAI's filtered answer: ``finish_reason`` ``content_filter``, whole or streamed.

The full path (a trained guard refusing over HTTP) is in test_routing.py; this checks every shape of the answer
without training one, and against OpenAI's own schemas.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.inference.gateway import refusal
from app.inference.schemas import ChatCompletionRequest, CompletionRequest
from app.registry.routing import Endpoint
from tests.openai_schema import assert_matches

GUARD = Endpoint(model="ft:tiny-smollm2:p:guard:abc", backend="local", base_model="tiny-smollm2")


def _chunks(answer: Any) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [chunk async for chunk in answer.events]

    return asyncio.run(collect())


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 4), stream=st.booleans(), text=st.text(min_size=1, max_size=40))
def test_chat_refusal_finishes_with_content_filter(n: int, stream: bool, text: str) -> None:
    body = ChatCompletionRequest.model_validate(
        {"model": "bot", "messages": [{"role": "user", "content": "hi"}], "n": n, "stream": stream}
    )

    answer = refusal(GUARD, body, text)

    if stream:
        chunks = _chunks(answer)
        finished = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        assert [f for f in finished if f is not None] == ["content_filter"] * n
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == text * n
    else:
        assert answer.body is not None
        assert [c["finish_reason"] for c in answer.body["choices"]] == ["content_filter"] * n
        assert_matches(answer.body, "CreateChatCompletionResponse")


def test_completion_refusal_finishes_with_content_filter() -> None:
    body = CompletionRequest.model_validate({"model": "bot", "prompt": ["a", "b"], "n": 2})

    answer = refusal(GUARD, body, "No.")

    assert answer.body is not None
    assert [c["finish_reason"] for c in answer.body["choices"]] == ["content_filter"] * 4
    assert [c["text"] for c in answer.body["choices"]] == ["No."] * 4
    assert_matches(answer.body, "CreateCompletionResponse")
