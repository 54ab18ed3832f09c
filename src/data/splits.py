"""Deterministic held-out validation split for corpora that ship only one split.

Document ``i`` goes to validation when ``u(i) < fraction``, where ``u`` is a
seeded 64-bit hash (splitmix64) of the document index mapped to [0, 1).
It needs no pass over the text, gives the same answer for streaming and
in-memory datasets, and does not depend on the training seed (the split seed
is a fixed constant), so every run of a sweep sees the same validation set.
For sized corpora at least one document is held out and at least one kept.
"""

from __future__ import annotations

import numpy as np

SPLIT_SEED = 1234
DEFAULT_VAL_FRACTION = 0.005
_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser on uint64 (wraps mod 2**64 by design)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def doc_units(indices: np.ndarray, seed: int = SPLIT_SEED) -> np.ndarray:
    """Uniform [0, 1) value per document index (float64)."""
    idx = np.asarray(indices, dtype=np.uint64)
    salted = idx ^ np.uint64((seed * 0xD1B54A32D192ED03) & _MASK64)
    return (_splitmix64(salted) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def is_validation(index: int, fraction: float, seed: int = SPLIT_SEED) -> bool:
    """Per-document rule used by streaming datasets (no at-least-one guarantee)."""
    return bool(doc_units(np.array([index]), seed)[0] < fraction)


def validation_mask(
    num_docs: int, fraction: float = DEFAULT_VAL_FRACTION, seed: int = SPLIT_SEED
) -> np.ndarray:
    """Boolean mask over ``num_docs`` documents: True = validation.

    Raises:
        ValueError: Fewer than 2 documents, or a fraction outside (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    if num_docs < 2:
        raise ValueError(
            f"cannot carve a validation split from {num_docs} document(s); give separate files as "
            "path={train: ..., validation: ...}, or split the text into more documents "
            "(e.g. sample_by=paragraph or line for text files)"
        )
    u = doc_units(np.arange(num_docs), seed)
    mask = u < fraction
    if not mask.any():
        mask[int(np.argmin(u))] = True
    if mask.all():
        mask[int(np.argmax(u))] = False
    return mask


def split_indices(num_docs: int, split: str, fraction: float = DEFAULT_VAL_FRACTION) -> np.ndarray:
    """Sorted document indices of ``split`` ("train" or "validation")."""
    mask = validation_mask(num_docs, fraction)
    if split == "validation":
        return np.flatnonzero(mask)
    if split == "train":
        return np.flatnonzero(~mask)
    raise ValueError(f"carved splits are 'train' and 'validation', not {split!r}")
