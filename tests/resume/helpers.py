"""Shared by the resume, Slurm and DDP tests: tiny-run overrides, test-only callbacks that
`python -m src.train` loads through `+callbacks.<name>._target_=...`, and state comparison."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch

from src.callbacks.step_pace import SlowSteps  # noqa: F401 (loaded as tests.resume.helpers.SlowSteps)

# Not tests.conftest.ROOT: importing conftest sets torch's thread count, and these callbacks
# are imported inside `python -m src.train` runs whose numerics must not change with them.
ROOT = Path(__file__).resolve().parents[2]

# Columns that depend on wall time, not on the training state.
TIMING_COLUMNS = ("perf/tokens_per_s",)


def tiny_overrides(root: Path, *extra: str, steps: int = 12, every: int = 3) -> list[str]:
    """A ~0.1 s/step MDLM run writing under `root` (fp32: bitwise-reproducible on CPU)."""
    return [
        "model=0.13M", "data=shakespeare_byte", "data.seq_len=32", "data.batch_size=4",
        "data.eval_batch_size=16", f"training.max_steps={steps}",
        f"training.ckpt_every_n_steps={every}", f"training.val_every_n_steps={every}",
        "training.val_max_batches=2", "trainer.precision=32-true", "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false", "eval.num_samples=0",
        f"paths.log_dir={root}/runs", f"paths.cache_dir={root}/cache", *extra,
    ]


def run_dir_of(root: Path, steps: int, algo: str = "mdlm", experiment: str = "quickstart",
               seed: int = 0) -> Path:
    """The one run folder of seed `seed` under `root` (`s<seed>` or `s<seed>-<config hash>`: the
    tiny overrides differ from the defaults, so their folders carry a hash)."""
    parent = root / "runs" / experiment / algo / "0.13M" / "shakespeare_byte" / f"steps{steps}"
    found = [p for p in parent.glob(f"s{seed}*") if p.name.split("-")[0] == f"s{seed}"]
    assert len(found) <= 1, f"several runs of seed {seed} in {parent}: {found}"
    return found[0] if found else parent / f"s{seed}"


def run_dir_for(overrides: list[str]) -> Path:
    """The run folder `python -m src.train <overrides>` will use (before it exists)."""
    from src.runs.identity import resolve_run_dir

    return resolve_run_dir(overrides)


def train_cli(overrides: list[str], timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "src.train", *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


# ---- test-only callbacks ----------------------------------------------------------------------
class CrashAt(L.Callback):
    """Raises once the run reaches optimizer step `step` (an in-process 'kill')."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError(f"simulated crash at step {trainer.global_step}")


class SignalAt(L.Callback):
    """Sends `signame` to this process when optimizer step `step` starts (in-process preemption)."""

    def __init__(self, step: int, signame: str = "SIGUSR1") -> None:
        self.step, self.signame, self.sent = step, signame, False

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.signame))


class StepRecorder(L.Callback):
    """Appends one JSON line per micro-batch: step, position, loss bits and a hash of the ids.

    Written and flushed at the micro-batch's end, before any checkpoint of that step: after
    a kill the file also holds the steps the resumed run replays, which must match bitwise.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._position: tuple[int, int] = (0, 0)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        step, offset, _ = pl_module._train_position(batch["input_ids"].shape[0])
        self._position = (step, offset)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = float(outputs["loss"]) * trainer.accumulate_grad_batches  # Lightning divides it
        ids = batch["input_ids"].cpu().numpy().tobytes()
        row = {"step": self._position[0], "offset": self._position[1], "loss": loss.hex(),
               "ids": hashlib.sha1(ids).hexdigest()[:16], "rank": trainer.global_rank}
        with open(f"{self.path}.rank{trainer.global_rank}", "a") as f:
            f.write(json.dumps(row) + "\n")




class ShardProbe(L.Callback):
    """Writes, per rank, how the backbone's parameters are held once training starts: the
    class of each, and the elements this rank stores against the full count."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        params = list(pl_module.backbone.parameters())
        local = sum(getattr(p, "_local_tensor", p).numel() for p in params)
        row = {"classes": sorted({type(p).__name__ for p in params}), "local": local,
               "full": sum(p.numel() for p in params), "world": trainer.world_size}
        Path(f"{self.path}.rank{trainer.global_rank}").write_text(json.dumps(row))


def recorder_overrides(path: Path) -> list[str]:
    return ["+callbacks.recorder._target_=tests.resume.helpers.StepRecorder",
            f"+callbacks.recorder.path={path}"]


def read_records(path: Path) -> dict[tuple[int, int], dict[str, Any]]:
    """(step, offset) -> record over all ranks; a replayed micro-batch must repeat its record."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for file in sorted(path.parent.glob(path.name + ".rank*")):
        for line in file.read_text().splitlines():
            row = json.loads(line)
            key = (row["step"], row["offset"])
            if key in out:
                assert out[key] == row, f"replayed micro-batch {key} differs: {out[key]} vs {row}"
            out[key] = row
    return out


# ---- comparing final states --------------------------------------------------------------------
def load_last(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def assert_equal_tree(a: Any, b: Any, where: str = "", atol: float = 0.0) -> None:
    """Tensors equal (bitwise when atol=0), everything else ==, recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape, where
        ok = torch.equal(a, b) if atol == 0 else torch.allclose(a, b, rtol=0, atol=atol)
        assert ok, f"{where}: max |diff| {(a.double() - b.double()).abs().max().item():.3g}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_equal_tree(a[k], b[k], f"{where}/{k}", atol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_tree(x, y, f"{where}[{i}]", atol)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_training_state(a: dict[str, Any], b: dict[str, Any], atol: float = 0.0) -> None:
    """Weights, optimizer + scheduler state, step counters, algo (EMA, micro_step), data position."""
    assert a["global_step"] == b["global_step"]
    for key in ("state_dict", "optimizer_states", "lr_schedulers", "algo_state"):
        assert_equal_tree(a[key], b[key], key, atol)
    dm_a = {k: v for k, v in a.items() if "LMDataModule" in k}
    dm_b = {k: v for k, v in b.items() if "LMDataModule" in k}
    assert dm_a == dm_b


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv rows without the wall-time columns (empty cells dropped)."""
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if v != "" and k not in TIMING_COLUMNS} for r in rows]


def flip_tensor_byte(path: Path) -> str:
    """Flip one byte in the middle of the largest tensor stored in a torch zip checkpoint
    (what bit rot or a bad disk does); returns the entry's name. The zip's own CRCs are not
    checked by torch.load, so without checksums this loads as silently wrong weights."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        at = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x10]))
    return info.filename
