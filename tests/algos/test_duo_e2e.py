"""End to end on CPU: train a tiny DUO run, distill it, sample the student in 4 steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from src.sample import sample
from src.train import train
from src.utils.cli import CONFIG_DIR, one_line_errors
from src.utils.resolvers import register_resolvers

register_resolvers()


def cfg_of(name: str, overrides: list[str]):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=overrides)


def tiny(root: Path, *extra: str) -> list[str]:
    return ["model=0.13M", "data=shakespeare_byte", "data.seq_len=32", "data.batch_size=4",
            "data.eval_batch_size=16", "training.max_steps=4", "training.val_max_batches=1",
            "eval.num_samples=1", "eval.sample_steps=4", "trainer.enable_progress_bar=false",
            "trainer.precision=32-true",
            f"paths.log_dir={root}/runs", f"paths.cache_dir={root}/cache", *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("duo_e2e")
    teacher = train(cfg_of("train", tiny(root, "algo=duo")))
    student = train(cfg_of("train", tiny(root, "algo=duo_distill", "algo.refresh_every=2",
                                         f"algo.teacher_ckpt={teacher['run_dir']}")))
    return {"duo": teacher, "duo_distill": student, "root": root}


@pytest.mark.parametrize("algo", ["duo", "duo_distill"])
def test_run_writes_result(runs, algo):
    run_dir = Path(runs[algo]["run_dir"])
    result = json.loads((run_dir / "result.json").read_text())
    assert result["algo"] == algo and result["steps"] == 4
    assert 0 < result["val_nll"] < 7
    assert len(json.loads((run_dir / "samples.json").read_text())) == 1


def test_distillation_refreshed_its_teacher(runs):
    ckpt = torch.load(Path(runs["duo_distill"]["run_dir"]) / "checkpoints" / "last.ckpt",
                      map_location="cpu", weights_only=False)
    assert ckpt["algo_state"]["teacher_round"] == 1  # refresh at step 2 of 4
    assert any(k.startswith("teacher.") for k in ckpt["state_dict"])


def test_student_samples_in_four_steps(runs):
    root = runs["root"]
    out = sample(cfg_of("sample", [f"ckpt={runs['duo_distill']['run_dir']}", "steps=4",
                                   "num_samples=3", "device=cpu", f"paths.log_dir={root}/runs"]))
    ids = torch.tensor(out["ids"])
    assert out["algo"] == "duo_distill" and out["nfe"] == 4 and ids.shape == (3, 32)
    assert (ids != 257).all()  # never [MASK]


def test_distill_without_teacher_is_one_line(tmp_path):
    cfg = cfg_of("train", tiny(tmp_path, "algo=duo_distill"))
    with pytest.raises(SystemExit, match=r"^error: algo=duo_distill needs .*algo\.teacher_ckpt="):
        one_line_errors(train)(cfg)
