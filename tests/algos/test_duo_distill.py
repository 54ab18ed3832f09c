"""Discrete consistency distillation: one step, teacher refresh + dt doubling, bad inputs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.algos.duo_distill import DUODistill, distill_dt
from src.algos.randomness import StepRandomness, make_generator
from src.algos.uniform_noise import log_reverse_posterior, reverse_posterior
from src.builders import build_algo, build_backbone, build_datamodule
from src.checkpoints import load_run
from src.utils.cli import CONFIG_DIR
from src.utils.resolvers import register_resolvers

register_resolvers()


def compose_cfg(tmp: Path, *overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[
            "model=0.13M", "data=shakespeare_byte", "data.seq_len=16", f"paths.log_dir={tmp}",
            f"paths.cache_dir={tmp}/cache", *overrides])


def build(cfg, tok=None):
    tok = tok or build_datamodule(cfg).tokenizer
    torch.manual_seed(0)
    teacher = cfg.algo.get("teacher_ckpt")  # as src.train does: loaded, then passed in
    extra = {"teacher_run": load_run(teacher)} if teacher else {}
    return build_algo(cfg, tok, build_backbone(cfg, tok.vocab_size), **extra), tok


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    """A DUO 'run' written by hand: run_config + state_dict is all load_run needs."""
    tmp = tmp_path_factory.mktemp("teacher")
    cfg = compose_cfg(tmp, "algo=duo")
    algo, _ = build(cfg)
    with torch.no_grad():
        for p in algo.backbone.parameters():
            p.normal_(0, 0.05)
    path = tmp / "teacher.ckpt"
    torch.save({"run_config": OmegaConf.to_container(cfg, resolve=True),
                "state_dict": algo.state_dict()}, path)
    return path


def student(tmp: Path, teacher: Path | None, *overrides: str, tok=None) -> tuple[DUODistill, object]:
    ckpt = f"algo.teacher_ckpt={teacher}" if teacher else "algo.teacher_ckpt=null"
    return build(compose_cfg(tmp, "algo=duo_distill", ckpt, *overrides), tok)


def test_dt_doubles_at_each_refresh():
    dts = [distill_dt(s, refresh_every=3, base_steps=8, dt_max=0.5) for s in range(11)]
    assert dts == [1 / 8] * 3 + [2 / 8] * 3 + [4 / 8] * 3 + [0.5] * 2


@pytest.mark.parametrize("match", ["x_theta", "posterior", "clean"])
def test_student_starts_from_teacher_and_one_step_runs(tmp_path, teacher_ckpt, match):
    algo, tok = student(tmp_path, teacher_ckpt, "algo.base_steps=4", f"algo.match={match}")
    algo.load_teacher(tok)
    saved = torch.load(teacher_ckpt, weights_only=False)["state_dict"]
    for name, p in algo.backbone.state_dict().items():
        assert torch.equal(p, saved[f"backbone.{name}"])
        assert torch.equal(p, algo.teacher.state_dict()[name])
    algo.train()
    assert not algo.teacher.training
    x = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(0))
    out = algo.loss({"input_ids": x}, StepRandomness(make_generator("cpu", 0), 0.2, 0, 4))
    out.loss.backward()
    assert torch.isfinite(out.loss) and float(out.loss.detach()) >= 0
    assert all(p.grad is None for p in algo.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in algo.backbone.parameters())
    algo.eval()  # validation: the student's DUO NELBO, not the KL
    with torch.no_grad():
        val = algo.loss({"input_ids": x}, StepRandomness(make_generator("cpu", 1), 0.2, 0, 4))
    assert float(val.nll_sum / val.n_tokens) > 1.0


@pytest.mark.parametrize("from_ema", [False, True])
def test_teacher_refresh_schedule(tmp_path, teacher_ckpt, from_ema):
    extra = ["training.ema=0.5"] if from_ema else []
    algo, tok = student(tmp_path, teacher_ckpt, "algo.refresh_every=3",
                        f"algo.teacher_from_ema={from_ema}", *extra)
    algo.load_teacher(tok)

    def nudge():
        with torch.no_grad():
            for p in algo.backbone.parameters():
                p.add_(0.01)
        if algo.ema is not None:
            algo.ema.update(algo.backbone)

    def teacher_is(source) -> bool:
        return all(torch.equal(a, b.to(a.dtype)) for a, b in zip(algo.teacher.parameters(), source))

    refreshed = []
    for step in range(7):
        nudge()
        refreshed.append(algo.maybe_refresh_teacher(step))
    assert refreshed == [False, False, False, True, False, False, True]
    source = algo.ema.shadow if from_ema else list(algo.backbone.parameters())
    assert teacher_is(source) and algo.teacher_round == 2
    nudge()
    assert not teacher_is(list(algo.backbone.parameters()))
    state = {"algo_state": {}}
    algo.on_save_checkpoint(state)
    assert state["algo_state"]["teacher_round"] == 2


def test_missing_teacher_is_one_clear_error(tmp_path):
    algo, tok = student(tmp_path, None)
    with pytest.raises(ValueError, match=r"algo\.teacher_ckpt=<DUO run dir or \.ckpt>"):
        algo.load_teacher(tok)


def test_other_model_size_is_named(tmp_path, teacher_ckpt):
    algo, tok = student(tmp_path, teacher_ckpt, "model=0.44M")
    with pytest.raises(ValueError, match=r"model size: teacher model=0\.13M.*pass model=0\.13M") as e:
        algo.load_teacher(tok)
    assert "tokenizer" not in str(e.value)


def test_other_tokenizer_is_named(tmp_path, teacher_ckpt):
    fake = SimpleNamespace(name="bpe4096", vocab_size=4096, mask_id=4095, eos_id=0,
                           fingerprint="bpe4096-v4096-abc")
    algo, _ = student(tmp_path, teacher_ckpt, tok=fake)
    with pytest.raises(ValueError, match=r"tokenizer: teacher byte, vocab 258.*data=shakespeare_byte"):
        algo.load_teacher(fake)


def test_teacher_must_be_duo(tmp_path, teacher_ckpt):
    cfg = compose_cfg(tmp_path, "algo=mdlm")
    algo, _ = build(cfg)
    path = tmp_path / "mdlm.ckpt"
    torch.save({"run_config": OmegaConf.to_container(cfg, resolve=True),
                "state_dict": algo.state_dict()}, path)
    distill, tok = student(tmp_path, path)
    with pytest.raises(ValueError, match="is a mdlm run"):
        distill.load_teacher(tok)


def test_log_reverse_posterior_equals_the_dense_posterior():
    g = torch.Generator().manual_seed(0)
    x = torch.softmax(torch.randn(3, 5, 7, generator=g, dtype=torch.float64), -1)
    z = torch.randint(0, 7, (3, 5), generator=g)
    a_t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    a_s = torch.tensor([0.3, 0.6, 1.0], dtype=torch.float64)  # 1.0: the clean prediction
    log_q = log_reverse_posterior(x.log(), z, a_t[:, None], a_s[:, None])
    for b in range(3):
        dense = reverse_posterior(x[b], z[b], float(a_t[b]), float(a_s[b]))
        assert torch.allclose(log_q[b].exp(), dense, rtol=1e-10, atol=1e-14)


def test_posterior_match_sees_mass_left_on_a_noise_token():
    """Teacher: 1e-6 on the current (noise) token, student: 1e-3. The x_theta KL hardly
    differs from 0, but the sampler multiplies x_i by K: the posterior KL is large."""
    k, i = 4095, 7
    teacher = torch.full((1, 1, k), 1.0 / (k - 1), dtype=torch.float64)
    teacher[..., i] = 1e-6
    student = teacher.clone()
    student[..., i] = 1e-3
    teacher, student = teacher / teacher.sum(-1, keepdim=True), student / student.sum(-1, keepdim=True)

    def kl(p_log, q_log):
        return float((p_log.exp() * (p_log - q_log)).sum())

    z, a_t, a_s = torch.tensor([[i]]), torch.tensor([[0.5]]), torch.tensor([[0.625]])
    kl_x = kl(student.log(), teacher.log())
    kl_post = kl(log_reverse_posterior(student.log(), z, a_t, a_s),
                 log_reverse_posterior(teacher.log(), z, a_t, a_s))
    assert kl_x < 0.01 and kl_post > 0.2 and kl_post > 30 * kl_x  # stays 0.92 vs 0.60


def test_unknown_match_is_one_clear_error(tmp_path, teacher_ckpt):
    with pytest.raises(ValueError, match="unknown algo.match='bogus'"):
        student(tmp_path, teacher_ckpt, "algo.match=bogus")


def test_student_times_lie_in_dt_to_t_max(tmp_path, teacher_ckpt):
    algo, tok = student(tmp_path, teacher_ckpt, "algo.base_steps=4", "algo.t_max=0.6")
    algo.load_teacher(tok)
    algo.train()
    seen, alpha = [], algo.noise.alpha
    algo.noise.alpha = lambda t: (seen.append(t.detach().clone()), alpha(t))[1]
    x = torch.randint(0, 256, (64, 16), generator=torch.Generator().manual_seed(0))
    algo.loss({"input_ids": x}, StepRandomness(make_generator("cpu", 0), 0.3, 0, 64))
    t, s = seen[0], seen[1]  # the student's time, then the teacher's
    assert torch.allclose(t - s, torch.full_like(t, 0.25))  # dt = 1 / base_steps
    assert float(s.min()) > 0 and float(t.max()) <= 0.6 and float(t.max()) > 0.55


def test_dt_max_must_stay_below_t_max(tmp_path, teacher_ckpt):
    with pytest.raises(ValueError, match="0 < algo.dt_max < algo.t_max <= 1"):
        student(tmp_path, teacher_ckpt, "algo.t_max=0.5", "algo.dt_max=0.5")


def test_distillation_step_flops_match_the_counter(tmp_path, teacher_ckpt):
    """The student's forward + backward and the frozen teacher's forward: 3 + 1 passes."""
    from src.algos.cost import algo_passes
    from src.models.flops import training_flops
    from tests.scaling.test_flops import counted

    algo, tok = student(tmp_path, teacher_ckpt, "model.attn_backend=math")
    algo.load_teacher(tok)
    algo.train()
    x = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(0))
    rng = StepRandomness(make_generator("cpu", 0), 0.2, 0, 4)
    measured = counted(lambda: algo.loss({"input_ids": x}, rng).loss.backward())
    cfg = compose_cfg(tmp_path, "algo=duo_distill")
    m = cfg.model
    analytic = 4 * training_flops(algo_passes(cfg.algo, 16), dim=m.dim, n_blocks=m.n_blocks,
                                  n_heads=m.n_heads, vocab_size=tok.vocab_size, seq_len=16,
                                  cond_dim=m.cond_dim, adaln=m.adaln)
    assert abs(analytic / measured - 1) < 0.02, analytic / measured
