"""Store the resolved run config (and a trained tokenizer) inside every checkpoint, so
evaluate/sample can rebuild the exact model (tokenizer, size, algo) from the checkpoint alone."""

from __future__ import annotations

from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf


class StoreConfig(L.Callback):
    """Also the tokenizer's fingerprint: a run started from this checkpoint
    (`training.init_from`) must speak the same ids."""

    def __init__(self, cfg: DictConfig, tokenizer: Any = None) -> None:
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self.tokenizer = None if tokenizer is None else {
            "name": tokenizer.name, "vocab_size": tokenizer.vocab_size,
            "fingerprint": tokenizer.fingerprint}
        if self.tokenizer is not None and str(cfg.data.tokenizer.kind) == "bpe":
            # A BPE trained on the run's corpus: evaluate / sample / export it anywhere
            # without the corpus (src/checkpoints.py reads it back).
            self.tokenizer["json"] = tokenizer.to_json()

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["run_config"] = self.config
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer
