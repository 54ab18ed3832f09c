"""Metrics of generated text: generative perplexity under a judge LM, unigram entropy.

Generative perplexity alone rewards repetition (low entropy), so it is always reported
together with the mean per-sample unigram entropy (Zheng et al. 2024).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def unigram_entropy(ids: Sequence[int]) -> float:
    """Entropy (nats) of the empirical token distribution of one sample."""
    counts = Counter(int(i) for i in ids)
    n = sum(counts.values())
    return -sum(c / n * math.log(c / n) for c in counts.values()) if n else 0.0


def mean_unigram_entropy(samples: Sequence[Sequence[int]]) -> float:
    return sum(unigram_entropy(s) for s in samples) / max(len(samples), 1)


class HFJudge:
    """Any Hugging Face causal LM (hub name, loaded offline from the cache, or local path)."""

    def __init__(self, name_or_path: str, device: str = "cpu", max_length: int = 1024) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tok = AutoTokenizer.from_pretrained(name_or_path)
            self.model = AutoModelForCausalLM.from_pretrained(name_or_path).to(device).eval()
        except OSError as e:
            raise ValueError(
                f"cannot load judge LM {name_or_path!r} ({e.__class__.__name__}): pass a local "
                "path to a saved model, or a hub name already in the HF cache"
            ) from e
        self.device, self.max_length = device, max_length

    @torch.no_grad()
    def nll(self, text: str) -> tuple[float, int]:
        """Summed NLL (nats) of the text's tokens after the first, and their count."""
        ids = self.tok(text, return_tensors="pt").input_ids[:, : self.max_length].to(self.device)
        if ids.shape[1] < 2:
            return 0.0, 0
        logits = self.model(ids).logits[:, :-1].float()
        nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="sum")
        return float(nll), ids.shape[1] - 1


class CheckpointJudge:
    """One of our own AR checkpoints as the judge (same tokenizer as the samples)."""

    def __init__(self, algo: torch.nn.Module, tokenizer: object) -> None:
        self.algo, self.tok = algo.eval(), tokenizer

    @torch.no_grad()
    def nll(self, text: str) -> tuple[float, int]:
        ids = [self.tok.eos_id] + self.tok.encode(text)
        limit = self.algo.backbone.max_seq_len
        x = torch.tensor([ids[:limit]], device=self.algo.device)
        if x.shape[1] < 2:
            return 0.0, 0
        logits = self.algo.causal_logits(x[:, :-1])
        nll = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="sum")
        return float(nll), x.shape[1] - 1


def generative_perplexity(judge: HFJudge | CheckpointJudge, texts: Sequence[str]) -> float:
    """Token-weighted perplexity of all texts under the judge."""
    total, count = 0.0, 0
    for text in texts:
        nll, n = judge.nll(text)
        total, count = total + nll, count + n
    return math.exp(total / count) if count else float("nan")
