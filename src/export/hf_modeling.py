"""A trained run as a Hugging Face model: `modeling_dlm.py` of every export (src/export/).

In the export its `src` imports become relative (src/export/vendor.py), so loading needs
only torch + transformers + safetensors:

    model = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)  # diffusion
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)  # AR
    ids = model.sample(num_samples=4, steps=128, sampler="gidd_adaptive", seed=0)
    ids = ar_model.generate(**tok(texts, return_tensors="pt", padding=True), max_new_tokens=8)

`forward` returns the network's logits (the checkpoint's, to fp32 rounding: causal for AR,
with [MASK] at -inf as the run's AR distribution has it; the clean-first order for Eso-LM,
bidirectional otherwise). `sample` runs the repo's own samplers on the algo's own denoiser
(src/algos/inference.py) for every algo; a diffusion model's `generate` is the same call.
The AR model is a standard transformers causal LM: `generate` is `GenerationMixin`'s
(attention masks, left padding, a KV cache, any decoding strategy), `forward` honours
`attention_mask`, `position_ids` and `past_key_values` (src/export/hf_generation.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast, MaskedLMOutput

from src.algos.inference import Denoiser, build_denoiser, log_alpha_sigma
from src.export.hf_generation import CacheView, causal_padding_mask, padded_positions
from src.models.dit import DiT
from src.samplers.ancestral import MDLMAncestral
from src.samplers.ar import ARSampler
from src.samplers.base import Sampler
from src.samplers.duo import DUOAncestral
from src.samplers.esolm import EsoLMSampler
from src.samplers.gidd import GIDDAdaptive, GIDDAncestral
from src.samplers.low_confidence import LowConfidence

SAMPLER_CLASSES: dict[str, type[Sampler]] = {
    cls.__name__: cls
    for cls in (ARSampler, MDLMAncestral, DUOAncestral, EsoLMSampler, GIDDAncestral, GIDDAdaptive,
                LowConfidence)
}


class DLMConfig(PretrainedConfig):
    """What rebuilds the run's backbone, denoiser and samplers.

    Args:
        dit: DiT constructor arguments (src/models/dit.py).
        algo: `build_denoiser` spec: algo name, ids, noise schedule, algo settings.
        samplers: name -> {"class": sampler class, **constructor arguments}; "default"
            is the run's own sampler.
        seq_len: the training sequence length (generate's default length).
    """

    model_type = "dlm_lab"

    def __init__(self, dit: dict[str, Any] | None = None, algo: dict[str, Any] | None = None,
                 samplers: dict[str, dict[str, Any]] | None = None, seq_len: int = 128,
                 **kwargs: Any) -> None:
        self.dit, self.algo = dict(dit or {}), dict(algo or {})
        self.samplers, self.seq_len = dict(samplers or {}), int(seq_len)
        # The length tools read (lm-eval's `hf` model windows requests to it, as our
        # adapter does to seq_len): the model never saw positions past it.
        kwargs.setdefault("max_position_embeddings", int(seq_len))
        super().__init__(**kwargs)
        # The shape under transformers' names (its caches and generate read them).
        if self.dit:
            heads = int(self.dit.get("n_heads", 1))
            kv = (self.dit.get("arch") or {}).get("n_kv_heads")
            self.num_hidden_layers = int(self.dit["n_blocks"])
            self.hidden_size = int(self.dit["dim"])
            self.num_attention_heads = heads
            self.num_key_value_heads = int(kv) if kv else heads


class DLMPreTrainedModel(PreTrainedModel):
    config_class = DLMConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"

    def __init__(self, config: DLMConfig) -> None:
        super().__init__(config)
        self.backbone = DiT(**config.dit)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """DiT initialises itself; exported weights replace everything."""

    @property
    def denoiser(self) -> Denoiser:
        """The algo's network call over this backbone (what the samplers read)."""
        return build_denoiser(self.backbone, self.config.algo)

    def sampler(self, name: str | None = None, **overrides: Any) -> Sampler:
        """A sampler by its configs/sampler name (None: the run's own), arguments overridden."""
        table = self.config.samplers
        key = name or "default"
        if key not in table:
            raise ValueError(f"unknown sampler {name!r} for algo={self.config.algo['algo']}: "
                             f"one of {sorted(table)}")
        spec = {**table[key], **overrides}
        return SAMPLER_CLASSES[spec.pop("class")](**spec)

    @torch.no_grad()
    def sample(self, input_ids: torch.Tensor | None = None, *, num_samples: int | None = None,
                 max_length: int | None = None, steps: int | None = None,
                 sampler: str | None = None, infill: torch.Tensor | None = None,
                 seed: int | None = None, generator: torch.Generator | None = None,
                 **sampler_kwargs: Any) -> torch.Tensor:
        """Sample token ids with the repo's samplers.

        Args:
            input_ids: (P,) or (B, P) prompt kept fixed (B samples when 2-D).
            num_samples: number of sequences (default: the prompt's rows, else 1).
            max_length: sequence length, prompt included (default: the training seq_len).
            steps: denoising steps (diffusion samplers).
            sampler: a configs/sampler name (`config.samplers`), None = the run's own.
            infill: (L,) or (B, L) template with mask_token_id where to generate.
            seed / generator: randomness (same seed, same samples).
            **sampler_kwargs: the sampler's own options (top_p, temperature, order,
                block_size, use_kv_cache, cache, greedy_last...).

        Returns:
            (num_samples, max_length) int64 ids.
        """
        if num_samples is None:
            num_samples = int(input_ids.shape[0]) if input_ids is not None and \
                input_ids.dim() == 2 else 1
        length = int(max_length or (infill.shape[-1] if infill is not None else
                                    self.config.seq_len))
        if generator is None and seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        self.eval()
        return self.sampler(sampler, **sampler_kwargs).sample(
            self.denoiser, num_samples, length, steps, prompt=input_ids, infill=infill,
            generator=generator)


class DLMForMaskedLM(DLMPreTrainedModel):
    """A diffusion LM (mdlm, duo, gidd, esolm): bidirectional denoiser logits; `generate` is
    `sample` (transformers' left-to-right generate does not apply to a denoiser)."""

    generate = DLMPreTrainedModel.sample

    def forward(self, input_ids: torch.Tensor, timesteps: torch.Tensor | None = None,
                sigma: torch.Tensor | None = None, return_dict: bool = True,
                **_: Any) -> MaskedLMOutput | tuple[torch.Tensor]:
        """Logits (B, L, V) at noisy ids `input_ids`; the noise level is `sigma` as the
        backbone reads it, or `timesteps` t in [0, 1] mapped as the algo does (ignored
        by models trained without time conditioning)."""
        if sigma is None and timesteps is not None:
            denoiser = self.denoiser
            t = torch.as_tensor(timesteps, device=input_ids.device).double()
            if self.config.algo["algo"] in ("duo", "duo_distill"):
                sigma = log_alpha_sigma(denoiser.noise.alpha(t), denoiser.time_conditioning)
            else:
                sigma = denoiser.sigma(t).float()
        logits = self.denoiser.logits(input_ids, sigma)  # Eso-LM: its clean-first order
        return MaskedLMOutput(logits=logits) if return_dict else (logits,)


class DLMForCausalLM(DLMPreTrainedModel, GenerationMixin):
    """The autoregressive baseline as a standard causal LM: causal logits, next-token loss with
    `labels`, `GenerationMixin.generate`; the repo's samplers stay under `sample`."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values: Any = None,
                use_cache: bool | None = None, labels: torch.Tensor | None = None,
                return_dict: bool = True, **_: Any
                ) -> CausalLMOutputWithPast | tuple[torch.Tensor, ...]:
        """Next-token logits (B, L, V) of `input_ids`, after `past_key_values` when given.

        Args:
            attention_mask: (B, L_past + L) 1 = token, 0 = padding (left padding: each row's
                positions count its own tokens, padding is never attended).
            position_ids: (B, L) rotary positions (default: from the mask, else consecutive).
            past_key_values: a transformers Cache (created when `use_cache`).
        """
        b, length = input_ids.shape
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        past = int(past_key_values.get_seq_length()) if past_key_values is not None else 0
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # nothing padded: the plain causal path (fused kernels)
        if position_ids is None:
            position_ids = padded_positions(attention_mask, length) if attention_mask is not None \
                else torch.arange(past, past + length, device=input_ids.device).expand(b, -1)
        mask = None if attention_mask is None else causal_padding_mask(attention_mask, length)
        cache = CacheView(past_key_values) if past_key_values is not None else None
        # The run's own next-token distribution: [MASK] (never a target) gets -inf, as in
        # training and in our lm-eval adapter; raw logits would spread mass onto it.
        logits = self.denoiser.causal_logits(input_ids, cache, positions=position_ids,
                                             attn_mask=mask)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                   ignore_index=-100)
        if not return_dict:
            out = (logits,) if past_key_values is None else (logits, past_key_values)
            return out if loss is None else (loss, *out)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=past_key_values)
