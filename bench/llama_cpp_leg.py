"""One stream of greedy generation through llama.cpp (llama-cpp-python), for ``int8_serving.py``'s table.

Run by ``int8_serving.py --llama-cpp PYTHON`` under the interpreter of a virtualenv that has llama-cpp-python (never
the project's: it builds llama.cpp from source), once per GGUF file; prints one JSON line: tokens per second and
the time to the first token (median over the prompts, each run ``--rounds`` times after one warm-up).

    PYTHON bench/llama_cpp_leg.py MODEL.gguf --tokens 64 --threads 2 PROMPT [PROMPT ...]

With ``--quantize-to OUT --type q8_0|q4_k_m`` it writes MODEL.gguf quantized to OUT instead (llama.cpp's own
``llama_model_quantize``), for setting up those files (bench/README.md, "int8 serving").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("prompts", nargs="*")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--quantize-to")
    parser.add_argument("--type", choices=["q8_0", "q4_k_m"], default="q8_0")
    args = parser.parse_intermixed_args()  # options may come between the model and the prompts

    if args.quantize_to:
        quantize(args.model, args.quantize_to, args.type, args.threads)
        return

    from llama_cpp import Llama

    llm = Llama(model_path=args.model, n_ctx=512, n_threads=args.threads, n_batch=512, seed=0, verbose=False)

    def stream(prompt: str) -> tuple[int, float, float]:
        started = time.perf_counter()
        first, tokens = 0.0, 0
        for _ in llm.create_completion(prompt, max_tokens=args.tokens, temperature=0.0, stream=True):
            if not tokens:
                first = time.perf_counter() - started
            tokens += 1
        return tokens, time.perf_counter() - started, first

    stream(args.prompts[0])  # warm-up
    runs = [stream(p) for _ in range(args.rounds) for p in args.prompts]
    print(
        json.dumps(
            {
                "tok_s": statistics.median(n / seconds for n, seconds, _ in runs),
                "ttft_s": statistics.median(first for _, _, first in runs),
                "tokens": sum(n for n, _, _ in runs),
                "streams": len(runs),
            }
        )
    )


def quantize(source: str, target: str, kind: str, threads: int) -> None:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[kind]
    params.nthread = threads
    if llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"llama.cpp could not quantize {source}")


if __name__ == "__main__":
    main()
