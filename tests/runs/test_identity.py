"""Run identity: configs that can train differently never share a folder; one config always
finds its own folder; the README recipes keep the folders they had before identities."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from src.runs.identity import compose_train, identity_of
from src.runs.semantic import canonical, is_semantic, semantic_values
from src.utils.resolvers import budget_tag

README_RECIPES = {  # overrides -> the folder they used before run identities (relative)
    (): "quickstart/mdlm/1M/shakespeare/steps600/s0",
    ("algo=ar",): "quickstart/ar/1M/shakespeare/steps600/s0",
    ("algo=mdlm", "model=2M", "training.max_steps=3000"): "quickstart/mdlm/2M/shakespeare/steps3000/s0",
    ("algo=gidd", "algo.mix_shift=0"): "quickstart/gidd/1M/shakespeare/steps600/s0",
    ("experiment=cpu_micro_ladder", "algo=mdlm", "model=0.25M", "training.flops_budget=4e12"):
        "cpu_micro_ladder/mdlm/0.25M/shakespeare_byte/f4e+12/s0",
    ("experiment=data_constrained_cpu", "algo=ar"):
        "data_constrained_cpu/ar/0.13M/shakespeare/u200000/steps600/s0",
    ("experiment=duo_cpu",): "duo_cpu/duo/1M/shakespeare/steps1500/s0",
    ("experiment=duo_distill_cpu",): "duo_distill_cpu/duo_distill/1M/shakespeare/steps600/s0",
    ("experiment=isoflop_ladder", "algo=ar", "model=19M", "training.flops_budget=1e18"):
        "isoflop_ladder/ar/19M/openwebtext/f1e+18/s0",
}

# The same config spelled differently, or changed only in keys that are not semantic.
SAME_AS_DEFAULT = [
    ["optim.lr=1e-3"], ["optim.lr=0.001"], ["algo=mdlm"], ["trainer=gpu"], ["trainer=fsdp"],
    ["trainer.devices=2", "trainer.strategy=ddp"], ["data.batch_size=4", "training.global_batch_size=8"],
    ["training.ckpt_every_n_steps=50", "training.keep_last_k=5"], ["eval.num_samples=0"],
    ["training.val_every_n_steps=10"], ["model.attn_backend=sdpa"], ["training.compile=true"],
    ["logger=tensorboard"], ["paths.cache_dir=/elsewhere"], ["sampler=ancestral"],
    ["data.num_workers=4"], ["training.overwrite=true"],
]
# Each changes what is trained or reported: every one needs its own folder.
DIFFERENT = [
    ["optim.lr=3e-3"], ["optim.lr=1e-2"], ["optim.weight_decay=0.1"], ["optim.betas=[0.9,0.95]"],
    ["data.batch_size=16"], ["training.global_batch_size=64"], ["lr_scheduler=wsd"],
    ["lr_scheduler.warmup_steps=10"], ["noise@algo.noise=cosine"], ["algo.loss_type=low_var"],
    ["model.dropout=0.1"], ["trainer.precision=32-true"], ["trainer.gradient_clip_val=0.5"],
    ["training.ema=0.999"], ["training.val_max_batches=4"], ["data.seq_len=64"],
    ["data.unique_tokens=50000"], ["flops=full"], ["+algo.t_curriculum={steps:10,start_hi:0.1}"],
    ["model.dim=192"], ["data.tokenizer.vocab_size=2048"],
]


@pytest.mark.parametrize("overrides, folder", README_RECIPES.items(),
                         ids=[" ".join(k) or "quickstart" for k in README_RECIPES])
def test_readme_recipes_keep_their_folders(overrides, folder):
    identity = identity_of(compose_train([*overrides, "paths.log_dir=R"]))
    assert identity.run_dir == f"R/{folder}" and identity.config_delta == {}


@pytest.mark.parametrize("overrides", SAME_AS_DEFAULT, ids=" ".join)
def test_same_config_finds_the_default_folder(overrides):
    assert identity_of(compose_train(overrides)).run_dir == identity_of(compose_train([])).run_dir


def test_semantic_changes_get_their_own_folders():
    dirs = [identity_of(compose_train(o)).run_dir for o in [[], *DIFFERENT]]
    assert len(set(dirs)) == len(dirs), dirs


def test_a_sweep_axis_is_readable_in_the_delta():
    identity = identity_of(compose_train(["optim.lr=3e-3"]))
    assert identity.config_delta == {"optim.lr": 0.003}
    assert identity.run_dir.endswith(f"/s0-{identity.config_hash}") and len(identity.config_hash) == 8
    # 1, 1.0 and 1e0 are one value: one folder.
    spellings = {identity_of(compose_train([f"optim.lr={v}"])).run_dir for v in ("1", "1.0", "1e0")}
    assert len(spellings) == 1


def test_a_shared_folder_means_equal_semantic_configs():
    """Over pairs of configs: same folder => same semantic values (the property that keeps
    sweeps apart), and the converse unless a label of the path differs (model.name below)."""
    sets = [[], ["optim.lr=3e-3"], ["algo=ar"], ["algo=ar", "optim.lr=3e-3"], ["seed=1"],
            ["model=2M"], ["data.batch_size=16"], ["data.batch_size=16", "training.global_batch_size=16"],
            ["experiment=duo_cpu"], ["experiment=duo_cpu", "optim.lr=3e-3"],
            ["training.max_steps=10"], ["training.flops_budget=1e12"],
            ["training.flops_budget=1e12", "training.max_steps=5"], ["model.name=2M"]]
    runs = [(identity_of(c).run_dir, canonical(semantic_values(c)))
            for c in (compose_train(o) for o in sets)]
    relabelled = len(sets) - 1
    for (i, (dir_a, sem_a)), (j, (dir_b, sem_b)) in itertools.combinations(enumerate(runs), 2):
        if dir_a == dir_b:
            assert sem_a == sem_b, (dir_a, dir_b)
        elif relabelled not in (i, j):
            assert sem_a != sem_b, (dir_a, dir_b)


def test_budget_tags_are_lossless():
    assert budget_tag(6e18, 0) == "f6e+18" and budget_tag(None, 1500) == "steps1500"
    assert budget_tag(1.2345e18, 0) != budget_tag(1.2346e18, 0)


def test_non_semantic_keys_are_the_documented_ones():
    assert not is_semantic("trainer.devices") and not is_semantic("logger.csv.save_dir")
    assert is_semantic("optim.lr") and is_semantic("trainer.precision")
    assert is_semantic("training.global_batch_size") and not is_semantic("data.batch_size")
    assert is_semantic("model.some_future_option")  # new keys count until decided otherwise


def test_run_dir_cli_prints_the_hashed_folder(tmp_path):
    from src.run_dir import main

    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["optim.lr=3e-3", f"paths.log_dir={tmp_path}"])
    expected = identity_of(compose_train(["optim.lr=3e-3", f"paths.log_dir={tmp_path}"])).run_dir
    assert Path(out.getvalue().strip()) == Path(expected).absolute()
