"""Every algo x model config composes and builds; bad choices fail with one clear line."""

from __future__ import annotations

import functools
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.builders import build_algo, build_backbone
from src.samplers.defaults import default_sampler
from src.models.dit import count_params
from src.utils.cli import CONFIG_DIR, group_options
from src.utils.resolvers import register_resolvers
from tests.cli import cli_error
from tests.conftest import ROOT

register_resolvers()
ALGOS = group_options("algo")
MODELS = group_options("model")
FAKE_TOK = SimpleNamespace(vocab_size=32001, mask_id=32000, eos_id=0)


def _compose(*overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_default_config_is_the_cpu_quickstart():
    cfg = _compose()
    assert cfg.algo.name == "mdlm" and cfg.data.tag == "shakespeare"
    assert cfg.sampler._target_.endswith("MDLMAncestral")


# The fast suite builds every model with MDLM and every algo with the smallest and largest
# models; the whole algo x model product (246 composes) runs with the slow tests.
FAST_PAIRS = sorted({("mdlm", m) for m in MODELS} | {(a, m) for a in ALGOS
                                                      for m in (MODELS[0], MODELS[-1])})
PAIRS = [pytest.param(a, m, marks=() if (a, m) in FAST_PAIRS else pytest.mark.slow)
         for a in ALGOS for m in MODELS]


@functools.cache
def _default_sampler_config(algo: str):
    return _compose(f"algo={algo}", f"sampler={default_sampler(algo)}").sampler


@pytest.mark.parametrize("algo, model", PAIRS)
def test_algo_x_model_composes_and_builds(algo, model):
    cfg = _compose(f"algo={algo}", f"model={model}", "data.seq_len=128")
    with torch.device("meta"):
        built = build_algo(cfg, FAKE_TOK, build_backbone(cfg, FAKE_TOK.vocab_size))
    assert built.name == algo
    assert count_params(built.backbone)["params"] > 0
    # The sampler the algo's config selects is the one its messages name.
    assert _default_sampler_config(algo) == cfg.sampler


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_composes_and_builds(experiment):
    """Each sweep point of an experiment (first value of every swept key) composes and builds."""
    raw = OmegaConf.load(CONFIG_DIR / "experiment" / f"{experiment}.yaml")
    params = OmegaConf.select(raw, "hydra.sweeper.params", default=None) or {}
    point = [f"{key}={str(values).split(',')[0]}" for key, values in params.items()]
    cfg = _compose(f"experiment={experiment}", *point)
    with torch.device("meta"):
        built = build_algo(cfg, FAKE_TOK, build_backbone(cfg, FAKE_TOK.vocab_size))
    assert built.name == cfg.algo.name and cfg.experiment_name in cfg.run_dir


def test_run_dir_is_deterministic_and_names_the_run():
    a = _compose("algo=ar", "model=2M", "seed=3")
    b = _compose("seed=3", "model=2M", "algo=ar")
    assert a.run_dir == b.run_dir
    assert all(part in a.run_dir for part in ("/ar/", "/2M/", "/s3"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "src.train", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_unknown_choice_is_one_clear_line():
    out = _cli("algo=nope")  # a real process: exit status and nothing else on stderr
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown algo 'nope'" in lines[0] and "choose one of" in lines[0]


def _train_error(*args: str) -> str:
    from src.train import main

    return cli_error(main, "src.train", *args)


def test_unknown_model_is_one_clear_line():
    line = _train_error("model=7B")
    assert "unknown model '7B'" in line and "choose one of" in line


def test_seq_len_longer_than_model_is_one_clear_line(tmp_path):
    line = _train_error("model=0.13M", "data.seq_len=1024", f"paths.log_dir={tmp_path}")
    assert "max_seq_len" in line


@pytest.mark.parametrize("args,needle", [
    (("flops=kaplan",), "unknown flops 'kaplan'"),
    (("flops.convention=kaplan",), "convention"),
    (("training.flops_budget=1e3",), "budget"),
])
def test_budget_errors_are_one_clear_line(tmp_path, args, needle):
    line = _train_error(*args, "data=shakespeare_byte", f"paths.log_dir={tmp_path}",
                        f"paths.cache_dir={tmp_path}/cache")
    assert needle in line, line


@pytest.mark.parametrize("logger", group_options("logger"))
def test_every_logger_config_instantiates_offline(logger, tmp_path, monkeypatch):
    from src.builders import build_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = _compose(f"logger={logger}", f"paths.log_dir={tmp_path}")
    loggers = build_loggers(cfg)
    assert loggers and all(str(tmp_path) in str(lg.save_dir) for lg in loggers)
