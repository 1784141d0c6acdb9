"""The Trident semantic term, made differentiable by minimum-risk training.

Trident's semantic loss is 1 - cos(enc(prediction), enc(reference)). Computed on decoded text it
has no gradient. We sample ``semantic_samples`` candidates from the student (no grad), score them
with the frozen sentence-embedding model (no grad), and take the expected risk under the
student's renormalised likelihood of the candidates (see ``codistill.losses.semantic``): the
gradient flows through the candidates' log-likelihoods.
"""

from __future__ import annotations

import torch

from codistill.data.batches import Example, collate_causal, collate_seq2seq
from codistill.evaluation.generate import generate
from codistill.losses.semantic import semantic_risk_loss
from codistill.models.embedder import SentenceEmbedder
from codistill.models.forward import head_fn, target_states


def distinct_candidates(texts: list[str], n_examples: int, k: int) -> torch.Tensor:
    """``[n_examples, k]`` bool, True for the first occurrence of each candidate text among an
    example's ``k`` samples. MRT's distribution is renormalised over the candidate *set*
    (Shen et al. 2016); a sequence sampled twice would otherwise count twice."""
    keep = torch.zeros(n_examples, k, dtype=torch.bool)
    for i in range(n_examples):
        seen: set[str] = set()
        for j, text in enumerate(texts[i * k : (i + 1) * k]):
            keep[i, j] = text not in seen
            seen.add(text)
    return keep


class SemanticTerm:
    """Callable: ``(student, examples, device) -> sum over the examples of their MRT risk``."""

    def __init__(self, cfg, tokenizer, encoder_decoder: bool):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.encoder_decoder = encoder_decoder
        self.embedder = SentenceEmbedder(cfg.semantic_model)

    def __call__(self, student, examples: list[Example], device) -> torch.Tensor:
        k = self.cfg.semantic_samples
        tok = self.tokenizer
        sampled = generate(
            student,
            tok,
            [e.prompt_ids for e in examples],
            max_new_tokens=self.cfg.semantic_max_new_tokens,
            batch_size=len(examples),
            one_line=getattr(self.cfg, "task", "assertion") == "assertion",  # code: many lines
            encoder_decoder=self.encoder_decoder,
            do_sample=True,
            num_return_sequences=k,
        )
        refs = [e.reference for e in examples for _ in range(k)]
        sims = self.embedder.similarity(sampled.texts, refs).to(device)
        cands = [
            Example(
                prompt_ids=e.prompt_ids,
                target_ids=tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id],
                reference=t,
            )
            for e, t in zip([e for e in examples for _ in range(k)], sampled.texts, strict=True)
        ]
        logp = self._sequence_logprobs(student, cands, device)
        valid = distinct_candidates(sampled.texts, len(examples), k).to(device)
        return semantic_risk_loss(
            logp.view(len(examples), k),
            sims.view(len(examples), k),
            valid,
            sharpness=self.cfg.semantic_sharpness,
            reduction="sum",
        )

    def _sequence_logprobs(self, student, cands: list[Example], device) -> torch.Tensor:
        """Length-normalised log-likelihood of each candidate, with grad: ``[n]``."""
        tok = self.tokenizer
        if self.encoder_decoder:
            batch = collate_seq2seq(cands, tok.pad_token_id, student.config.decoder_start_token_id)
        else:
            batch = collate_causal(cands, tok.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        mask = batch["target_mask"].bool()
        states = target_states(
            student,
            batch["input_ids"],
            batch["attention_mask"],
            mask,
            batch.get("decoder_input_ids"),
            self.encoder_decoder,
        )
        logits = states if self.encoder_decoder else head_fn(student)(states)
        token_logp = torch.log_softmax(logits.float(), dim=-1).gather(
            -1, batch["labels"][mask][:, None]
        )[:, 0]
        rows = mask.nonzero()[:, 0]
        total = torch.zeros(len(cands), device=device).index_add(0, rows, token_logp)
        return total / mask.sum(dim=1).clamp(min=1)
