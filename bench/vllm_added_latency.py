"""Benchmark: the latency ftgw adds in front of vLLM, measured with the hops interleaved.

On a 2-core machine a vLLM-CPU chat answer takes ~180 ms and varies by several ms from minute to minute, so figures
taken one target after the other (as ``vllm_serving.py``'s wrk runs are) can differ by more than the 1 ms being
looked for. Here one client sends the same tiny chat (``max_tokens`` 1, temperature 0) in rounds, ``--per-round``
requests to each target in turn, and keeps every round but the first:

* ``direct``: vLLM-CPU itself (``tests/vllm_server.py``);
* ``nginx``: an nginx ``proxy_pass`` hop in front of it (keep-alive upstream): what any extra process costs here;
* ``ftgw``: ``ftgw serve`` with ``FTGW_VLLM`` naming that vLLM (auth, routing, limits, usage, metrics on).

It prints each target's p50 and mean, and each hop's added p50 and mean over ``direct``, with the CPU's busy share
before the run. Needs nginx (``apt-get install -y nginx-light``), ``.venv-vllm`` and the converted base model.

    .venv/bin/python bench/vllm_added_latency.py [--rounds 8] [--per-round 10] [--model-cache /work/model-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from routed_inference import report_idle  # noqa: E402
from servers import served_gateway  # noqa: E402

from tests.loopback import free_port  # noqa: E402
from tests.vllm_server import VllmServer  # noqa: E402

MODEL = "smollm2-135m-instruct"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 1, "temperature": 0}


def nginx_in_front(upstream_port: int, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    (folder / "nginx.conf").write_text(
        f"worker_processes 1; pid {folder}/nginx.pid; error_log {folder}/nginx-error.log; events {{}}\n"
        f"http {{ access_log off; upstream vllm {{ server 127.0.0.1:{upstream_port}; keepalive 16; }}\n"
        f"  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://vllm; proxy_http_version 1.1;\n"
        '    proxy_set_header Connection ""; } } }\n'
    )
    process = subprocess.Popen(["nginx", "-c", str(folder / "nginx.conf"), "-g", "daemon off;"])
    return process, port


def measure(targets: dict[str, tuple[str, str]], rounds: int, per_round: int) -> dict[str, list[float]]:
    clients = {
        name: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        for name, (url, key) in targets.items()
    }
    times: dict[str, list[float]] = {name: [] for name in targets}
    for round_number in range(rounds + 1):
        for name, client in clients.items():
            for _ in range(per_round):
                began = time.perf_counter()
                answered = client.post("/chat/completions", json=BODY)
                elapsed = (time.perf_counter() - began) * 1000
                if answered.status_code != 200:
                    raise SystemExit(f"{name} answered {answered.status_code}: {answered.text[:300]}")
                if round_number:  # the first round warms every path up
                    times[name].append(elapsed)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--vllm-env", action="append", default=[], help="NAME=VALUE for vLLM's environment")
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument(
        "--model-cache", type=Path, default=Path(os.environ.get("FTGW_MODEL_CACHE_DIR", "/work/model-cache"))
    )
    args = parser.parse_args()
    report_idle()
    with (
        tempfile.TemporaryDirectory(prefix="ftgw-bench-hop-") as run_dir,
        VllmServer(args.model_cache / MODEL, MODEL, max_loras=2) as vllm,
    ):
        nginx, nginx_port = nginx_in_front(vllm.port, Path(run_dir))
        fleet = [{"name": "vllm", "base_model": MODEL, "urls": [vllm.url]}]
        env = {"FTGW_VLLM": json.dumps(fleet), "FTGW_EMBEDDED_WORKER": "false"}
        try:
            with served_gateway(args.model_cache, env) as gateway:
                targets = {
                    "direct": (vllm.url, "none"),
                    "nginx": (f"http://127.0.0.1:{nginx_port}/v1", "none"),
                    "ftgw": (gateway.base_url, gateway.key),
                }
                times = measure(targets, args.rounds, args.per_round)
        finally:
            nginx.terminate()
    direct = times["direct"]
    print(f"\n{args.rounds} rounds x {args.per_round} requests per target, interleaved")
    print(f"{'target':<8} {'p50 (ms)':>10} {'mean (ms)':>10} {'added p50':>10} {'added mean':>11}")
    for name, values in times.items():
        p50, mean = statistics.median(values), statistics.mean(values)
        added = f"{p50 - statistics.median(direct):+10.2f} {mean - statistics.mean(direct):+11.2f}"
        print(f"{name:<8} {p50:10.2f} {mean:10.2f} {added if name != 'direct' else '':>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
