"""The bad-input table: each case ends with exactly one `error:` line naming the fix, before
anything trains (no traceback, no silent acceptance). Cases that need a trained run
(evaluate, sample) are in tests/test_train_e2e.py.

Rows of issue 22 that need another module's fixtures live beside them:
- a wrong qkv shape / our own last.ckpt / an invalid config.json given to import_model:
  tests/export/test_import.py (test_wrong_qkv_shape_is_named,
  test_own_training_checkpoint_is_told_to_be_used_directly, test_invalid_config_json_is_named);
- a wrong model.n_heads, attacked config.json files: tests/export/test_import_attacks.py;
- one samples file per sampler setting: tests/test_train_e2e.py
  (test_evaluate_one_file_and_samples_land_in_the_run);
- a DUO student without a teacher names algo.teacher_ckpt=: tests/algos/test_duo_distill.py;
- a parquet file read with data.source=json: tests/data/test_sources.py;
- a task YAML with a syntax error: tests/export/test_lm_harness.py;
- nested `_target_` and other file-config attacks on every entry point:
  tests/test_file_config.py, tests/resume/test_safe_loading.py, tests/data/test_shard_meta.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from src.evaluate import main as evaluate_main
from src.sample import main as sample_main
from src.train import main as train_main
from tests.cli import cli_error
from tests.resume.helpers import tiny_overrides

TRAIN_CASES = [  # (overrides, what the one line must say)
    (["training.max_steps=-5"], "training.max_steps=-5 must be a whole number >= 1"),
    (["training.max_steps=0"], "training.max_steps=0 must be a whole number >= 1"),
    (["training.flops_budget=-1"], "training.flops_budget=-1 must be a positive number"),
    (["optim.lr=0"], "optim.lr=0 must be > 0"),
    (["optim.weight_decay=-0.1"], "optim.weight_decay=-0.1 must be >= 0"),
    (["training.ckpt_every_n_steps=-1"], "training.ckpt_every_n_steps=-1 must be a whole number >= 0"),
    (["training.val_every_n_steps=0"], "training.val_every_n_steps=0 must be a whole number >= 1"),
    (["training.ema=1.5"], "training.ema=1.5 must be in [0, 1)"),
    (["training.diverge_above=-1"], "training.diverge_above=-1 must be > 0"),
    (["model.attn_backend=flash"], "model.attn_backend=flash needs a CUDA device"),
    (["model.attn_backend=fast"], "unknown attention backend 'fast'"),
    (["trainer.accelerator=cuda"], "trainer.accelerator=cuda but no CUDA device is visible"),
    (["algo=ar", "sampler=ancestral", "eval.num_samples=1"],
     "MDLMAncestral samples algo=mdlm|esolm, not algo=ar: use sampler=ar"),
    (["algo=mdlm", "sampler=duo_ancestral", "eval.num_samples=1"],
     "DUOAncestral samples algo=duo|duo_distill, not algo=mdlm: use sampler=ancestral_cache"),
    (["algo=mdml"], "unknown algo 'mdml': choose one of"),
    (["model=7M"], "unknown model '7M': choose one of"),
    (["model.parameterization=ntk"], "unknown model.parameterization 'ntk'"),
    (["optim.optimizer=nope.Adam"], "optim.optimizer='nope.Adam' cannot be imported"),
    (["data.batch_size=0"], "data.batch_size=0 must be a whole number >= 1"),
    (["algo=gidd", "model.adaln=false"],
     "algo.time_conditioning=true but model.adaln=false: the plain GPT backbone has no time"),
    (["data.seq_len=1"], "data.seq_len must be >= 2"),
    (["data.seq_len=4096"], "data.seq_len=4096 is longer than model 0.13M's max_seq_len=512"),
    (["training.global_batch_size=6"], "training.global_batch_size=6 is not a multiple of"),
    (["training.init_from=/nonexistent"], "training.init_from=/nonexistent: no such run folder"),
    (["training.init_from=/tmp", "training.init_mode=graft"], "training.init_mode=graft: use one of"),
    (["data=text_files"], "data.path is required: pass data.path=... on the command line"),
    (["training.max_step=10"], "training.max_step is not a setting of this run (did you mean "
                               "training.max_steps?)"),
    (["+training.max_step=10"], "+training.max_step is not a setting of this run (did you mean "
                                "training.max_steps?); an added key that no code reads"),
    (["+algo.t_curiculum={steps:10}"], "did you mean algo.t_curriculum?"),
    (["+optim.momentum=0.9"], "+optim.momentum is not a setting of this run (known keys: betas"),
    (["trainer.max_step=10"], "the lab sets trainer.max_steps itself: use training.max_steps"),
    (["+trainer.max_steps=10"], "the lab sets trainer.max_steps itself: use training.max_steps"),
    (["trainer.gradient_clip_vl=0.5"], "did you mean trainer.gradient_clip_val?"),
    (["model.moe.num_experts=-1"], "model.moe.num_experts=-1 with top_k=1: use num_experts"),
    (["model.moe.top_k=2"], "model.moe.num_experts=0 with top_k=2: use num_experts >= top_k"),
    (["seed=abc"], "seed=abc must be a whole number >= 0"),
    (["algo=gidd", "algo.mix_shift=abc"], "algo.mix_shift=abc must be a number (its default is"),
    (["training.compile=maybe"], "training.compile=maybe must be true or false"),
    (["noise=cosine"], "noise=cosine: the noise schedule is part of the algo: use "
                       "noise@algo.noise=cosine"),
    (["algo=duo_distill", "algo.teacher_ckpt=/nonexistent/run"],
     "algo.teacher_ckpt=/nonexistent/run: no checkpoint there; train the teacher first"),
]


@pytest.mark.parametrize("overrides, expected", TRAIN_CASES, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else None)
def test_bad_training_input_is_one_line(tmp_path: Path, overrides: list[str], expected: str):
    line = cli_error(train_main, "src.train", *tiny_overrides(tmp_path, steps=3), *overrides)
    assert expected in line, line
    assert not list((tmp_path / "runs").rglob("result.json"))  # nothing finished
    if "teacher_ckpt" in expected:  # refused before any run folder exists
        assert not [p for p in (tmp_path / "runs").rglob("config.yaml") if ".hydra" not in str(p)]


@pytest.mark.parametrize("main, module", [(evaluate_main, "src.evaluate"),
                                          (sample_main, "src.sample")])
def test_checkpoint_inputs_without_a_run(tmp_path: Path, main, module):
    assert "ckpt is required: pass ckpt=" in cli_error(main, module, f"paths.log_dir={tmp_path}")
    assert "no checkpoint at" in cli_error(main, module, f"ckpt={tmp_path}/nope",
                                           f"paths.log_dir={tmp_path}")
    (tmp_path / "junk.ckpt").write_bytes(b"\x00garbage" * 100)
    line = cli_error(main, module, f"ckpt={tmp_path}/junk.ckpt", f"paths.log_dir={tmp_path}")
    assert "cannot be read" in line and "junk.ckpt" in line


def test_run_dir_help_is_usage_not_a_traceback():
    import subprocess
    import sys

    from tests.conftest import ROOT
    proc = subprocess.run([sys.executable, "-m", "src.run_dir", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m src.run_dir")
    assert "Traceback" not in proc.stderr


def test_warmup_longer_than_the_run_is_said(tmp_path, caplog):
    import logging

    from tests.conftest import train_tiny
    with caplog.at_level(logging.WARNING, logger="src.train"):
        train_tiny(tmp_path, "training.max_steps=2", "eval.num_samples=0",
                   "lr_scheduler.warmup_steps=5")
    lines = [r.getMessage() for r in caplog.records if "warmup_steps=5" in r.getMessage()]
    assert len(lines) == 1 and "lower lr_scheduler.warmup_steps" in lines[0]


def test_byte_tokenizer_says_it_ignores_a_vocab_size(caplog):
    import logging

    from src.data.tokenizers import build_tokenizer
    with caplog.at_level(logging.WARNING, logger="src.data.tokenizers"):
        assert build_tokenizer("byte", vocab_size=100).vocab_size == 258
        build_tokenizer("byte", vocab_size=258)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["data.tokenizer.vocab_size=100 is ignored: the byte tokenizer has 258 ids "
                     "(use data.tokenizer.kind=bpe for a 100-id vocabulary)"]


def test_entry_point_help_lists_its_own_keys():
    """--help shows each entry point's keys, not the training config groups (two at a time:
    each process spends seconds importing torch)."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import ROOT

    def run(module: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    modules = ["src.evaluate", "src.export", "src.lm_eval", "src.zeroshot"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for module, proc in zip(modules, pool.map(run, modules)):
            assert proc.returncode == 0 and proc.stdout.startswith(f"usage: python -m {module}")
            assert "ckpt:" in proc.stdout and "lr_scheduler" not in proc.stdout, module


@pytest.mark.slow  # lm-eval and a trained run in a subprocess: ~15 s
def test_registered_task_offline_is_one_line(tmp_path):
    """A registered lm-eval task whose data is on the hub, offline: one line, no traceback."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, train_tiny
    run = train_tiny(tmp_path, "training.max_steps=2", "eval.num_samples=0")["run_dir"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "src.lm_eval", f"ckpt={run}",
                           "tasks=lambada_openai", "limit=2"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: tasks=lambada_openai: its data cannot be downloaded here")


def _train_process(tmp_path: Path, *extra: str, file_limit: int | None = None,
                   ) -> subprocess.Popen:
    """`python -m src.train` on the tiny run; `file_limit` caps each file it writes (bytes,
    `ulimit -f`): a full disk without needing a small mount."""
    import resource

    from tests.conftest import ROOT

    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.Popen([sys.executable, "-m", "src.train",
                             *tiny_overrides(tmp_path, steps=6, every=3), *extra],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=limit)


def _error_lines(proc: subprocess.Popen) -> list[str]:
    _, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err[-3000:]
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_a_full_disk_is_one_line_and_the_run_resumes_after(tmp_path):
    """Cold token cache, then a checkpoint, each hit a file-size limit: one line naming the
    file; no temp file stays; with room again the same command resumes and finishes."""
    from src.builders import build_datamodule
    from src.runs.identity import compose_train
    from tests.resume.helpers import run_dir_for

    lines = _error_lines(_train_process(tmp_path, file_limit=1 << 20))
    assert len(lines) == 1 and f"File too large writing {tmp_path}/cache/tokens" in lines[0]
    assert "ulimit -f" in lines[0] and not list(tmp_path.rglob("*.tmp"))

    overrides = tiny_overrides(tmp_path, steps=6, every=3)
    build_datamodule(compose_train(overrides)).setup("fit")  # warm the token cache
    lines = _error_lines(_train_process(tmp_path, file_limit=1 << 20))
    run = run_dir_for(overrides)
    assert len(lines) == 1 and f"writing {run}/checkpoints/" in lines[0], lines
    assert not list(tmp_path.rglob("*.tmp")) and not list(run.rglob("*.pending"))

    proc = _train_process(tmp_path)
    assert _error_lines(proc) == [] and proc.returncode == 0
    assert json.loads((run / "result.json").read_text())["steps"] == 6


def test_a_stop_signal_during_start_up_is_said(tmp_path):
    """SIGTERM before the trainer installs its handlers: one line and the exit code of a
    stopped run (75), not a silent -15."""
    import signal
    import time

    proc = _train_process(tmp_path)
    time.sleep(1.0)  # python is up, torch is still loading
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, (proc.returncode, err[-2000:])
    assert "received SIGTERM while starting up, before the first training step" in err
