"""Categorical sampling shared by every sampler (AR, MDLM, and later DUO / Eso-LM).

All sampling is Gumbel-max in float64. Float32 Gumbel noise truncates the tail of
the distribution (uniforms have only 24 bits, so g = -log(-log u) is capped near 16.6
and tokens that far below the top are never drawn): entropy drops and generative
perplexity looks better than it is (Zheng et al. 2024, "Masked diffusion models are
secretly time-agnostic masked models and exploit inaccurate categorical sampling").
"""

from __future__ import annotations

import torch

_F64 = torch.finfo(torch.float64)
# Largest float64 strictly below 1 (1 - 2^-53) and the smallest positive normal: the
# clamp keeps -log(-log(u)) finite at both ends without biasing the bulk of u.
_U_MAX = 1.0 - _F64.eps / 2
_U_MIN = _F64.tiny


def uniform64(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Float64 uniforms in [0, 1), drawn on the generator's device and moved to `device`.

    Args:
        shape: Output shape.
        generator: Source of randomness (the global RNG of `device` when None).
        device: Where the result should live (defaults to the generator's device).

    Returns:
        A float64 tensor of the given shape on `device`.
    """
    # Draw where the generator lives: torch refuses a CPU generator for CUDA noise.
    src = generator.device if generator is not None else device
    u = torch.rand(tuple(shape), dtype=torch.float64, generator=generator, device=src)
    return u if device is None else u.to(device)


def gumbel_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise g = -log(-log u), with u clamped away from 0 and 1 in float64.

    Args:
        u: Uniforms in [0, 1) (any float dtype; computed in float64).

    Returns:
        Finite float64 Gumbel noise of the same shape.
    """
    u = u.double().clamp(_U_MIN, _U_MAX)
    return -torch.log(-torch.log(u))


def gumbel_noise(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Float64 standard Gumbel noise of `shape` on `device` (see `uniform64`)."""
    return gumbel_from_uniform(uniform64(shape, generator, device))


def sample_categorical(
    probs: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    log_space: bool = False,
) -> torch.Tensor:
    """Draw one category per row by float64 Gumbel-max: argmax(log p + g).

    Zero-probability categories have log p = -inf and can never win, whatever the noise.

    Args:
        probs: (..., V) probabilities (need not be normalized), or log-probabilities /
            logits when `log_space` is True.
        generator: Source of randomness; the noise is drawn on its device.
        log_space: Whether `probs` already holds log-probabilities (or logits).

    Returns:
        (...) int64 indices on the device of `probs`.
    """
    logp = probs.double() if log_space else probs.double().log()
    g = gumbel_noise(logp.shape, generator, logp.device)
    return (logp + g).argmax(dim=-1)


def top_p_filter(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2020) over the last dimension.

    Keeps the smallest set of most likely categories whose cumulative mass is >= p
    (always at least the top one) and renormalizes.

    Args:
        probs: (..., V) non-negative probabilities (need not be normalized).
        p: Nucleus mass in (0, 1]; 1 returns the normalized input unchanged.

    Returns:
        Filtered, renormalized probabilities with the dtype of `probs`.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}: use 1.0 to disable nucleus sampling")
    probs = probs / probs.sum(dim=-1, keepdim=True)
    if p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    # A category stays if the mass strictly before it is < p: this is exactly the
    # smallest prefix reaching p, and the top category (mass before = 0) always stays.
    # Exclusive cumsum by shifting (not cumsum - p, which rounds 0.5 to 0.49999...).
    cum = sorted_p.cumsum(dim=-1)
    before = torch.cat([torch.zeros_like(cum[..., :1]), cum[..., :-1]], dim=-1)
    keep_sorted = before < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    kept = probs * keep
    return kept / kept.sum(dim=-1, keepdim=True)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Float64 log-probabilities log softmax(logits / T).

    T -> 0 approaches the argmax; T = 0 itself is handled as an exact one-hot on the
    argmax (ties go to the first index), so callers need no special case.

    Args:
        logits: (..., V) logits or log-probabilities (-inf allowed, e.g. for [MASK]).
        temperature: T >= 0.

    Returns:
        (..., V) float64 log-probabilities.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}: use 0 for greedy")
    logits = logits.double()
    if temperature == 0:
        onehot = torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
        return onehot.log()
    return torch.log_softmax(logits / temperature, dim=-1)
