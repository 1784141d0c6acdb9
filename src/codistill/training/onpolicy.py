"""On-policy distillation: the student writes the sequence, the teacher scores it.

Generalized KD (Agarwal et al., 2024, "On-Policy Distillation of Language Models"; TRL's
GKDTrainer): with probability ``lambda`` a micro-batch's targets are replaced by continuations the
student samples from its own prompts, and the token-level teacher terms are computed along
those sequences against the online teacher. Training on its own samples removes the
train/inference mismatch of learning only from fixed sequences (exposure bias). A teacher cache
cannot serve these positions (they are new every step), so on-policy needs the online teacher.

Determinism: whether micro-batch ``i`` of optimizer step ``s`` goes on-policy, and what the
student samples there, depend only on (seed, s, i, process rank): sampling runs under a forked
RNG seeded from them, so the training RNG stream (dropout, the semantic term's sampling) is the
one an off-policy run sees, and a resumed run samples what an uninterrupted one samples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from codistill.data.batches import Example


def micro_batch_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """A seed for one micro-batch's draw and sampling, independent of training history."""
    return (((seed * 1_000_003 + step) * 1_009 + micro) * 101 + rank) % (2**63 - 1)


@dataclass
class OnPolicy:
    """The on-policy switch and sampler of a run.

    Attributes:
        rate: probability that a micro-batch is on-policy.
        temperature: sampling temperature of the student's continuations.
        max_new_tokens: length cap of a continuation (the run's ``max_target_tokens``).
        seed: the run's seed.
        eos_id, pad_id: the student's EOS and pad ids.
        student_to_teacher: student id -> teacher id (trimmed students), or None when the ids
            coincide.
    """

    rate: float
    temperature: float
    max_new_tokens: int
    seed: int
    eos_id: int
    pad_id: int
    student_to_teacher: torch.Tensor | None = None

    def chosen(self, step: int, micro: int, rank: int = 0) -> bool:
        """Whether micro-batch ``micro`` of optimizer step ``step`` is on-policy."""
        if self.rate <= 0:
            return False
        g = torch.Generator().manual_seed(micro_batch_seed(self.seed, step, micro, rank))
        return float(torch.rand((), generator=g)) < self.rate

    def examples(
        self,
        student,
        examples: list[Example],
        step: int,
        micro: int,
        rank: int = 0,
        encoder_decoder: bool = False,
    ) -> list[Example]:
        """The micro-batch with each target replaced by a continuation the student samples.

        Teacher-side ids (``teacher_*``) are the student's ids mapped to the teacher's
        vocabulary, so the teacher sees the very sequence the student wrote. Student-only
        extras (critical-token weights, cached teacher rows) are dropped: they belong to the
        reference targets.
        """
        device = next(student.parameters()).device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(micro_batch_seed(self.seed, step, micro, rank))
            conts = sample_continuations(
                student,
                [e.prompt_ids for e in examples],
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                eos_id=self.eos_id,
                pad_id=self.pad_id,
                encoder_decoder=encoder_decoder,
            )
        out = []
        for e, cont in zip(examples, conts, strict=True):
            teacher_target = None
            if e.teacher_prompt_ids is not None:
                teacher_target = (
                    cont
                    if self.student_to_teacher is None
                    else self.student_to_teacher[torch.tensor(cont)].tolist()
                )
            out.append(
                dataclasses.replace(
                    e,
                    target_ids=cont,
                    teacher_target_ids=teacher_target,
                    reference="",
                    token_weights=None,
                    cache_ids=None,
                    cache_logprobs=None,
                    cache_rows=None,
                )
            )
        return out


@torch.no_grad()
def sample_continuations(
    model,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    eos_id: int,
    pad_id: int,
    encoder_decoder: bool = False,
) -> list[list[int]]:
    """Sampled continuation ids per prompt (pure ancestral sampling at ``temperature``, no top-k
    or top-p: the student's own distribution), each cut after its first EOS (kept) or at
    ``max_new_tokens``.

    Args:
        model: the student (unwrapped from any DDP wrapper).
        prompts: prompt ids in the model's vocabulary.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    if encoder_decoder:  # right padding for the encoder
        ids = [p + [pad_id] * (width - len(p)) for p in prompts]
        mask = [[1] * len(p) + [0] * (width - len(p)) for p in prompts]
    else:  # left padding so every row continues from its own last token
        ids = [[pad_id] * (width - len(p)) + p for p in prompts]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    # A fresh generation config: a copied teacher's (Qwen instruct: top_k 20, top_p 0.8,
    # repetition penalty 1.05) would sample from a distribution other than the student's.
    config = GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        decoder_start_token_id=getattr(model.config, "decoder_start_token_id", None),
    )
    out = model.generate(
        input_ids=torch.tensor(ids, device=device),
        attention_mask=torch.tensor(mask, device=device),
        generation_config=config,
    )
    new = out[:, 1:] if encoder_decoder else out[:, width:]  # T5 starts with its start token
    conts = []
    for row in new.tolist():
        if eos_id in row:
            row = row[: row.index(eos_id) + 1]
        conts.append(row or [eos_id])
    if was_training:
        model.train()
    return conts
