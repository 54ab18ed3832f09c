"""A checkpoint's stored run config is data: the attack shapes of issue 22 (a nested
`_target_` in a leaf, a swapped top-level `_target_`, Hydra call controls, a repo function
aimed at a path outside the run, interpolations) are refused in one line by every reader,
and no code runs (a marker file stays absent)."""

from __future__ import annotations

import base64
import copy
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.checkpoints import load_run
from src.resume.checkpoint_file import load_checkpoint_file
from src.runs.file_config import UnsafeConfig, check_file_config
from tests.conftest import ROOT, train_tiny


class _Touch:
    """Pickled inside the torch.load payload: unpickling it would create the marker."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def attacks(marker: Path) -> dict[str, tuple[str, object]]:
    """{name: (dotted key to set, value)} on a valid run config."""
    payload = base64.b64encode(pickle.dumps(_Touch(str(marker)))).decode()
    writer = {"_target_": "src.utils.atomic.atomic_write_text", "path": str(marker), "text": "x"}
    return {
        "nested target in a leaf (issue's torch.load payload)": ("model.dropout", {
            "_target_": "torch.load", "weights_only": False,
            "f": {"_target_": "io.BytesIO",
                  "_args_": [{"_target_": "base64.b64decode", "_args_": [payload]}]}}),
        "top-level target swapped": ("model._target_", "pathlib.Path.touch"),
        "algo target swapped to a repo function": ("algo", writer),
        "repo function aimed outside the run": ("data", writer),
        "_args_ on an allowed class": ("model._args_", [str(marker)]),
        "_partial_ on an allowed class": ("sampler._partial_", True),
        "_recursive_ switched": ("algo._recursive_", False),
        "interpolation": ("data.path", "${oc.env:HOME}"),
        "optimizer class path": ("optim.optimizer", "subprocess.Popen"),
        "target under the noise": ("algo.noise", {"_target_": "os.system",
                                                  "_args_": [f"touch {marker}"]}),
        # The schema (src/runs/config_schema.py): known keys, typed values.
        "mapping where configs/ has a number": ("model.dim", {"x": 1}),
        "unknown key": ("model.dimm", 64),
        "string for a whole number": ("data.seq_len", "64"),
        "fraction for a whole number": ("model.n_heads", 4.5),
        "null for a flag": ("model.adaln", None),
    }


def _set(tree: dict, dotted: str, value: object) -> dict:
    tree = copy.deepcopy(tree)
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    return tree


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("file_config")
    return Path(train_tiny(root, "training.max_steps=2", "eval.num_samples=0",
                           "training.ckpt_every_n_steps=1")["run_dir"])


def _bad_checkpoint(run: Path, tmp_path: Path, key: str, value: object) -> Path:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["run_config"] = _set(ckpt["run_config"], key, value)
    path = tmp_path / "bad.ckpt"
    torch.save(ckpt, path)
    return path


def test_a_valid_run_config_passes(run):
    ckpt = load_checkpoint_file(run / "checkpoints" / "last.ckpt")
    check_file_config(ckpt["run_config"], "last.ckpt")
    # A callback the user named on the command line is never built from the file.
    own = _set(ckpt["run_config"], "callbacks", {"mine": {"_target_": "my.pkg.Callback"}})
    check_file_config(own, "last.ckpt")


@pytest.mark.parametrize("name", list(attacks(Path("m"))))
def test_every_reader_refuses_in_one_line_and_runs_nothing(run, tmp_path, name):
    marker = tmp_path / "marker"
    key, value = attacks(marker)[name]
    bad = _bad_checkpoint(run, tmp_path, key, value)
    for read in (load_checkpoint_file, load_run):  # evaluate/sample/export/lm_eval/teacher: load_run
        with pytest.raises(UnsafeConfig) as err:
            read(bad)
        message = str(err.value)
        assert "\n" not in message and str(bad) in message and key.split(".")[0] in message
    assert not marker.exists()


def test_init_from_refuses(run, tmp_path):
    marker = tmp_path / "marker"
    bad = _bad_checkpoint(run, tmp_path, *attacks(marker)["algo target swapped to a repo function"])
    with pytest.raises(UnsafeConfig):
        train_tiny(tmp_path / "child", f"training.init_from={bad}")
    assert not marker.exists()


def test_a_swapped_last_ckpt_is_skipped_on_resume(run, tmp_path):
    """Resume treats it as unreadable and falls back to the previous checkpoint."""
    marker = tmp_path / "marker"
    root = tmp_path / "again"
    first = Path(train_tiny(root, "training.max_steps=2", "eval.num_samples=0",
                            "training.ckpt_every_n_steps=1", "training.keep_last_k=3")["run_dir"])
    bad = _bad_checkpoint(first, tmp_path, *attacks(marker)["nested target in a leaf "
                                                             "(issue's torch.load payload)"])
    last = (first / "checkpoints" / "last.ckpt").resolve()
    bad.replace(last)
    result = train_tiny(root, "training.max_steps=2", "eval.num_samples=0",
                        "training.ckpt_every_n_steps=1", "training.keep_last_k=3",
                        "training.overwrite=true")
    assert result["steps"] == 2 and not marker.exists()


def test_every_config_in_configs_passes_the_schema():
    """Each option of each built group, composed as a run would be, is valid file content
    (the schema is read off the same files, so this guards the reader, not the files)."""
    from omegaconf import OmegaConf

    from src.runs.identity import compose_train
    from src.utils.cli import group_options
    for group, key in (("algo", "algo"), ("model", "model"), ("data", "data"),
                       ("sampler", "sampler"), ("noise", "noise@algo.noise"), ("optim", "optim"),
                       ("experiment", "experiment")):
        for option in group_options(group):
            cfg = OmegaConf.to_container(compose_train([f"{key}={option}"]), resolve=True)
            check_file_config(cfg, f"{key}={option}")


CLI_ARGS = {"src.evaluate": ["max_batches=1"], "src.export": ["out={tmp}/hf"],
            "src.sample": ["num_samples=1", "steps=2", "out={tmp}/s.json"],
            "src.zeroshot": [], "src.lm_eval": ["tasks=[x]"]}


@pytest.mark.parametrize("program", list(CLI_ARGS))
def test_cli_says_one_line(run, tmp_path, program):
    marker = tmp_path / "marker"
    bad = _bad_checkpoint(run, tmp_path, *attacks(marker)["top-level target swapped"])
    extra = [arg.format(tmp=tmp_path) for arg in CLI_ARGS[program]]
    proc = subprocess.run([sys.executable, "-m", program, f"ckpt={bad}", *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "model._target_" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not marker.exists()
