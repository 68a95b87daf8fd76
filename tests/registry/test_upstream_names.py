"""Aliases named as another provider's fine-tuned model (``ft:gpt-4o-mini-…:acme:support:abc123``): callers keep
the id they have, the project decides what answers it."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import Gateway, make_tenant

OPENAI_ID = "ft:gpt-4o-mini-2024-07-18:acme:support:abc123"
NO_SUFFIX = "ft:gpt-3.5-turbo-0613:personal::7qTlsdhL"  # OpenAI leaves an unset suffix empty
BASE = "tiny-smollm2"


def test_an_upstream_model_id_is_an_alias_name_callers_can_use(gateway: Gateway) -> None:
    tenant, other = make_tenant(gateway), make_tenant(gateway)
    with gateway.http(tenant.key) as http:
        for name in (OPENAI_ID, NO_SUFFIX):
            assert http.post("/v1/registry/aliases", json={"name": name}).status_code == 200
            version = http.post(f"/v1/registry/aliases/{name}/versions", json={"targets": [{"model": BASE}]})
            assert version.status_code == 200, version.text
        listed = [a["name"] for a in http.get("/v1/registry/aliases").json()["data"]]
    assert {OPENAI_ID, NO_SUFFIX} <= set(listed)
    for name in (OPENAI_ID, f"{OPENAI_ID}@1", NO_SUFFIX):
        answer = tenant.client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert answer.model == BASE
    # Another project has no such name; an unknown ft: id is the usual 404 on `model`.
    for client, name in ((other.client, OPENAI_ID), (tenant.client, "ft:gpt-4o-mini-2024-07-18:acme:support:nope")):
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert caught.value.body["param"] == "model"  # type: ignore[index]
        assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


@pytest.mark.parametrize("name", ["ft:", "ft:only", "ft:a:", "ft:a b:c", "ft:a:b@1", "ft:a:" + "b" * 130, "ft::x"])
def test_names_that_are_not_model_ids_are_refused(gateway: Gateway, name: str) -> None:
    tenant = make_tenant(gateway)
    with gateway.http(tenant.key) as http:
        refused = http.post("/v1/registry/aliases", json={"name": name})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "name"
