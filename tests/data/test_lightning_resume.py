"""Real Lightning runs: a crashed-and-resumed fit sees exactly the uninterrupted data stream.

Covers what unit tests cannot: checkpointed datamodule state, the DataProgress
callback, worker prefetch at the crash, and Lightning restoring its own
in-epoch batch counter (which fixes how ``len(train_dataloader)`` must count).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from src.data.datamodule import DataProgress, LMDataModule
from tests.data.helpers import make_docs, write_text_files


class Recorder(L.LightningModule):
    """Records every training batch; optionally crashes at a given step."""

    def __init__(self, crash_at: int | None = None) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.crash_at = crash_at
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.global_step == self.crash_at:
            raise RuntimeError("simulated preemption")
        self.seen.append(batch["input_ids"].clone())
        return self.w.sum() * batch["input_ids"].float().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(
    tmp: Path,
    folder: Path,
    total: int,
    max_train_batches: int | None,
    crash_at: int | None = None,
    ckpt: str | None = None,
) -> tuple[Recorder, LMDataModule]:
    dm = LMDataModule(
        source="text",
        path=str(folder),
        tokenizer={"kind": "byte"},
        seq_len=64,
        batch_size=4,
        num_workers=2,
        cache_dir=str(tmp / "cache"),
        max_train_batches=max_train_batches,
        seed=11,
    )
    model = Recorder(crash_at)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=total,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=str(tmp),
        callbacks=[
            DataProgress(),
            ModelCheckpoint(dirpath=tmp / "ckpt", every_n_train_steps=5, save_top_k=-1),
        ],
    )
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
    except RuntimeError as err:
        assert "simulated preemption" in str(err)
    return model, dm


@pytest.mark.parametrize("max_batches_mode", ["whole_run", "per_epoch"])
def test_crash_and_resume_replays_nothing_and_skips_nothing(tmp_path, max_batches_mode):
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    folder = write_text_files(tmp_path / "docs", make_docs(20, seed=2))
    probe = LMDataModule(
        source="text",
        path=str(folder),
        tokenizer={"kind": "byte"},
        seq_len=64,
        batch_size=4,
        cache_dir=str(tmp_path / "cache"),
    )
    per_epoch = probe.num_train_samples // 4
    assert 5 < per_epoch < 15  # the run below crosses epoch boundaries
    total = 2 * per_epoch + 3
    mtb = total if max_batches_mode == "whole_run" else None

    full, _ = _fit(tmp_path / "full", folder, total, mtb)
    assert len(full.seen) == total
    crashed, _ = _fit(tmp_path / "run", folder, total, mtb, crash_at=per_epoch + 2)
    assert len(crashed.seen) == per_epoch + 2
    ckpts = sorted((tmp_path / "run" / "ckpt").glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns)
    last = ckpts[-1]
    state = torch.load(last, weights_only=False)["LMDataModule"]
    resumed_from = state["consumed_batches"]
    assert resumed_from == 5 * ((per_epoch + 2) // 5)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed, dm = _fit(tmp_path / "run", folder, total, mtb, ckpt=str(last))
    assert not [w for w in caught if "not resumable" in str(w.message)]
    assert dm.consumed_batches == total
    stream = crashed.seen[:resumed_from] + resumed.seen
    assert len(stream) == total
    assert all(torch.equal(a, b) for a, b in zip(stream, full.seen, strict=True))
