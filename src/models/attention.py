"""Attention backend, chosen once per process and logged.

`auto` picks, on CUDA, flash-attn when it is importable, else PyTorch SDPA (flash / memory-
efficient kernels); on CPU the plain softmax(QK^T)V (`math`): PyTorch's CPU flash-attention
backward is slow at our sizes (2 threads, seq 128: MDLM 1M trains at 8.4k tokens/s with math
vs 5.8k with SDPA, AR 3.5M 5.9k vs 3.3k; a tie at seq 512). Override with
`model.attn_backend=sdpa|flash|math`; the backends agree to float tolerance (tests).
"""

from __future__ import annotations

import importlib.util
import logging
import math

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

BACKENDS = ("auto", "flash", "sdpa", "math")
# flash-attn takes half precision only; other calls (fp32 evaluation or sampling outside
# autocast, custom masks) fall back to SDPA per call.
FLASH_DTYPES = (torch.float16, torch.bfloat16)
_chosen: dict[tuple[str, str], str] = {}


def flash_available() -> bool:
    """flash-attn is an optional GPU extra; never required."""
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def resolve_backend(requested: str, device_type: str) -> str:
    """Map a requested backend to the one that will run on `device_type`, logging it once."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown attention backend {requested!r}: use one of {BACKENDS}")
    key = (requested, device_type)
    if key not in _chosen:
        if requested == "auto" and device_type != "cuda":
            chosen = "math"
        elif requested == "auto":
            chosen = "flash" if flash_available() else "sdpa"
        elif requested == "flash" and not (device_type == "cuda" and flash_available()):
            raise RuntimeError(
                "attn_backend=flash needs CUDA and the flash-attn package "
                "(pip install flash-attn); use model.attn_backend=sdpa instead"
            )
        else:
            chosen = requested
        log.info("attention backend: %s (requested %s, device %s)", chosen, requested, device_type)
        _chosen[key] = chosen
    return _chosen[key]


def causal_allowed(n_queries: int, n_keys: int, device: torch.device | str) -> torch.Tensor:
    """(Lq, Lk) bool, True = attend: the queries are the last Lq of the Lk keys (KV-cache
    decoding), each sees the keys up to its own position (a bottom-right-aligned triangle)."""
    return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril(n_keys - n_queries)


def _math_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, mask: torch.Tensor | None,
    scale: float | None = None, softcap: float | None = None,
) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1)  # (B, H, Lq, Lk)
    scores = scores / math.sqrt(q.shape[-1]) if scale is None else scores * scale
    if softcap is not None:  # Gemma 2 / GIDD: cap * tanh(s / cap) bounds every logit by cap
        scores = softcap * torch.tanh(scores / softcap)
    if causal:
        allowed = causal_allowed(q.shape[-2], k.shape[-2], q.device)
        scores = scores.masked_fill(~allowed, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    backend: str,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention.

    Args:
        q: (B, H, Lq, Dh); k, v: (B, H, Lk, Dh). With causal=True and Lq < Lk the
            queries are the last Lq positions (KV-cache decoding).
        causal: lower-triangular mask aligned to the bottom-right.
        backend: a resolved backend name ("flash", "sdpa", "math").
        mask: optional bool mask broadcastable to (B, H, Lq, Lk), True = attend.
        scale: logit scale; None = 1 / sqrt(Dh) (muP passes its own, parameterization.py).
        softcap: cap the scaled logits at +-softcap with tanh (model.arch.attn_softcap). No
            fused kernel here takes it: it runs the `math` path on every device.

    Returns:
        (B, H, Lq, Dh)
    """
    if backend == "math" or softcap is not None:
        return _math_attention(q, k, v, causal, mask, scale, softcap)
    if backend == "flash" and mask is None and q.dtype in FLASH_DTYPES:
        try:
            from flash_attn import flash_attn_func  # optional GPU extra
        except ImportError as err:
            raise RuntimeError("attention backend 'flash' needs flash-attn: pip install "
                               "flash-attn, or set model.attn_backend=sdpa") from err
        out = flash_attn_func(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=causal,
            softmax_scale=scale,
        )  # flash-attn aligns causal masks bottom-right, like our cache decoding
        return out.transpose(1, 2)
    lq, lk = q.shape[-2], k.shape[-2]
    if causal and (lq != lk or mask is not None):
        # SDPA's is_causal is top-left aligned; build the bottom-right mask explicitly.
        allowed = causal_allowed(lq, lk, q.device)
        mask = allowed if mask is None else mask & allowed
        causal = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)
