"""Benchmark: routed chat completions through ftgw against LiteLLM and against the upstream itself.

One run starts, measures and stops three servers on this machine, back to back:

  (a) nginx direct: the fixed-reply upstream of bench/shared/upstream-nginx.conf on 127.0.0.1:18081;
  (b) LiteLLM proxy (bench/shared/litellm.yaml) on 127.0.0.1:14000 in front of it;
  (c) the bare passthrough (bench/passthrough.py: uvicorn + aiohttp, nothing else) on 127.0.0.1:18095 in front of it,
      then the same on ftgw's own upstream client (app/kit/http1.py), the floor of a routed call on that client;
  (d) ftgw on 127.0.0.1:18090 in front of it, called through a registry alias ("bench-bot" -> test-model).

Each target gets a short warm-up, then wrk (with chat-post.lua, ``--latency``) at ``--connections`` (16) and at
one connection, ``--duration`` seconds each. Prints req/s at 16 connections, p50 latency at 1 connection, the
ratios ftgw/LiteLLM req/s (goal >= 20x) and ftgw/passthrough req/s (goal >= 0.75), ftgw p50 minus nginx-direct
p50 (goal <= 0.75 ms), ftgw's p99/p50 at 16 connections (goal <= 3) and ftgw's resident memory before and after
its legs (it must stay flat).

Needs, outside the project's dependencies (never add them to pyproject.toml):

    apt-get install -y nginx-light wrk
    python3 -m venv /work/litellm-venv && /work/litellm-venv/bin/pip install 'litellm[proxy]'

Usage:

    .venv/bin/python bench/routed_inference.py [--duration 10] [--warmup 5] [--connections 16] [--threads 1]
        [--litellm-bin /work/litellm-venv/bin/litellm | --skip-litellm] [--skip-passthrough] [--ftgw-workers N]
        [--skip-ftgw] [--redis-url URL] [--upstream-port 18081] [--litellm-port 14000] [--passthrough-port 18095]
        [--ftgw-port 18090] [--keep-run-dir]

Every process is started in its own session under a temporary RUN_DIR and killed on exit (also on Ctrl-C or
an error); logs of a failed start are printed. The wrk client uses CPU too: on a 2-core box keep ``--threads 1``.
The figures are only worth comparing within one run on an otherwise idle machine: the run starts by printing
how busy the CPU was. LiteLLM gets faster over its first ~30 s of load, so a longer ``--warmup`` raises its
figure (and ftgw's, the same for all); LiteLLM runs with LITELLM_LOCAL_MODEL_COST_MAP=True, as there is no
network to fetch its price list from. A failed ftgw leg still prints the nginx/LiteLLM figures, then exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from servers import BenchError, ftgw_command, http_status, port_in_use, started, temporary_run_dir, wait_ready

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = Path(os.environ.get("FTGW_SHARED_BENCH", REPO / "bench" / "shared"))  # the team's anchors

# The defaults of --upstream-port, --litellm-port and --ftgw-port (those of bench/shared and the ftgw contract).
NGINX_PORT = 18081
LITELLM_PORT = 14000
PASSTHROUGH_PORT = 18095
FTGW_PORT = 18090
UPSTREAM_MODEL = "test-model"
ALIAS = "bench-bot"
UPSTREAM_KEY = "sk-upstream"
EXPECTED_CONTENT = "Paris"
CHAT_PATH = "/v1/chat/completions"


# --------------------------------------------------------------------------------------------------- wrk output


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Read req/s, the latency percentiles (``--latency``), the request count and errors from wrk's report."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    percentiles = {
        int(p): _to_ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\b", output, re.M)
    }
    count = re.search(r"^\s+(\d+) requests in", output, re.M)
    if rps is None or count is None or 50 not in percentiles:
        raise BenchError(f"could not parse wrk's output (was --latency given?):\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(
        requests_per_second=float(rps.group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles.get(99, float("nan")),
        requests=int(count.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def post_json(url: str, body: object, key: str) -> tuple[int, dict[str, str], str]:
    """POST JSON; return status, headers (lower-cased names) and the body text, errors included."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read().decode(errors="replace")


def chat_body(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "What is the capital of France?"}]}


def check_chat(name: str, url: str, model: str, key: str, header: tuple[str, str] | None = None) -> None:
    """One chat call must answer 200 with the upstream's "Paris" (and ``header``, when given)."""
    status, headers, text = post_json(url, chat_body(model), key)
    problem = None
    if status != 200:
        problem = f"status {status}"
    else:
        try:
            content = json.loads(text)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            content = None
        if content != EXPECTED_CONTENT:
            problem = f"choices[0].message.content is {content!r}, not {EXPECTED_CONTENT!r}"
        elif header and headers.get(header[0]) != header[1]:
            problem = f"header {header[0]} is {headers.get(header[0])!r}, not {header[1]!r}"
    if problem:
        raise BenchError(f"{name}: chat call to {url} failed: {problem}\n{text[:3000]}")


# --------------------------------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class WrkOptions:
    duration: float
    warmup: float
    connections: int
    threads: int
    timeout: float


def write_lua(run_dir: Path, name: str, model: str, key: str) -> Path:
    """chat-post.lua with this target's model and key."""
    template = (SHARED_BENCH / "chat-post.lua").read_text()
    script = template.replace('"model":"test-model"', f'"model":"{model}"').replace("Bearer KEY", f"Bearer {key}")
    if f'"model":"{model}"' not in script or f"Bearer {key}" not in script:
        raise BenchError(f"unexpected chat-post.lua: {template}")
    path = run_dir / f"{name}.lua"
    path.write_text(script)
    return path


def wrk(url: str, lua: Path, connections: int, threads: int, seconds: float, timeout: float) -> WrkResult:
    args = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout))}s",
        "--latency",
        "-s",
        str(lua),
        url,
    ]
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=seconds + timeout + 30)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


@dataclass(frozen=True)
class TargetResult:
    name: str
    many: WrkResult
    one: WrkResult


def measure(name: str, url: str, lua: Path, options: WrkOptions) -> TargetResult:
    """Warm-up, then wrk at ``options.connections`` and at one connection."""
    print(
        f"[{name}] warm-up {options.warmup:.0f} s, then {options.duration:.0f} s at {options.connections} "
        f"connections and {options.duration:.0f} s at 1",
        flush=True,
    )
    if options.warmup > 0:
        wrk(url, lua, options.connections, options.threads, options.warmup, options.timeout)
    many = wrk(url, lua, options.connections, options.threads, options.duration, options.timeout)
    one = wrk(url, lua, 1, 1, options.duration, options.timeout)
    for label, result in ((f"{options.connections} conn", many), ("1 conn", one)):
        print(
            f"[{name}] {label}: {result.requests_per_second:,.1f} req/s, p50 {result.p50_ms:.3f} ms, "
            f"p99 {result.p99_ms:.3f} ms, {result.requests} requests",
            flush=True,
        )
        if result.non_2xx or result.socket_errors:
            raise BenchError(
                f"{name} ({label}): {result.non_2xx} non-2xx responses and "
                f"{result.socket_errors} socket errors: the figures are not of successful calls"
            )
    return TargetResult(name, many, one)


# --------------------------------------------------------------------------------------------------- targets


def with_upstream_port(text: str, port: int, source: str) -> str:
    """``text`` (a bench/shared file) with the upstream's 127.0.0.1:18081 moved to ``port``."""
    default = f"127.0.0.1:{NGINX_PORT}"
    if default not in text:
        raise BenchError(f"{source} no longer names {default}: update this script")
    return text.replace(default, f"127.0.0.1:{port}")


def start_nginx(stack: ExitStack, run_dir: Path, port: int) -> str:
    """The fixed-reply upstream, in the foreground (``daemon off``) so that it is our child and dies with us."""
    nginx_dir = run_dir / "nginx"
    nginx_dir.mkdir()
    conf = (SHARED_BENCH / "upstream-nginx.conf").read_text().replace("RUN_DIR", str(nginx_dir))
    conf = with_upstream_port(conf.replace("daemon on;", "daemon off;"), port, "upstream-nginx.conf")
    conf_path = nginx_dir / "nginx.conf"
    conf_path.write_text(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    server = stack.enter_context(
        started(
            "nginx", [nginx, "-c", str(conf_path), "-e", str(nginx_dir / "nginx.err"), "-p", str(nginx_dir)], run_dir
        )
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(server, lambda: http_status(f"{base}/") == 200, 10)
    check_chat("nginx", base + CHAT_PATH, UPSTREAM_MODEL, UPSTREAM_KEY)
    return base + CHAT_PATH


def start_litellm(stack: ExitStack, run_dir: Path, litellm_bin: Path, port: int, upstream_port: int) -> tuple[str, str]:
    key = "sk-bench-litellm-" + secrets.token_hex(16)
    config = run_dir / "litellm.yaml"
    text = (SHARED_BENCH / "litellm.yaml").read_text().replace("MASTER_KEY", key)
    config.write_text(with_upstream_port(text, upstream_port, "litellm.yaml"))
    # No network here: use the packaged model cost map instead of trying (and retrying) to fetch it.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    args = [str(litellm_bin), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    server = stack.enter_context(started("litellm", args, run_dir, env))
    base = f"http://127.0.0.1:{port}"
    wait_ready(server, lambda: http_status(f"{base}/health/liveliness") == 200, 120)
    check_chat("LiteLLM", base + CHAT_PATH, UPSTREAM_MODEL, key)
    return base + CHAT_PATH, key


def start_passthrough(stack: ExitStack, run_dir: Path, port: int, upstream_port: int, client: str = "aiohttp") -> str:
    """bench/passthrough.py under uvicorn (uvloop and httptools, as ftgw runs), forwarding to the upstream through
    ``client`` (aiohttp, or ftgw's own: http1)."""
    env = {**os.environ, "UPSTREAM": f"http://127.0.0.1:{upstream_port}", "CLIENT": client}
    args = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).parent), "passthrough:app"]
    args += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    server = stack.enter_context(started("passthrough", args, run_dir, env))
    base = f"http://127.0.0.1:{port}"
    wait_ready(server, lambda: port_in_use(port), 30)
    check_chat("passthrough", base + CHAT_PATH, UPSTREAM_MODEL, "x")
    return base + CHAT_PATH


def resident_kib(pid: int) -> int | None:
    """Resident memory of ``pid`` and its children (uvicorn's workers), in KiB; None where /proc cannot tell."""
    total, found = 0, False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(entry.name) != pid and int(fields[1]) != pid:  # fields[1]: the parent's pid
            continue
        rss = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if rss:
            total, found = total + int(rss.group(1)), True
    return total if found else None


def serve_has_workers_option(command: list[str]) -> bool:
    done = subprocess.run([*command, "serve", "--help"], capture_output=True, text=True, cwd=REPO, check=False)
    return "--workers" in done.stdout


def ftgw_env(
    data_dir: Path, bootstrap_key: str, port: int, upstream_port: int, redis_url: str | None = None
) -> dict[str, str]:
    providers = [
        {
            "name": "edge",
            "base_url": f"http://127.0.0.1:{upstream_port}/v1",
            "api_key_env": "UPSTREAM_KEY",
            "models": [UPSTREAM_MODEL],
        }
    ]
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("FTGW_")},
        "FTGW_DATA_DIR": str(data_dir),
        "FTGW_PORT": str(port),
        "FTGW_HOST": "127.0.0.1",
        "FTGW_BOOTSTRAP_KEY": bootstrap_key,
        "FTGW_EMBEDDED_WORKER": "false",
        "FTGW_LOG_LEVEL": "warning",
        "UPSTREAM_KEY": UPSTREAM_KEY,
        "FTGW_PROVIDERS": json.dumps(providers),
        # With Redis the gateway runs as a replica would: limits, revocations and routes shared (a prefix of its own).
        **(
            {"FTGW_REDIS_URL": redis_url, "FTGW_REDIS_PREFIX": f"ftgw-bench-{secrets.token_hex(4)}:"}
            if redis_url
            else {}
        ),
    }


def create_alias(base: str, key: str) -> None:
    """Alias ``bench-bot`` with one active version: all traffic to the upstream's test-model."""
    steps: list[tuple[str, dict[str, object]]] = [
        ("/v1/registry/aliases", {"name": ALIAS}),
        (f"/v1/registry/aliases/{ALIAS}/versions", {"targets": [{"model": UPSTREAM_MODEL, "weight": 1}]}),
    ]
    for path, body in steps:
        status, _, text = post_json(base + path, body, key)
        if status not in (200, 201):
            raise BenchError(f"ftgw: POST {path} {json.dumps(body)} answered {status}:\n{text[:3000]}")


def start_ftgw(
    stack: ExitStack, run_dir: Path, workers: int, port: int, upstream_port: int, redis_url: str | None = None
) -> tuple[str, str, int]:
    key = "sk-bench-" + secrets.token_hex(16)
    data_dir = run_dir / "ftgw-data"
    data_dir.mkdir()
    command = ftgw_command()
    args = [*command, "serve"] + (["--workers", str(workers)] if workers != 1 else [])
    server = stack.enter_context(
        started("ftgw", args, run_dir, ftgw_env(data_dir, key, port, upstream_port, redis_url))
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(server, lambda: http_status(f"{base}/health") == 200, 120)
    create_alias(base, key)
    check_chat("ftgw", base + CHAT_PATH, ALIAS, key, header=("x-ftgw-model", UPSTREAM_MODEL))
    return base + CHAT_PATH, key, server.process.pid


# --------------------------------------------------------------------------------------------------- report


def print_table(results: dict[str, TargetResult], connections: int) -> None:
    if not results:
        return
    print()
    print(
        f"{'target':<18} {f'req/s @{connections}':>14} {'p50 @1 (ms)':>12} {'p99 @1 (ms)':>12} "
        f"{f'p50 @{connections} (ms)':>15} {f'p99 @{connections} (ms)':>15}"
    )
    for name, r in results.items():
        print(
            f"{name:<18} {r.many.requests_per_second:>14,.1f} {r.one.p50_ms:>12.3f} {r.one.p99_ms:>12.3f} "
            f"{r.many.p50_ms:>15.3f} {r.many.p99_ms:>15.3f}"
        )
    print()
    ftgw, litellm, nginx = results.get("ftgw"), results.get("litellm"), results.get("nginx")
    passthrough = results.get("passthrough")
    if ftgw and passthrough:
        ratio = ftgw.many.requests_per_second / passthrough.many.requests_per_second
        verdict = "ok" if ratio >= 0.75 else "BELOW GOAL"
        print(f"ftgw / bare passthrough req/s @{connections}: {ratio:.2f}x  (goal >= 0.75: {verdict})")
    lean = results.get("passthrough-http1")
    if ftgw and lean:
        ratio = ftgw.many.requests_per_second / lean.many.requests_per_second
        print(f"ftgw / passthrough on ftgw's upstream client req/s @{connections}: {ratio:.2f}x  (no goal: its floor)")
    if ftgw:
        tail = ftgw.many.p99_ms / ftgw.many.p50_ms
        verdict = "ok" if tail <= 3 else "ABOVE GOAL"
        print(f"ftgw p99 / p50 @{connections}: {tail:.2f}  (goal <= 3: {verdict})")
    if ftgw and litellm:
        ratio = ftgw.many.requests_per_second / litellm.many.requests_per_second
        verdict = "ok" if ratio >= 20 else "BELOW GOAL"
        print(f"ftgw / LiteLLM req/s @{connections}: {ratio:.1f}x  (goal >= 20x: {verdict})")
    if ftgw and nginx:
        overhead = ftgw.one.p50_ms - nginx.one.p50_ms
        verdict = "ok" if overhead <= 0.75 else "ABOVE GOAL"
        print(f"ftgw p50 - nginx p50 @1: {overhead:.3f} ms  (goal <= 0.75 ms: {verdict})")
    if passthrough and nginx:
        print(f"bare passthrough p50 - nginx p50 @1: {passthrough.one.p50_ms - nginx.one.p50_ms:.3f} ms")
    if litellm and nginx:
        print(f"LiteLLM p50 - nginx p50 @1: {litellm.one.p50_ms - nginx.one.p50_ms:.3f} ms")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10, help="seconds of each measured wrk run (10)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of warm-up per target (5; 0: none)")
    parser.add_argument("--connections", type=int, default=16, help="connections of the loaded run (16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads of the loaded run (1: 2-core box)")
    parser.add_argument("--timeout", type=float, default=10, help="wrk's per-request timeout in seconds (10)")
    parser.add_argument("--litellm-bin", type=Path, default=Path("/work/litellm-venv/bin/litellm"))
    parser.add_argument("--skip-litellm", action="store_true", help="measure nginx and ftgw only")
    parser.add_argument("--skip-passthrough", action="store_true", help="leave out the bare passthrough")
    parser.add_argument("--skip-ftgw", action="store_true", help="leave out ftgw")
    parser.add_argument("--ftgw-workers", type=int, default=1, help="`ftgw serve --workers N` (1)")
    parser.add_argument("--upstream-port", type=int, default=NGINX_PORT, help=f"nginx upstream ({NGINX_PORT})")
    parser.add_argument("--litellm-port", type=int, default=LITELLM_PORT, help=f"LiteLLM proxy ({LITELLM_PORT})")
    parser.add_argument(
        "--redis-url", default=None, help="run ftgw with FTGW_REDIS_URL (shared state, as replicas run it)"
    )
    parser.add_argument(
        "--passthrough-port", type=int, default=PASSTHROUGH_PORT, help=f"bare passthrough ({PASSTHROUGH_PORT})"
    )
    parser.add_argument("--ftgw-port", type=int, default=FTGW_PORT, help=f"ftgw ({FTGW_PORT})")
    parser.add_argument("--keep-run-dir", action="store_true", help="keep the temporary RUN_DIR (logs) after")
    return parser.parse_args(argv)


def check_tools(args: argparse.Namespace) -> None:
    missing = [tool for tool in ("wrk", "nginx") if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists())]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: apt-get install -y nginx-light wrk")
    if not args.skip_litellm and not args.litellm_bin.exists():
        raise SystemExit(
            f"LiteLLM not found at {args.litellm_bin}. Install it in a scratch venv outside the repo:\n"
            "    python3 -m venv /work/litellm-venv && /work/litellm-venv/bin/pip install 'litellm[proxy]'\n"
            "or pass --litellm-bin PATH, or --skip-litellm."
        )
    ports = {
        "nginx": args.upstream_port,
        "LiteLLM": args.litellm_port,
        "passthrough": args.passthrough_port,
        "ftgw": args.ftgw_port,
    }
    if args.skip_litellm:
        del ports["LiteLLM"]
    if args.skip_passthrough:
        del ports["passthrough"]
    if args.skip_ftgw:
        del ports["ftgw"]
    busy = [f"{port} ({name})" for name, port in ports.items() if port_in_use(port)]
    if busy:
        raise SystemExit(
            f"something already listens on 127.0.0.1 port {', '.join(busy)}: stop it, or pick other ports "
            "(--upstream-port, --litellm-port, --ftgw-port)"
        )
    if not args.skip_ftgw and args.ftgw_workers != 1 and not serve_has_workers_option(ftgw_command()):
        raise SystemExit(f"--ftgw-workers {args.ftgw_workers}: `ftgw serve` has no --workers option here")


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all cores from /proc/stat; None where there is no such file."""
    try:
        fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields[:8])


def report_idle(seconds: float = 1.0) -> None:
    """How busy the machine is before we start: anything else running on a 2-core box skews every figure."""
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return
    busy = 1 - (after[0] - before[0]) / (after[1] - before[1])
    cores = os.cpu_count() or 1
    note = "  (WARNING: something else is running; figures will be noisy)" if busy > 0.1 else ""
    print(f"CPU busy before the run: {busy:.0%} of {cores} cores{note}", flush=True)


def run(args: argparse.Namespace, results: dict[str, TargetResult]) -> None:
    """Measure each target in turn into ``results`` (kept by the caller, so a later failure loses nothing)."""
    with temporary_run_dir("ftgw-bench-routed-", args.keep_run_dir) as run_dir:
        report_idle()
        measure_targets(args, run_dir, results)


def measure_targets(args: argparse.Namespace, run_dir: Path, results: dict[str, TargetResult]) -> None:
    """nginx, then each target ``args`` leaves in, started in front of it one at a time, measured into ``results``;
    their logs under ``run_dir``."""
    options = WrkOptions(args.duration, args.warmup, args.connections, args.threads, args.timeout)
    with ExitStack() as stack:
        nginx_url = start_nginx(stack, run_dir, args.upstream_port)
        results["nginx"] = measure("nginx", nginx_url, write_lua(run_dir, "nginx", UPSTREAM_MODEL, "x"), options)
        if not args.skip_litellm:
            with ExitStack() as litellm_stack:
                url, key = start_litellm(
                    litellm_stack, run_dir, args.litellm_bin, args.litellm_port, args.upstream_port
                )
                lua = write_lua(run_dir, "litellm", UPSTREAM_MODEL, key)
                results["litellm"] = measure("litellm", url, lua, options)
        if not args.skip_passthrough:
            with ExitStack() as passthrough_stack:
                url = start_passthrough(passthrough_stack, run_dir, args.passthrough_port, args.upstream_port)
                lua = write_lua(run_dir, "passthrough", UPSTREAM_MODEL, "x")
                results["passthrough"] = measure("passthrough", url, lua, options)
            with ExitStack() as passthrough_stack:
                url = start_passthrough(
                    passthrough_stack, run_dir, args.passthrough_port, args.upstream_port, client="http1"
                )
                lua = write_lua(run_dir, "passthrough-http1", UPSTREAM_MODEL, "x")
                results["passthrough-http1"] = measure("passthrough-http1", url, lua, options)
        if not args.skip_ftgw:
            with ExitStack() as ftgw_stack:
                url, key, pid = start_ftgw(
                    ftgw_stack, run_dir, args.ftgw_workers, args.ftgw_port, args.upstream_port, args.redis_url
                )
                before = resident_kib(pid)
                results["ftgw"] = measure("ftgw", url, write_lua(run_dir, "ftgw", ALIAS, key), options)
                after = resident_kib(pid)
                if before is not None and after is not None:
                    mib = f"{before / 1024:.1f} MiB before its legs, {after / 1024:.1f} MiB after"
                    print(f"[ftgw] resident memory {mib}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools(args)
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the ExitStacks kill every server (SIGINT too, even where inherited
    # as ignored, e.g. started with `&` from a script).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    results: dict[str, TargetResult] = {}
    try:
        run(args, results)
    except BenchError as error:
        print_table(results, args.connections)
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print_table(results, args.connections)
        print("interrupted: servers stopped", file=sys.stderr)
        return 130
    print_table(results, args.connections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
