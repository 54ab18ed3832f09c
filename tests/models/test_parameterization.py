"""muP / CompleteP: the coordinate check (activations and logits after a few Adam steps stay
flat across widths 32..256 under muP and CompleteP, grow under SP; CompleteP also across
depths), equality with SP at the base shape, unchanged parameter counts, and the optimizer
groups a run trains with (LaProp included)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from src.models.dit import DiT, count_params
from src.models.parameterization import Parameterization
from src.optim.param_groups import param_groups
from src.runs.identity import compose_train
from src.train import train
from tests.resume.helpers import load_last, tiny_overrides

VOCAB, LR, STEPS = 64, 1e-2, 5
WIDTHS, DEPTHS = (32, 64, 128, 256), (2, 4, 8, 16)


def _model(kind: str, dim: int, depth: int, **kw) -> DiT:
    torch.manual_seed(0)
    return DiT(VOCAB, dim, depth, 4, adaln=False, max_seq_len=64, attn_backend="math",
               parameterization=kind, base_width=32, base_depth=2, **kw)


def _rms(t: torch.Tensor) -> float:
    return t.pow(2).mean().sqrt().item()


def coordinate_change(kind: str, dim: int, depth: int) -> tuple[float, float]:
    """RMS change of the logits and of the last block's output after STEPS AdamW steps of
    next-token prediction at a fixed lr (Yang et al. 2021's coordinate check)."""
    model = _model(kind, dim, depth)
    x = torch.randint(0, VOCAB - 1, (16, 32), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(param_groups(model, 0.0, lr=LR, eps=1e-8), lr=LR, eps=1e-8)
    seen: dict[str, torch.Tensor] = {}
    model.blocks[-1].register_forward_hook(lambda m, i, out: seen.__setitem__("h", out.detach()))
    with torch.no_grad():
        logits0, h0 = model(x, causal=True), seen["h"]
    for _ in range(STEPS):
        logits = model(x, causal=True)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits1, h1 = model(x, causal=True), seen["h"]
    return _rms(logits1 - logits0), _rms(h1 - h0)


def mdlm_coordinate_change(kind: str, dim: int, depth: int) -> tuple[float, float]:
    """The same check under MDLM's objective: bidirectional attention, [MASK] inputs, the
    NELBO-weighted loss on masked positions (src/algos/mdlm.py, the real loss), measured on
    one fixed half-masked input."""
    from src.algos.mdlm import MDLM
    from src.algos.noise import LogLinear
    from src.algos.randomness import StepRandomness, make_generator

    model = _model(kind, dim, depth)
    mask_id = VOCAB - 1
    algo = MDLM(model, noise=LogLinear(), name="mdlm", vocab_size=VOCAB, mask_id=mask_id,
                optim={}, lr_scheduler={}, eos_id=0)
    x = torch.randint(0, VOCAB - 1, (16, 32), generator=torch.Generator().manual_seed(1))
    probe = torch.where(torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) < 0.5,
                        mask_id, x)
    opt = torch.optim.AdamW(param_groups(model, 0.0, lr=LR, eps=1e-8), lr=LR, eps=1e-8)
    seen: dict[str, torch.Tensor] = {}
    model.blocks[-1].register_forward_hook(lambda m, i, out: seen.__setitem__("h", out.detach()))
    with torch.no_grad():
        logits0, h0 = model(probe), seen["h"]
    for step in range(STEPS):
        out = algo.loss({"input_ids": x}, StepRandomness(make_generator("cpu", step), 0.3, 0, 16))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    with torch.no_grad():
        logits1, h1 = model(probe), seen["h"]
    return _rms(logits1 - logits0), _rms(h1 - h0)


@pytest.fixture(scope="module")
def by_width() -> dict[str, list[tuple[float, float]]]:
    return {k: [coordinate_change(k, d, 2) for d in WIDTHS] for k in ("sp", "mup", "completep")}


def test_sp_coordinates_grow_with_width(by_width):
    (logit_32, h_32), (logit_256, h_256) = by_width["sp"][0], by_width["sp"][-1]
    assert h_256 / h_32 > 4 and logit_256 / logit_32 > 2, by_width["sp"]


@pytest.mark.parametrize("kind", ["mup", "completep"])
def test_mup_coordinates_stay_flat_across_widths(by_width, kind):
    logits, hidden = zip(*by_width[kind])
    for series in (logits, hidden):
        assert 0.5 < min(series) / series[0] and max(series) / series[0] < 1.5, by_width[kind]


def test_mdlm_coordinates_grow_under_sp_and_stay_flat_under_mup():
    """The coordinate check of the MDLM path (the AR check above covers causal next-token
    prediction only): muP and CompleteP keep MDLM's updates flat across widths 32-256."""
    changes = {k: [mdlm_coordinate_change(k, d, 2) for d in WIDTHS]
               for k in ("sp", "mup", "completep")}
    (logit_32, h_32), (logit_256, h_256) = changes["sp"][0], changes["sp"][-1]
    assert h_256 / h_32 > 3 and logit_256 / logit_32 > 1.5, changes["sp"]
    for kind in ("mup", "completep"):
        for series in zip(*changes[kind]):
            assert 0.5 < min(series) / series[0] and max(series) / series[0] < 1.5, changes


def test_completep_coordinates_stay_flat_across_depths():
    mup = [coordinate_change("mup", 64, n)[1] for n in DEPTHS]
    complete = [coordinate_change("completep", 64, n)[1] for n in DEPTHS]
    assert mup[-1] / mup[0] > 4, mup  # muP alone: each added block adds an O(1) update
    assert max(complete) / complete[0] < 1.5 and min(complete) / complete[0] > 0.5, complete


@pytest.mark.parametrize("kind", ["mup", "completep"])
def test_equal_to_sp_at_the_base_shape(kind):
    """At base width and depth the multipliers are 1 and every group has the base lr."""
    outs = []
    for k in ("sp", kind):
        model = _model(k, 32, 2)
        x = torch.randint(0, VOCAB - 1, (4, 16), generator=torch.Generator().manual_seed(2))
        opt = torch.optim.AdamW(param_groups(model, 0.1, lr=LR, eps=1e-8), lr=LR, eps=1e-8)
        for _ in range(3):
            loss = F.cross_entropy(model(x, causal=True).reshape(-1, VOCAB), x.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        outs.append(model(x, causal=True).detach())
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)


def test_parameter_counts_do_not_change():
    counts = {k: count_params(_model(k, 128, 4)) for k in ("sp", "mup", "completep")}
    assert counts["sp"] == counts["mup"] == counts["completep"]


def test_multipliers_follow_the_tables():
    p = Parameterization.build("completep", 256, 8, 4, base_width=64, base_depth=2)
    assert (p.width_mult, p.depth_mult) == (4.0, 4.0)
    assert p.residual_scale == 0.25 and p.output_scale == 0.25
    assert p.lr_mult("hidden") == 0.25 and p.lr_mult("embedding") == p.lr_mult("vector") == 1.0
    assert p.weight_decay_mult("hidden") == 4.0 and p.eps_mult == 1 / 16
    assert p.attn_scale(64) == pytest.approx(math.sqrt(16) / 64)  # base head dim 64 / 4 heads
    mup = Parameterization.build("mup", 256, 8, 4, base_width=64, base_depth=2)
    assert mup.residual_scale == 1.0 and mup.weight_decay_mult("hidden") == 1.0
    with pytest.raises(ValueError, match="use one of sp, mup, completep"):
        Parameterization.build("ntk", 256, 8, 4, 64, 2)


def test_a_mup_run_trains_with_laprop_and_scaled_groups(tmp_path):
    """model 0.13M (width 64) at base width 32: hidden matrices at lr / 2, the rest at lr."""
    result = train(compose_train(tiny_overrides(
        tmp_path, "optim=laprop", "optim.lr=2e-3", "optim.weight_decay=0.1",
        "model.parameterization=completep", "model.base_width=32", "model.base_depth=1",
        steps=3, every=3)))
    groups = load_last(Path(result["run_dir"]))["optimizer_states"][0]["param_groups"]
    assert sorted({g["initial_lr"] for g in groups}) == [1e-3, 2e-3]
    hidden = next(g for g in groups if g["initial_lr"] == 1e-3)
    assert hidden["weight_decay"] == pytest.approx(0.2)  # decoupled decay x m_w
    assert hidden["eps"] == pytest.approx(1e-15 / 4)  # / (m_w m_L) = / (2 x 2)
    assert "centered" in hidden  # LaProp's own option
    assert math.isfinite(result["val_nll"])
