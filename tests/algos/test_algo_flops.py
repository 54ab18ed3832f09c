"""Every algorithm's training FLOPs, as its `training_passes` state them, equal what
torch.utils.flop_counter measures on a real training step (forward + backward of its loss),
including the settings that change the cost (Eso-LM alpha_0 < 1); a new algorithm states its
cost without touching src/models/."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch

from src.algos.base import Algo, LossOutput
from src.algos.cost import algo_passes
from src.algos.randomness import StepRandomness
from src.builders import build_algo, build_backbone, build_datamodule
from src.models.flops import (BackbonePass, flops_per_token, skipped_readout_flops,
                              training_flops)
from src.runs.identity import compose_train
from tests.scaling.test_flops import counted

BATCH, SEQ = 4, 32
SHAPE = ["model=0.13M", "model.max_seq_len=64", "data=shakespeare_byte", f"data.seq_len={SEQ}",
         "model.attn_backend=math"]
SETTINGS = {
    "ar": ["algo=ar"],
    "mdlm": ["algo=mdlm"],
    "gidd": ["algo=gidd"],
    "duo": ["algo=duo", "algo.curriculum_end=0"],
    "esolm": ["algo=esolm"],
    "esolm alpha_0=0.5": ["algo=esolm", "algo.alpha_0=0.5", "algo.batch_split=0.5"],
    "esolm alpha_0=0.5 split=0.25": ["algo=esolm", "algo.alpha_0=0.5", "algo.batch_split=0.25"],
}
# Mixture of experts (no capacity limit: every routed token is computed), every algo.
MOE = ["model.moe.num_experts=4", "model.moe.top_k=2", "model.moe.capacity_factor=null"]
SETTINGS.update({f"{name} moe": [*o, *MOE] for name, o in list(SETTINGS.items())[:5]})


def _algo(overrides: list[str], tmp_path) -> tuple[Any, Any]:
    cfg = compose_train([*SHAPE, *overrides, f"paths.cache_dir={tmp_path}"])
    tok = build_datamodule(cfg).tokenizer
    torch.manual_seed(0)
    return cfg, build_algo(cfg, tok, build_backbone(cfg, tok.vocab_size)).train()


def _record_selected(algo: Any) -> list[torch.Tensor]:
    """The `select` masks the algo passes to its backbone (positions whose logits it reads)."""
    seen: list[torch.Tensor] = []
    forward = algo.backbone.forward

    def recording(*args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs.get("select") is not None:
            seen.append(kwargs["select"].detach().clone())
        return forward(*args, **kwargs)

    algo.backbone.forward = recording
    return seen


def _shape(cfg: Any, vocab: int) -> dict[str, Any]:
    m = cfg.model
    return dict(dim=m.dim, n_blocks=m.n_blocks, n_heads=m.n_heads, vocab_size=vocab, seq_len=SEQ,
                cond_dim=m.cond_dim, adaln=m.adaln, moe=m.moe)


@pytest.mark.parametrize("name", SETTINGS)
def test_training_step_flops_match_the_counter(name, tmp_path):
    cfg, algo = _algo(SETTINGS[name], tmp_path)
    x = torch.randint(0, algo.vocab_size - 2, (BATCH, SEQ), generator=torch.Generator().manual_seed(1))
    rng = StepRandomness.for_validation("cpu", 0, (0, 0), 0, 0)
    selected = _record_selected(algo)
    measured = counted(lambda: algo.loss({"input_ids": x}, rng).loss.backward())
    analytic = BATCH * training_flops(algo_passes(cfg.algo, SEQ), **_shape(cfg, algo.vocab_size))
    # The booked budget counts the full readout; a loss that reads only some positions' logits
    # (MDLM: the masked ones) executes less, by exactly the skipped readout.
    skipped = sum(int(s.numel() - s.sum()) for s in selected)
    executed = analytic - skipped_readout_flops(dim=cfg.model.dim, vocab_size=algo.vocab_size,
                                                positions=skipped)
    print(f"{name}: executed / counter = {executed / measured:.5f} ({skipped} readouts skipped)")
    assert abs(executed / measured - 1) < 0.02
    if name.startswith("mdlm"):
        assert 0 < skipped < BATCH * SEQ  # the skip is real, and only of clean positions
    full = flops_per_token(convention="full", passes=algo_passes(cfg.algo, SEQ),
                           **_shape(cfg, algo.vocab_size))
    assert full == pytest.approx(analytic / (BATCH * SEQ))


def test_esolm_sequential_rows_cost_more_than_diffusion_rows(tmp_path):
    """The README's `algo.alpha_0=0.5`: half the rows read [z_0; x] (2L tokens)."""
    shape = _shape(compose_train(SHAPE), 258)
    fpt = {a: flops_per_token(convention="full", passes=algo_passes(
        compose_train([*SHAPE, "algo=esolm", f"algo.alpha_0={a}"]).algo, SEQ), **shape)
        for a in (1.0, 0.5)}
    assert 1.5 < fpt[0.5] / fpt[1.0] < 2.0


class TwoPassAlgo(Algo):
    """A made-up algorithm: every row runs the model twice (a second, shorter pass without
    gradients), declared here only: src/models/ knows nothing about it."""

    @classmethod
    def training_passes(cls, algo_cfg: Mapping[str, Any], seq_len: int) -> list[BackbonePass]:
        return [BackbonePass(seq_len), BackbonePass(seq_len // 2, backward=False)]

    def loss(self, batch: dict[str, torch.Tensor], rng: StepRandomness) -> LossOutput:
        x = batch["input_ids"]
        out = self.net(x).logsumexp(-1).mean()
        with torch.no_grad():
            self.net(x[:, : x.shape[1] // 2])
        zero = torch.zeros((), dtype=torch.float64)
        return LossOutput(out, zero, zero)


def test_a_new_algo_states_its_cost_without_touching_the_model_layer(tmp_path):
    cfg = compose_train([*SHAPE, "algo=mdlm", f"paths.cache_dir={tmp_path}"])
    target = f"{__name__}.TwoPassAlgo"
    passes = algo_passes({"_target_": target}, SEQ)
    tok = build_datamodule(cfg).tokenizer
    algo = TwoPassAlgo(build_backbone(cfg, tok.vocab_size), name="two", vocab_size=tok.vocab_size,
                       mask_id=tok.mask_id, eos_id=tok.eos_id, optim={}, lr_scheduler={})
    x = torch.randint(0, 200, (BATCH, SEQ))
    measured = counted(lambda: algo.loss({"input_ids": x}, None).loss.backward())
    analytic = BATCH * training_flops(passes, **_shape(cfg, tok.vocab_size))
    assert abs(analytic / measured - 1) < 0.02
