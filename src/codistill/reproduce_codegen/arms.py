"""The arms of ``codistill reproduce codegen``: what each trains on and with which loss, and how
the teacher samples when it writes several solutions per prompt.

Read by the study (:mod:`codistill.reproduce_codegen`), which trains them, and by its report
(:mod:`codistill.reproduce_codegen.report`), which says how they differ. An arm is one entry of
:data:`ARMS`.
"""

from __future__ import annotations

from typing import Any

BASELINE = "sft"
# The arms on every training prompt are also compared with CE-only on those prompts' references
# (same prompts in the same order): the classical alpha-T comparison for ``kd-ref``, sequence-
# level KD against CE-only for ``seq``.
REFERENCE_BASELINE = "ce"
# Each arm: its loss (a preset's) and its targets; "verified" = the teacher's passing solutions.
ARMS: dict[str, dict[str, Any]] = {
    "sft": {"preset": "alpha-temperature", "loss": "ce", "targets": "verified"},
    "kd": {"preset": "alpha-temperature", "targets": "verified"},
    # Reverse KL is mode-seeking: it does not push the student to cover a teacher's side modes
    # (the cpu study's kd arm took up the teacher's "# Your code here" openings three times as
    # often as the teacher wrote them).
    "rkl": {
        "preset": "alpha-temperature",
        "loss": {"ce": 0.5, "reverse_kl": 0.5},
        "targets": "verified",
    },
    # CE-only and KD on the reference solutions of every training prompt: the standard
    # library's functions have no tests, so no verified teacher solution, but they have their
    # own bodies; these two arms see about three times the examples of the verified ones.
    "ce": {"preset": "alpha-temperature", "loss": "ce", "targets": "reference"},
    "kd-ref": {"preset": "alpha-temperature", "targets": "reference"},
    # Sequence-level KD (Kim & Rush) on the teacher's solution of every training prompt,
    # passing or not (what paid on the assertion studies), and alpha-T along those solutions:
    # the teacher's style on all the prompts the reference arms see.
    "seq": {"preset": "alpha-temperature", "loss": "ce", "targets": "teacher"},
    "kd-seq": {"preset": "alpha-temperature", "targets": "teacher"},
    # On-policy distillation from a fixed policy (one round of GKD, Agarwal et al. 2024): the
    # untouched student's own greedy solution of every training prompt, the teacher's KL
    # alone along it (CE would teach the student its own mistakes). Fixed targets teach the
    # student prefixes it never writes; these are the prefixes it writes at test time, and the
    # teacher says at each token where it would have gone instead. Fresh samples at every step
    # (``on_policy`` in the config) need the online teacher, which costs a forward of it and a
    # sampled continuation per micro-batch; this arm pays one generation and one cache.
    "kd-own": {"preset": "alpha-temperature", "loss": {"kl": 1.0}, "targets": "student"},
    # Layer-wise distillation for a student derived from the teacher's layers (``losses.hidden``):
    # alpha-T on the references plus, at every student layer, the distance of its residual
    # stream from the teacher's after the layer it was copied from. A teacher cache holds no
    # hidden states, so this arm runs the teacher online (bfloat16 where the CPU has it), with
    # the KL over the whole vocabulary rather than the cache's top-k. Its weight puts the term
    # at about the size of the other two at the init (as Minitron balances them): 0.09, the
    # mean over the 20 layers of Qwen 0.5B minus layers 9-12, against 0.4 (KL) + 1.6 (CE).
    "kd-hidden": {
        "preset": "alpha-temperature",
        "loss": {"kl": 0.5, "ce": 0.5, "hidden": 10.0},
        "targets": "reference",
        "teacher": "online",
    },
    # Its ablation: the same alpha-T with the same online teacher, no hidden term (kd-ref's
    # loss with the whole vocabulary's KL instead of the cache's top-k).
    "kd-online": {"preset": "alpha-temperature", "targets": "reference", "teacher": "online"},
}
# The kind of targets the untouched student writes (the teacher writes the others').
STUDENT_TARGETS = "student"


# Sampling when the teacher writes several solutions per prompt: the temperature and nucleus
# that Codex and HumanEval's pass@k papers sample at, diverse yet mostly on-task.
SAMPLE_TEMPERATURE = 0.8
SAMPLE_TOP_P = 0.95


def online_teacher(arm: str) -> bool:
    """Whether the arm runs the teacher online rather than reading its cache."""
    return ARMS[arm].get("teacher") == "online"


def matches_hidden(arm: str) -> bool:
    """Whether the arm's loss matches hidden states (its student must derive from the teacher)."""
    loss = ARMS[arm].get("loss")
    return isinstance(loss, dict) and "hidden" in loss


def needs_cache(arm: str) -> bool:
    """Whether the arm reads the teacher's cache (it has a teacher term, from no online teacher)."""
    return ARMS[arm].get("loss") != "ce" and not online_teacher(arm)


def paired_with_ce(arms: list[str]) -> list[str]:
    """The arms compared with ``ce`` as well, when it runs: the others on every training prompt
    (its references, every solution of the teacher, or the untouched student's own)."""
    if REFERENCE_BASELINE not in arms:
        return []
    every_prompt = ("reference", "teacher", STUDENT_TARGETS)
    return [a for a in arms if a != REFERENCE_BASELINE and ARMS[a]["targets"] in every_prompt]
