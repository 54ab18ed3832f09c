"""Sampler interface: input validation, no-grad / device handling, NFE bookkeeping.

A sampler consumes a duck-typed `algo` (the AR / MDLM LightningModules, or the test
fakes) exposing `device`, `vocab_size`, `mask_id`, `eos_id` plus the algorithm's
network call (`causal_logits` for AR, `denoiser_log_probs` for MDLM and DUO, `clean_log_probs`
for GIDD), in the network's dtype: samplers take float64 only of the rows they draw from.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from src.samplers.defaults import default_sampler

log = logging.getLogger(__name__)
T = TypeVar("T")


class Sampler(ABC):
    """Base class: `sample` validates its inputs and runs `_generate` under no_grad.

    Subclasses set `supports_infill` and implement `_generate`. After each call,
    `self.nfe` holds the number of network evaluations that call made.
    """

    supports_infill: bool = False
    #: Show a tqdm bar (None = only when stderr is a terminal, tqdm's convention).
    progress: bool | None = None
    #: Names of the algos (configs/algo/) this sampler can sample.
    algos: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.nfe = 0

    def check_algo(self, algo: Any) -> None:
        """Raise one ValueError naming the algo's own sampler when this one cannot sample it
        (checked before any training or sampling starts; duck-typed fakes without a name
        pass)."""
        name = getattr(algo, "name", None)
        if name is not None and self.algos and name not in self.algos:
            fix = default_sampler(str(name)) or "the algo's own sampler"
            raise ValueError(f"{type(self).__name__} samples algo={'|'.join(self.algos)}, not "
                             f"algo={name}: use sampler={fix} (or leave sampler= unset)")

    def sample(
        self,
        algo: Any,
        n: int,
        length: int,
        steps: int | None = None,
        *,
        prompt: torch.Tensor | None = None,
        infill: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw `n` sequences of `length` token ids.

        Args:
            algo: The algorithm object (see module docstring for the interface).
            n: Number of sequences.
            length: Sequence length, prompt / start token included.
            steps: Number of denoising steps (diffusion samplers; overrides the
                constructor default). AR samplers always take one step per token.
            prompt: (P,) or (n, P) prefix ids kept fixed (prefix conditioning).
            infill: (length,) or (n, length) template, `algo.mask_id` where to
                generate (diffusion samplers only).
            generator: Source of all randomness; same seed -> same samples. The noise
                is drawn on its device and moved to `algo.device` if they differ.

        Returns:
            (n, length) int64 ids on `algo.device`.

        Raises:
            ValueError: On a bad shape, length, step count, or unsupported option;
                the message names the fix.
        """
        name = type(self).__name__
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}: ask for at least one sample")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}: ask for a positive length")
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}: pass steps=1 or more (or None)")
        if infill is not None and not self.supports_infill:
            raise ValueError(
                f"{name} cannot infill: use an MDLM sampler (e.g. MDLMAncestral) for "
                "templates, or pass a known prefix as prompt="
            )
        if prompt is not None and infill is not None:
            raise ValueError(
                "give prompt or infill, not both: put the prefix into the infill template"
            )
        self.check_algo(algo)
        device = torch.device(algo.device)
        prompt = self._check_prompt(prompt, n, length, algo.vocab_size, device)
        infill = self._check_infill(infill, n, length, algo.vocab_size, device)
        self.nfe = 0
        with torch.no_grad():
            out = self._generate(
                algo, n, length, steps, prompt=prompt, infill=infill, generator=generator
            )
        log.debug("%s: %d samples of length %d with %d NFEs", name, n, length, self.nfe)
        return out

    @abstractmethod
    def _generate(
        self,
        algo: Any,
        n: int,
        length: int,
        steps: int | None,
        *,
        prompt: torch.Tensor | None,
        infill: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Sampler body; inputs are validated, (n, P) / (n, length) on `algo.device`."""

    @staticmethod
    def _check_prompt(
        prompt: torch.Tensor | None, n: int, length: int, vocab_size: int, device: torch.device
    ) -> torch.Tensor | None:
        """Validate a prompt and expand it to (n, P) int64 on `device` (None if empty)."""
        if prompt is None:
            return None
        prompt = torch.as_tensor(prompt)
        if prompt.dtype.is_floating_point or prompt.dtype == torch.bool:
            raise ValueError(f"prompt must hold integer token ids, got {prompt.dtype}: use .long()")
        if prompt.dim() == 1:
            prompt = prompt.unsqueeze(0).expand(n, -1)
        elif prompt.dim() != 2 or prompt.shape[0] != n:
            raise ValueError(
                f"prompt has shape {tuple(prompt.shape)}, expected (P,) or ({n}, P): "
                "pass one prompt for all samples or one row per sample"
            )
        if prompt.shape[1] == 0:
            return None
        if prompt.shape[1] >= length:
            raise ValueError(
                f"prompt of {prompt.shape[1]} tokens does not fit in length {length}: "
                "raise the sample length or shorten the prompt"
            )
        _check_ids(prompt, vocab_size, "prompt")
        return prompt.to(device=device, dtype=torch.long)

    @staticmethod
    def _check_infill(
        infill: torch.Tensor | None, n: int, length: int, vocab_size: int, device: torch.device
    ) -> torch.Tensor | None:
        """Validate an infill template and expand it to (n, length) int64 on `device`."""
        if infill is None:
            return None
        infill = torch.as_tensor(infill)
        if infill.dtype.is_floating_point or infill.dtype == torch.bool:
            raise ValueError(f"infill must hold integer token ids, got {infill.dtype}: use .long()")
        if infill.dim() == 1 and infill.shape[0] == length:
            infill = infill.unsqueeze(0).expand(n, -1)
        elif infill.dim() != 2 or tuple(infill.shape) != (n, length):
            raise ValueError(
                f"infill has shape {tuple(infill.shape)}, expected ({length},) or ({n}, {length}):"
                " the template must span the whole sample, with mask_id where to generate"
            )
        _check_ids(infill, vocab_size, "infill")
        return infill.to(device=device, dtype=torch.long)

    def _progress(self, it: Iterable[T], total: int, desc: str) -> Iterator[T]:
        """Wrap a long sampling loop in a tqdm bar (hidden when not on a terminal)."""
        return iter(tqdm(it, total=total, desc=desc, leave=False, disable=self._disable_bar()))

    def _disable_bar(self) -> bool | None:
        return None if self.progress is None else not self.progress


def _check_ids(ids: torch.Tensor, vocab_size: int, what: str) -> None:
    """Raise if token ids fall outside [0, vocab_size)."""
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(
            f"{what} ids must lie in [0, {vocab_size}), got [{int(ids.min())}, {int(ids.max())}]:"
            " tokenize with the model's tokenizer"
        )
