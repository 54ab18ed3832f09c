"""Each algorithm's network call as the samplers read it, in plain torch.

The LightningModules (src/algos/*.py) train; these objects only predict. Both use the
functions below, so a model exported to Hugging Face (src/export/) samples with exactly
the distribution the run's own samplers draw from. A `Denoiser` exposes the duck-typed
sampler interface of src/samplers/base.py: `device`, `vocab_size`, `mask_id`, `eos_id`,
`name`, and the algo's call (`causal_logits`, `denoiser_log_probs`, `clean_log_probs`,
`esolm_log_probs`). Nothing here may import lightning or hydra (the export vendors it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from src.algos.esolm_masks import clean_first_order
from src.algos.hybrid_noise import HybridNoise
from src.algos.noise import AlphaScaled, NoiseSchedule, noise_from_spec
from src.algos.uniform_noise import RealVocab


def without_mask(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """float32 logits with [MASK] at -inf: no model ever predicts [MASK] (MDLM sec. 3.2.3)."""
    logits = logits.float()
    logits[..., mask_id] = float("-inf")
    return logits


def subs_log_probs(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """SUBS log p_theta(x | z_t): zero mass on [MASK], log_softmax (MDLM eq. 8)."""
    return F.log_softmax(without_mask(logits, mask_id), dim=-1)


def real_log_probs(logits: torch.Tensor, real: RealVocab) -> torch.Tensor:
    """(B, L, K) log x_theta over the K real tokens ([MASK] column dropped; DUO)."""
    logits = real.drop_mask(logits)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.log_softmax(logits, dim=-1)


def log_alpha_sigma(alpha: torch.Tensor, time_conditioning: bool) -> torch.Tensor:
    """DUO's conditioning input sigma = -log alpha (0 when not time-conditioned); float32."""
    if not time_conditioning:
        return torch.zeros_like(alpha, dtype=torch.float32)
    return (-torch.log(alpha.double().clamp_min(1e-12))).float()


def ordered_forward(backbone: Callable[..., torch.Tensor], z: torch.Tensor, order: torch.Tensor,
                    sigma: torch.Tensor | None) -> torch.Tensor:
    """Eso-LM: causal forward over z permuted by `order` (rotary = true positions),
    returned in the original positions."""
    out = backbone(z.gather(1, order), sigma, causal=True, positions=order)
    return torch.empty_like(out).scatter_(1, order[..., None].expand_as(out), out)


def network_logits(name: str, backbone: Callable[..., torch.Tensor], z: torch.Tensor,
                   sigma: torch.Tensor | None, mask_id: int) -> torch.Tensor:
    """The raw logits an algo's network gives for ids z: AR causal; Eso-LM causal over the
    clean-first order (both groups left to right, MDLM's interface); the others
    bidirectional. What an exported model's forward returns."""
    if name == "ar":
        return backbone(z, None, causal=True)
    if name == "esolm":
        return ordered_forward(backbone, z, clean_first_order(z == mask_id), sigma)
    return backbone(z, sigma)


class Denoiser:
    """A backbone plus the facts the samplers need; see the module docstring."""

    def __init__(self, backbone: nn.Module, *, name: str, vocab_size: int, mask_id: int,
                 eos_id: int) -> None:
        self.backbone, self.name = backbone, name
        self.vocab_size, self.mask_id, self.eos_id = vocab_size, mask_id, eos_id

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def new_kv_cache(self, batch_size: int, max_len: int) -> Any:
        return self.backbone.new_kv_cache(batch_size, max_len)

    def logits(self, z: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        return network_logits(self.name, self.backbone, z, sigma, self.mask_id)


class ARDenoiser(Denoiser):
    def causal_logits(self, x: torch.Tensor, kv_cache: Any = None, *,
                      positions: torch.Tensor | None = None,
                      attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, l) -> (B, l, V) float32 next-token logits, [MASK] never predicted; `positions`
        and `attn_mask` as the backbone takes them (a left-padded batch, src/export)."""
        logits = self.backbone(x, None, causal=True, kv_cache=kv_cache, positions=positions,
                               attn_mask=attn_mask)
        return without_mask(logits, self.mask_id)


class MDLMDenoiser(Denoiser):
    def __init__(self, backbone: nn.Module, *, noise: NoiseSchedule, time_conditioning: bool,
                 **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        self.noise, self.time_conditioning = noise, time_conditioning

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.noise.sigma(t) if self.time_conditioning else torch.zeros_like(t)

    def denoiser_log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, L, V) float32 SUBS log-probabilities at noisy ids z and times t (B,)."""
        return subs_log_probs(self.backbone(z, self.sigma(t)), self.mask_id)


class GIDDDenoiser(MDLMDenoiser):
    def __init__(self, backbone: nn.Module, *, mix_scale: float, mix_shift: float,
                 log_snr_clip: float, **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        self.hybrid = HybridNoise(self.noise, self.vocab_size, self.mask_id, float(mix_scale),
                                  float(mix_shift), float(log_snr_clip))

    def clean_log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, L, V) log x_hat(z_t), -inf on [MASK] (visible tokens may be noise)."""
        return self.denoiser_log_probs(z, t)


class DUODenoiser(MDLMDenoiser):
    def __init__(self, backbone: nn.Module, **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        self.real = RealVocab(self.vocab_size, self.mask_id)

    def denoiser_log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, L, K) log x_theta over the real tokens at noisy ids z and times t (B,)."""
        sigma = log_alpha_sigma(self.noise.alpha(t.double()), self.time_conditioning)
        return real_log_probs(self.backbone(z, sigma), self.real)


class EsoLMDenoiser(MDLMDenoiser):
    def __init__(self, backbone: nn.Module, *, alpha_0: float, **kwargs: Any) -> None:
        kwargs["noise"] = AlphaScaled(kwargs["noise"], alpha_0)
        super().__init__(backbone, **kwargs)

    def denoiser_log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """MDLM's interface over the deterministic clean-first order (both groups left to
        right), an order the model saw in training."""
        return subs_log_probs(self.logits(z, self.sigma(t)), self.mask_id)

    def esolm_log_probs(self, ids: torch.Tensor, positions: torch.Tensor, *,
                        attn_mask: torch.Tensor | None = None, kv_cache: Any = None,
                        commit: bool = True) -> torch.Tensor:
        """(B, l) ids fed after the cached ones, causal in feeding order -> SUBS log-probs."""
        out = self.backbone(ids, None, causal=True, positions=positions, attn_mask=attn_mask,
                            kv_cache=kv_cache, commit=commit)
        return subs_log_probs(out, self.mask_id)

    @property
    def kv_capacity(self) -> int | None:
        return getattr(self.backbone, "max_seq_len", None)


DENOISERS: dict[str, type[Denoiser]] = {
    "ar": ARDenoiser, "mdlm": MDLMDenoiser, "duo": DUODenoiser, "duo_distill": DUODenoiser,
    "gidd": GIDDDenoiser, "esolm": EsoLMDenoiser,
}
#: Constructor arguments each denoiser takes from the algo's config (besides the ids).
ALGO_ARGS: dict[str, tuple[str, ...]] = {
    "ar": (), "mdlm": ("time_conditioning",), "duo": ("time_conditioning",),
    "duo_distill": ("time_conditioning",), "esolm": ("time_conditioning", "alpha_0"),
    "gidd": ("time_conditioning", "mix_scale", "mix_shift", "log_snr_clip"),
}


def build_denoiser(backbone: nn.Module, spec: dict[str, Any]) -> Denoiser:
    """The denoiser an exported model (or an import) describes: `spec` holds `algo`,
    `vocab_size`, `mask_id`, `eos_id`, the algo's `ALGO_ARGS` and (diffusion) `noise`, a
    `noise_from_spec` dict."""
    name = str(spec["algo"])
    if name not in DENOISERS:
        raise ValueError(f"unknown algo {name!r}: one of {sorted(DENOISERS)}")
    kwargs: dict[str, Any] = {k: spec[k] for k in ALGO_ARGS[name]}
    if name != "ar":
        kwargs["noise"] = noise_from_spec(spec["noise"])
    return DENOISERS[name](backbone, name=name, vocab_size=int(spec["vocab_size"]),
                           mask_id=int(spec["mask_id"]), eos_id=int(spec["eos_id"]), **kwargs)
