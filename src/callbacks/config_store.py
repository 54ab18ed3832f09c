"""Store the resolved run config inside every checkpoint, so evaluate/sample can rebuild
the exact model (tokenizer, size, algo) from the checkpoint alone."""

from __future__ import annotations

from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf


class StoreConfig(L.Callback):
    def __init__(self, cfg: DictConfig) -> None:
        self.config = OmegaConf.to_container(cfg, resolve=True)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["run_config"] = self.config
