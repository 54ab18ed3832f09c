"""EleutherAI lm-evaluation-harness model `dlm_lab`: any run of this repo (or an HF folder
it imports) as an `lm_eval` LM. Driven by `python -m src.lm_eval` (src/lm_eval.py).

- `loglikelihood(context, continuation)`: AR, the exact log p(continuation | context).
  Diffusion models, minus the conditional NELBO: the context stays clean and only the
  continuation is noised (the algo's own loss with the context outside its validity mask),
  a Monte-Carlo estimate over `mc_samples` stratified (antithetic) times t, as MDLM / LLaDA
  evaluate. It is a lower bound on log p, so diffusion accuracies are of the bound.
  `is_greedy`: the argmax of one denoiser call with the whole continuation noised.
- `loglikelihood_rolling`: lm-eval's disjoint rolling windows of the model's length,
  each scored as above (the sum of bounds, for diffusion models).
- `generate_until`: the run's sampler (or `sampler=`) with the context as a fixed prompt.
Every random draw is keyed by the request's text (and `seed`, `mc_samples`, `mc_batch`):
the same request scores the same in any order.
"""

from __future__ import annotations

from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from src.algos.randomness import StepRandomness, derive_seed, make_generator
from src.checkpoints import LoadedRun, load_run
from src.samplers.factory import build_sampler


@register_model("dlm_lab")
class LabLM(LM):
    """See the module docstring. Arguments arrive as strings from `--model_args`."""

    def __init__(self, ckpt: str | None = None, run: LoadedRun | None = None,
                 mc_samples: int | str = 32, mc_batch: int | str = 32, seed: int | str = 0,
                 sampler: str | None = None, steps: int | str | None = None,
                 max_length: int | str | None = None, device: str | None = None,
                 **_: Any) -> None:
        super().__init__()
        device = str(device or "auto")
        if device == "auto" or (device.startswith("cuda") and not torch.cuda.is_available()):
            # lm-eval's own CLI asks for cuda by default: fall back on a CPU-only machine.
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if run is None:
            if ckpt is None:
                raise ValueError("dlm_lab needs ckpt=<run dir | .ckpt | HF folder>")
            from src.export.import_model import as_run

            run = load_run(as_run(ckpt))
        self.run, self.algo = run, run.algo.to(device).eval()
        self.tok = run.datamodule.tokenizer
        # Rows per forward when scoring. lm-eval's own `batch_size` (requests per call) is
        # not used: each request is scored on its own, its Monte-Carlo rows batched.
        self.mc_samples, self.mc_batch = int(mc_samples), int(mc_batch)
        self.seed, self.sampler_name = int(seed), sampler
        self.steps = None if steps in (None, "") else int(steps)
        self.max_length = int(max_length or run.cfg.data.seq_len)
        self.causal = self.algo.name == "ar"

    # ---- scoring --------------------------------------------------------------------
    def _randomness(self, key: str, offset: int) -> StepRandomness:
        # Each chunk of rows draws its own noise (times stay stratified over all mc_samples).
        g = make_generator(self.algo.device, "lm_eval", self.seed, key, offset)
        u = derive_seed(self.seed, "lm_eval_u", key) / 2.0**63
        return StepRandomness(g, u, offset, self.mc_samples)

    def _window(self, context: list[int], continuation: list[int]) -> tuple[torch.Tensor,
                                                                             torch.Tensor, str]:
        """(ids (1, L), scored (1, L) 0/1 on the continuation, request key) within the
        model's length (AR: a start token when there is no context)."""
        if self.causal and not context:
            context = [self.tok.eos_id]  # AR reads a start token (EOS is its BOS)
        keep = self.max_length + (1 if self.causal else 0)  # AR reads ids[:-1]
        ids = (context + continuation)[-keep:]
        n_cont = min(len(continuation), len(ids) - (1 if self.causal else 0))
        x = torch.tensor(ids, device=self.algo.device)[None]
        scored = torch.zeros_like(x)
        scored[:, len(ids) - n_cont:] = 1
        return x, scored, repr((context[-keep:], continuation))

    @torch.no_grad()
    def score(self, context: list[int], continuation: list[int]) -> float:
        """log p of `continuation` after `context` (token ids); a diffusion model's ELBO."""
        x, scored, key = self._window(context, continuation)
        rows = 1 if self.causal else self.mc_samples
        nll = 0.0
        for start in range(0, rows, self.mc_batch):
            n = min(self.mc_batch, rows - start)
            batch = {"input_ids": x.expand(n, -1), "attention_mask": scored.expand(n, -1)}
            nll += float(self.algo.loss(batch, self._randomness(key, start)).nll_sum)
        return -nll / rows

    @torch.no_grad()
    def is_greedy(self, context: list[int], continuation: list[int]) -> bool:
        """Whether one greedy call reproduces `continuation` (lm-eval's `is_greedy`)."""
        x, scored, _ = self._window(context, continuation)
        scored = scored.bool()
        algo, target = self.algo, x[scored]
        if self.causal:
            pred = algo.causal_logits(x[:, :-1]).argmax(-1)
            return bool(torch.equal(pred[scored[:, 1:]], target))
        t = torch.ones(1, device=x.device)
        if algo.name in ("duo", "duo_distill"):  # uniform noise: the continuation drawn at t=1
            g = make_generator(x.device, "lm_eval_greedy", self.seed)
            noise = torch.randint(0, algo.real.k, x.shape, generator=g, device=x.device)
            z = torch.where(scored, algo.real.to_ids(noise), x)
            pred = algo.real.to_ids(algo.denoiser_log_probs(z, t).argmax(-1))
        else:
            z = torch.where(scored, algo.mask_id, x)
            call = algo.clean_log_probs if algo.name == "gidd" else algo.denoiser_log_probs
            pred = call(z, t).argmax(-1)
        return bool(torch.equal(pred[scored], target))

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        out = []
        for request in tqdm(requests, desc="Running loglikelihood requests", disable=disable_tqdm):
            context, continuation = request.args
            # lm-eval's own convention (TemplateLM._encode_pair): trailing whitespace of the
            # context is scored as part of the continuation, so `--model hf` agrees.
            spaces = len(context) - len(context.rstrip())
            if spaces:
                context, continuation = context[:-spaces], context[-spaces:] + continuation
            ctx, cont = self.tok.encode(context), self.tok.encode(continuation)
            out.append((self.score(ctx, cont), self.is_greedy(ctx, cont)))
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        out = []
        for request in tqdm(requests, desc="Running loglikelihood_rolling requests",
                            disable=disable_tqdm):
            ids = self.tok.encode(request.args[0])
            windows = get_rolling_token_windows(ids, prefix_token=self.tok.eos_id,
                                                max_seq_len=self.max_length, context_len=1)
            total = 0.0
            for window in map(make_disjoint_window, windows):
                context, continuation = window
                # lm-eval's first window starts with the prefix token: a diffusion model
                # scores the document's own tokens only.
                if not self.causal and context == [self.tok.eos_id]:
                    context = []
                total += self.score(list(context), list(continuation))
            out.append(total)
        return out

    # ---- generation -----------------------------------------------------------------
    @torch.no_grad()
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        out = []
        for request in tqdm(requests, desc="Running generate_until requests", disable=disable_tqdm):
            context, kwargs = request.args
            kwargs = dict(kwargs or {})
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            new = int(kwargs.get("max_gen_toks", 64))
            prompt = self.tok.encode(context)[-max(self.max_length - new, 1):]
            new = min(new, self.max_length - len(prompt))
            options = {}
            if self.causal and not kwargs.get("do_sample", False):
                options["temperature"] = 0.0  # greedy, what generate_until asks for
            sampler = build_sampler(self.sampler_name or self.run.cfg.sampler, steps=self.steps,
                                    **options)
            g = make_generator(self.algo.device, "lm_eval_generate", self.seed, context)
            ids = sampler.sample(self.algo, 1, len(prompt) + new, prompt=torch.tensor(prompt)
                                 if prompt else None, generator=g)
            text = self.tok.decode(ids[0, len(prompt):].tolist())
            for stop in until:
                text = text.split(stop)[0]
            out.append(text)
        return out
