"""Ablation knobs (Quokka, Super Data Learners): t curriculum, schedules, MaskGIT loss,
AR input masking, dropout, weight decay; every knob reachable from the command line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir

from src.algos.ar import AR
from src.algos.mdlm import MDLM
from src.algos.noise import Cosine, LogLinear
from src.algos.randomness import StepRandomness, make_generator
from src.algos.t_curriculum import TimeCurriculum
from src.builders import build_algo, build_backbone
from src.optim.param_groups import param_groups
from src.utils.cli import CONFIG_DIR
from src.utils.resolvers import register_resolvers
from tests.oracle import EnumerableDist, OracleMaskedBackbone

register_resolvers()
COMMON = dict(optim={}, lr_scheduler={}, eos_id=0)
TOK = SimpleNamespace(vocab_size=32, mask_id=31, eos_id=0)


def _compose(*overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _build(*overrides: str):
    cfg = _compose("model=0.13M", "data.seq_len=16", *overrides)
    return cfg, build_algo(cfg, TOK, build_backbone(cfg, TOK.vocab_size))


# ---- clean-to-noisy t curriculum ---------------------------------------------------------
def test_curriculum_window_moves_from_clean_to_full_range():
    cur = TimeCurriculum(steps=100, start_lo=0.1, start_hi=0.3)
    assert cur.window(0) == pytest.approx((0.1, 0.3))
    assert cur.window(50) == pytest.approx((0.05, 0.65))
    assert cur.window(100) == cur.window(10**6) == pytest.approx((0.0, 1.0))
    t = torch.tensor([0.0, 0.5, 0.999])
    assert torch.allclose(cur.apply(t, 0), torch.tensor([0.1, 0.2, 0.2998]))
    assert torch.equal(cur.apply(t, 100), t)  # full range: identity
    with pytest.raises(ValueError, match="t_curriculum"):
        TimeCurriculum(steps=10, start_lo=0.5, start_hi=0.2)


class _RecordTimes(MDLM):
    """MDLM that records the times its loss used, at a settable optimizer step."""

    fake_step = 0

    @property
    def global_step(self) -> int:  # the Trainer's counter, without a Trainer
        return self.fake_step

    def _times(self, rng, batch_size):
        self.seen = super()._times(rng, batch_size)
        return self.seen


def test_curriculum_moves_training_times_only_and_is_a_function_of_the_step():
    dist = EnumerableDist(3, 3)
    algo = _RecordTimes(OracleMaskedBackbone(dist), noise=LogLinear(), name="mdlm", vocab_size=4,
                        mask_id=3, t_curriculum={"steps": 10, "start_hi": 0.2}, **COMMON)
    x = dist.sample(64, torch.Generator().manual_seed(0))

    def times(train: bool, step: int) -> torch.Tensor:
        algo.train(train)
        algo.fake_step = step
        algo.loss({"input_ids": x}, StepRandomness(make_generator("cpu", 0), 0.3, 0, 64))
        return algo.seen

    early = times(True, 0)
    assert float(early.max()) <= 0.2 and float(early.min()) > 0  # clean end of the range
    assert torch.equal(times(True, 3), times(True, 3))  # pure function of the step (resume)
    assert float(times(True, 10).max()) > 0.9  # full range after `steps`
    assert float(times(False, 0).max()) > 0.9  # validation never moves: unbiased NELBO


def test_curriculum_and_schedules_from_the_command_line():
    _, algo = _build("algo=mdlm", "+algo.t_curriculum={steps:500,start_hi:0.1}",
                     "noise@algo.noise=cosine",
                     "algo.loss_type=low_var")
    assert algo.t_curriculum.window(0) == (0.0, 0.1) and isinstance(algo.noise, Cosine)
    assert algo.loss_type == "low_var"
    for algo_name in ("esolm", "gidd"):
        _, a = _build(f"algo={algo_name}", "algo.t_curriculum={steps:5}",
                   "noise@algo.noise=poly2")
        assert a.t_curriculum.steps == 5


# ---- AR input masking (Super Data Learners) ----------------------------------------------
class _Recorder(torch.nn.Module):
    """Backbone stand-in recording its inputs; uniform logits."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab, self.inputs = vocab, []
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, sigma=None, **_):
        self.inputs.append(x.clone())
        return torch.zeros(*x.shape, self.vocab) + self.w


def test_ar_input_masking_masks_inputs_and_keeps_targets():
    net = _Recorder(32)
    ar = AR(net, input_mask_prob=0.3, name="ar", vocab_size=32, mask_id=31, **COMMON)
    x = torch.randint(0, 31, (64, 33), generator=torch.Generator().manual_seed(0))
    rng = StepRandomness(make_generator("cpu", 0), 0.0, 0, 64)
    out = ar.train().loss({"input_ids": x}, rng)
    fed = net.inputs[-1]
    dropped = fed == 31
    assert fed.shape == (64, 32) and 0.25 < float(dropped.float().mean()) < 0.35
    assert torch.equal(fed[~dropped], x[:, :-1][~dropped])  # the rest is the true input
    # Targets unchanged: uniform logits over the 31 real ids give exactly log 31 per target.
    assert float(out.nll_sum / out.n_tokens) == pytest.approx(float(torch.log(torch.tensor(31.0))))
    ar.eval().loss({"input_ids": x}, rng)
    assert not (net.inputs[-1] == 31).any()  # evaluation never masks: exact NLL
    with pytest.raises(ValueError, match="input_mask_prob"):
        AR(net, input_mask_prob=1.0, name="ar", vocab_size=32, mask_id=31, **COMMON)


# ---- dropout and weight decay ------------------------------------------------------------
def test_dropout_and_weight_decay_reach_the_model_and_optimizer():
    cfg, algo = _build("algo=ar", "algo.input_mask_prob=0.1", "model.dropout=0.2",
                       "optim.weight_decay=0.05")
    assert algo.input_mask_prob == 0.1
    drops = [m.p for m in algo.backbone.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(p == 0.2 for p in drops)
    x = torch.randint(0, 31, (2, 16))
    net = algo.backbone
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    net.train()
    assert not torch.equal(net(x, None, causal=True), net(x, None, causal=True))
    net.eval()
    assert torch.equal(net(x, None, causal=True), net(x, None, causal=True))
    groups = param_groups(net, cfg.optim.weight_decay, cfg.optim.get("decay_norm_bias_embed", False))
    assert any(g["weight_decay"] == 0.05 and g["params"] for g in groups)
