"""Distillation throughput: how fast a migration gets an upstream model's answers to a prompt set.

The upstream is a small aiohttp server on loopback that answers every chat completion after ``--latency-ms``
(a hosted fine-tuned model answers in a few hundred milliseconds; 0 measures the client's own cost). Three ways of
asking it the same ``--prompts`` prompts, back to back in one run:

  ftgw      app.migration.distil.answer_all: ``--concurrency`` calls at a time through the openai SDK, each answer
            appended to the resumable work file;
  loop      the script a team writes first: one ``client.chat.completions.create`` after another (the anchor);
  gather    the floor: the same SDK calls, ``--concurrency`` at a time with a semaphore, nothing recorded.

Prints prompts/s of each and the ratios ftgw/loop (the gain) and ftgw/gather (what recording costs).

    .venv/bin/python bench/migration_distil.py --prompts 400 --latency-ms 200 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
import time
from pathlib import Path

from aiohttp import web
from openai import AsyncOpenAI

from app.config import Settings, UpstreamProviderConfig
from app.migration import distil
from app.migration.schemas import DistilOptions
from app.migration.upstream import UpstreamSource
from app.providers.upstream import UpstreamProvider

KEY_ENV = "FTGW_BENCH_DISTIL_KEY"
REPLY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "ft:gpt-4o-mini-2024-07-18:acme:support:abc123",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "yes"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
}


async def serve(latency: float) -> tuple[web.AppRunner, str]:
    async def chat(_: web.Request) -> web.Response:
        if latency:
            await asyncio.sleep(latency)
        return web.json_response(REPLY)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/v1"


async def ours(base_url: str, prompts: list[distil.Prompt], concurrency: int, work: Path) -> float:
    config = UpstreamProviderConfig(name="bench", base_url=base_url, api_key_env=KEY_ENV, models={}, max_retries=0)
    provider = UpstreamProvider(config, Settings(data_dir=work, _env_file=None))  # type: ignore[call-arg]
    options = DistilOptions(concurrency=concurrency, max_tokens=8)
    start = time.perf_counter()
    async with UpstreamSource(provider) as source:
        answers = await distil.answer_all(source, REPLY["model"], prompts, options, work / "answers.jsonl")
    elapsed = time.perf_counter() - start
    assert sum(1 for a in answers.values() if a) == len(prompts)
    return len(prompts) / elapsed


async def loop(base_url: str, prompts: list[distil.Prompt]) -> float:
    async with AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0) as client:
        start = time.perf_counter()
        for prompt in prompts:
            await client.chat.completions.create(model=str(REPLY["model"]), messages=prompt.messages, max_tokens=8)  # type: ignore[arg-type]
        return len(prompts) / (time.perf_counter() - start)


async def gather(base_url: str, prompts: list[distil.Prompt], concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)
    async with AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0) as client:

        async def ask(prompt: distil.Prompt) -> None:
            async with slots:
                await client.chat.completions.create(model=str(REPLY["model"]), messages=prompt.messages, max_tokens=8)  # type: ignore[arg-type]

        start = time.perf_counter()
        await asyncio.gather(*(ask(p) for p in prompts))
        return len(prompts) / (time.perf_counter() - start)


async def main(args: argparse.Namespace) -> None:
    os.environ[KEY_ENV] = "k"
    prompts = [distil.Prompt("chat", [{"role": "user", "content": f"Is {i} a number?"}]) for i in range(args.prompts)]
    runner, base_url = await serve(args.latency_ms / 1000)
    try:
        loop_prompts = prompts[: max(args.concurrency, args.prompts // max(1, args.concurrency))]
        with tempfile.TemporaryDirectory() as folder:
            figures = {
                "ftgw": await ours(base_url, prompts, args.concurrency, Path(folder)),
                "gather": await gather(base_url, prompts, args.concurrency),
                # The sequential loop asks a slice only (it would take concurrency times as long): a rate all the same.
                "loop": await loop(base_url, loop_prompts),
            }
    finally:
        await runner.cleanup()
    print(json.dumps({"prompts": args.prompts, "latency_ms": args.latency_ms, "concurrency": args.concurrency}))
    for name, rate in figures.items():
        print(f"{name:7s} {rate:9.1f} prompts/s")
    print(f"ftgw / loop (anchor): {figures['ftgw'] / figures['loop']:.2f}x")
    print(f"ftgw / gather (floor): {figures['ftgw'] / figures['gather']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    asyncio.run(main(parser.parse_args()))
