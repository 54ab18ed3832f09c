"""Unigram baseline: the loss a model gets by ignoring context entirely."""

from __future__ import annotations

import math

import numpy as np

from src.data.memmap import TokenStream


def token_counts(stream: TokenStream, vocab_size: int) -> np.ndarray:
    """Count of each id in the stream (int64, length ``vocab_size``), read in bounded chunks."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for chunk in stream.chunks():
        counts += np.bincount(chunk, minlength=vocab_size)[:vocab_size]
    return counts


def unigram_nll(train_counts: np.ndarray, val_counts: np.ndarray, mask_id: int) -> dict[str, float]:
    """Add-one (Laplace) unigram fit on train counts, evaluated on validation counts.

    The model covers the real vocabulary (every id except ``mask_id``):
    ``p(v) = (c_v + 1) / (N + K)`` with ``K = vocab_size - 1``. Returns the mean
    negative log-likelihood per validation token (nats) and its perplexity.

    Raises:
        ValueError: No validation tokens, or [MASK] occurs in the validation data.
    """
    train = train_counts.astype(np.float64).copy()
    val = val_counts.astype(np.float64).copy()
    if val[mask_id] > 0:
        raise ValueError("validation tokens contain [MASK]; the token stream is corrupt")
    train[mask_id] = 0.0
    num_real = train.size - 1
    log_p = np.log(train + 1.0) - math.log(train.sum() + num_real)
    val[mask_id] = 0.0
    n_val = val.sum()
    if n_val == 0:
        raise ValueError("no validation tokens to evaluate the unigram baseline on")
    log_p[mask_id] = 0.0  # unused (zero count); avoids 0 * -inf style surprises
    nll = float(-(val * log_p).sum() / n_val)
    return {"unigram_nll": nll, "unigram_ppl": float(math.exp(nll))}
