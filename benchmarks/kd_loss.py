"""The cached teacher's top-k KL against plain CE, the loss alone, at real vocabulary sizes.

A KD step from a teacher cache differs from a CE step only in its loss, and the loss is the one
part of the step whose cost grows with the student's vocabulary on both sides: the top-k KL needs
the student's whole log-normaliser and the mass of its tail (every token outside the teacher's
top-k). This prints, per vocabulary size, the median forward+backward time of summed CE
(``losses.divergences.cross_entropy``, torch's fused kernel), of
``losses.sparse.sparse_forward_kl`` and of both together (alpha-T's terms), and the KL/CE ratio,
on the same random float32 logits, called as the objective calls them (one ``[1, n, V]`` chunk of
target positions with its mask):

    python benchmarks/kd_loss.py [--positions 512 --top-k 64 --repeats 5 --threads 2]

Vocabularies: Qwen2.5's 151,936 (a derived Qwen student keeps it), Gemma 3's 262,144, and 24,000
(about what a trimmed code student keeps). Needs no model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from codistill.losses.divergences import cross_entropy
from codistill.losses.sparse import sparse_forward_kl, sparse_teacher_targets

VOCABS = {"Qwen2.5": 151_936, "Gemma 3": 262_144, "trimmed": 24_000}


def _time(loss_fn, logits: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward+backward of ``loss_fn`` on a fresh leaf copy of ``logits``,
    after one untimed warm-up."""
    times = []
    for i in range(repeats + 1):
        x = logits.clone().requires_grad_(True)
        tick = time.perf_counter()
        loss_fn(x).backward()
        if i:
            times.append(time.perf_counter() - tick)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=512, help="target tokens (rows) per call")
    ap.add_argument("--top-k", type=int, default=64, help="k of the teacher cache")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(
        f"{args.positions} target positions, teacher top-{args.top_k} + tail, float32, "
        f"{args.threads} threads; median of {args.repeats} forward+backward after 1 warm-up"
    )
    head = ["CE (s)", "top-k KL (s)", "CE + KL (s)", "KL/CE", "(CE+KL)/CE"]
    print(f"{'vocabulary':24}" + "".join(f"{h:>14}" for h in head))
    for name, vocab in VOCABS.items():
        t_ce, t_kl, t_both = _measure(vocab, args.positions, args.top_k, args.repeats, gen)
        print(
            f"{name + f' ({vocab:,})':24}{t_ce:>14.3f}{t_kl:>14.3f}{t_both:>14.3f}"
            f"{t_kl / t_ce:>13.2f}x{t_both / t_ce:>13.2f}x"
        )


def _measure(vocab: int, positions: int, k: int, repeats: int, gen: torch.Generator):
    """Seconds of CE, of the top-k KL and of both, at one vocabulary size."""
    # Peaked rows, as a code LM's are: the teacher's top-k holds most of the mass.
    teacher = torch.randn(positions, vocab, generator=gen) * 3
    logits = (0.7 * teacher + torch.randn(positions, vocab, generator=gen))[None]
    top_logp, top_ids = torch.log_softmax(teacher, -1).topk(k, dim=-1)
    del teacher
    targets = sparse_teacher_targets(top_ids, top_logp, teacher_vocab_size=vocab)
    labels = top_ids[:, 0][None]
    mask = torch.ones(1, positions, dtype=torch.bool)

    def ce(x):
        return cross_entropy(x, labels, mask, reduction="sum")

    def kl(x):
        return sparse_forward_kl(x, targets, mask, reduction="sum")

    return (
        _time(ce, logits, repeats),
        _time(kl, logits, repeats),
        _time(lambda x: ce(x) + kl(x), logits, repeats),
    )


if __name__ == "__main__":
    main()
