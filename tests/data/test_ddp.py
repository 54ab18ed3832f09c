"""Real 2-process Lightning DDP (gloo, CPU): ranks read disjoint data that covers each global batch.

Marked slow (~15 s): run with ``python -m pytest tests/data -m slow``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.data.helpers import make_docs, write_text_files

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys, torch, lightning as L
    sys.path.insert(0, {root!r})
    from src.data.datamodule import DataProgress, LMDataModule

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen, self.val, self.n_val_steps = [], [], 0
        def training_step(self, batch, i):
            self.seen.append(batch["input_ids"].clone())
            return self.w.sum() * batch["input_ids"].float().mean()
        def validation_step(self, batch, i):
            sampler = self.trainer.datamodule.val_sampler
            if not sampler.is_padding(sampler.global_index(i)):
                self.val.append(batch["input_ids"].clone())
            self.n_val_steps += 1
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    dm = LMDataModule(source="text", path={folder!r}, tokenizer={{"kind": "byte"}}, seq_len=32,
                      batch_size=3,
                      eval_batch_size=5, num_workers=1, cache_dir={cache!r}, max_train_batches=8)
    model = Recorder()
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=8, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0,
                        enable_checkpointing=False, use_distributed_sampler=False,
                        callbacks=[DataProgress()],
                        limit_val_batches=1.0, val_check_interval=8)
    trainer.fit(model, datamodule=dm)
    torch.save({{"train": model.seen, "val": model.val, "consumed": dm.consumed_batches,
                "world": dm.world_size, "n_val": len(dm.dataset("validation")),
                "n_val_steps": model.n_val_steps}},
               {out!r} + f"/rank{{trainer.global_rank}}.pt")
    """
)


@pytest.mark.slow
def test_two_process_ddp_shards_train_and_validation(tmp_path):
    folder = write_text_files(tmp_path / "docs", make_docs(40, seed=5))
    script = tmp_path / "ddp_run.py"
    script.write_text(
        SCRIPT.format(
            root=str(ROOT), folder=str(folder), cache=str(tmp_path / "cache"), out=str(tmp_path)
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["consumed"] == r1["consumed"] == 8
    for a, b in zip(r0["train"], r1["train"], strict=True):
        rows_a = {tuple(x.tolist()) for x in a}
        rows_b = {tuple(x.tolist()) for x in b}
        assert len(rows_a) == len(rows_b) == 3 and not rows_a & rows_b
    val_rows = [tuple(x.tolist()) for v in r0["val"] + r1["val"] for x in v]
    assert len(val_rows) == r0["n_val"]  # every counted sample once, no repeats
    # A validation set of one batch: rank 1 runs a padding batch (never counted) so that both
    # ranks take the same number of validation steps.
    assert r0["n_val_steps"] == r1["n_val_steps"] >= 1
