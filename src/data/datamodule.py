"""LightningDataModule: tokenizer, cached token streams, packed datasets and resumable loaders.

Resume contract: ``consumed_batches`` counts the micro-batches the training
loop actually consumed (the :class:`DataProgress` callback increments it);
it rides in checkpoints through ``state_dict``/``load_state_dict`` and the
next ``train_dataloader()`` starts its sampler there. Samplers shard data
across ranks themselves, so run the Trainer with ``use_distributed_sampler=False``
when ``world_size > 1`` (checked here).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, Subset

from src.data import splits
from src.data.loader import EvalBatchSampler, ResumableBatchSampler, make_loader
from src.data.memmap import TokenStream
from src.data.packing import PackedDataset, PaddedDataset
from src.data.spec import DataSpec, tokenizer_config
from src.data.tokenizers import Tokenizer
from src.data.unigram import token_counts, unigram_nll

logger = logging.getLogger(__name__)

MODES = ("pack", "pad")


class LMDataModule(L.LightningDataModule):
    """Language-model data: ``{"input_ids": (B, L)}`` batches (+ ``attention_mask`` in pad mode).

    Args:
        source: ``shakespeare``, ``text``, ``json``, ``parquet``, ``hf`` or ``memmap``.
        path: Local files / memmap folder (see :func:`src.data.sources.load_texts`).
        name: Hub dataset id (``source=hf``).
        config: Hub dataset config.
        text_field: Text column of json/parquet/hub data.
        tokenizer: ``{kind, name_or_path, vocab_size}`` for :func:`build_tokenizer`.
        seq_len: Sample length ``L`` (>= 2).
        batch_size: Per-device training micro-batch.
        eval_batch_size: Per-device validation batch (defaults to ``batch_size``).
        num_workers: DataLoader worker processes.
        mode: ``pack`` (concatenate + chunk) or ``pad`` (per-document chunks, padded).
        seed: Shuffle seed of the training stream (not of the validation split).
        cache_dir: Root for token/tokenizer caches (and datasets' cache unless
            ``HF_DATASETS_CACHE`` is set).
        max_train_batches: Total training micro-batches of the run (sampler length);
            None = Lightning epochs follow data epochs.
        streaming: Stream hub/local datasets while tokenizing.
        sample_by: Text files: ``document``, ``paragraph`` or ``line``.
        val_fraction: Held-out fraction when validation is carved from train.
        dtype: memmap shards' dtype when the folder has no ``meta.json``.
        shuffle: Shuffle training samples each epoch.
        max_train_tokens: Keep only the first documents of the train split up to this
            many tokens (huge hub corpora, data-constrained runs); None = all.
        unique_tokens: Data budget U of data-constrained runs (Muennighoff et al. 2023;
            Quokka): training uses only the first ceil(U / seq_len) packed sequences, a
            fixed subset repeated for as many epochs as the compute budget needs (each
            epoch reshuffled by the resumable sampler); None = the whole split.
    """

    def __init__(
        self,
        source: str = "shakespeare",
        path: Any = None,
        name: str | None = None,
        config: str | None = None,
        text_field: str = "text",
        tokenizer: Mapping | None = None,
        seq_len: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        mode: str = "pack",
        seed: int = 0,
        cache_dir: str = ".cache",
        max_train_batches: int | None = None,
        streaming: bool = False,
        sample_by: str = "document",
        val_fraction: float = splits.DEFAULT_VAL_FRACTION,
        dtype: str | None = None,
        shuffle: bool = True,
        max_train_tokens: int | None = None,
        unique_tokens: int | None = None,
    ) -> None:
        super().__init__()
        self.spec = DataSpec(
            source=source,
            path=path,
            name=name,
            config=config,
            text_field=text_field,
            cache_dir=str(cache_dir),
            streaming=bool(streaming),
            sample_by=sample_by,
            val_fraction=float(val_fraction),
            dtype=dtype,
            max_train_tokens=None if max_train_tokens is None else int(max_train_tokens),
        )
        if int(seq_len) < 2:
            raise ValueError(f"data.seq_len must be >= 2, got {seq_len}; set e.g. data.seq_len=128")
        if mode not in MODES:
            raise ValueError(f"unknown data.mode {mode!r}; valid modes: {', '.join(MODES)}")
        if int(batch_size) < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.tokenizer_cfg = tokenizer_config(tokenizer)
        self.seq_len, self.batch_size = int(seq_len), int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers, self.mode, self.seed = int(num_workers), mode, int(seed)
        self.max_train_batches = None if max_train_batches is None else int(max_train_batches)
        # Cap on validation batches, global over ranks (train/evaluate set it from their config).
        self.val_max_batches: int | None = None
        self.shuffle = bool(shuffle)
        self.unique_tokens = None if unique_tokens is None else int(unique_tokens)
        if self.unique_tokens is not None and self.unique_tokens < 1:
            raise ValueError(f"data.unique_tokens={unique_tokens} must be >= 1 (null = all data)")
        self.consumed_batches = 0
        self.accumulation = 1  # micro-batches per optimizer step (train.py sets it)
        self._resume_samples: int | None = None
        self.world_size, self.rank = 1, 0
        self._tokenizer: Tokenizer | None = None
        self._streams: dict[str, TokenStream] = {}
        self._datasets: dict[str, Dataset] = {}
        self._unigram: dict[str, float] | None = None
        self._loaded_state: dict[str, Any] | None = None

    # ---- tokenizer and token streams -----------------------------------------------------
    def build_tokenizer(self) -> Tokenizer:
        """Builds (once) and returns the tokenizer; ``bpe`` trains on the train split."""
        if self._tokenizer is None:
            self._tokenizer = self.spec.build_tokenizer(self.tokenizer_cfg)
            logger.info("tokenizer: %s", self._tokenizer)
        return self._tokenizer

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer (built on first access)."""
        return self.build_tokenizer()

    def token_stream(self, split: str) -> TokenStream:
        """Flat token stream of ``train`` or ``validation`` (tokenized and cached on first use)."""
        if split not in self._streams:
            self._streams[split] = self.spec.token_stream(split, self.build_tokenizer())
        return self._streams[split]

    def dataset(self, split: str) -> Dataset:
        """Packed/padded dataset of ``split`` (built on first use)."""
        if split not in self._datasets:
            stream, tok = self.token_stream(split), self.build_tokenizer()
            if self.mode == "pack":
                ds: Dataset = PackedDataset(stream, self.seq_len)
            else:
                ds = PaddedDataset(stream, self.seq_len, tok.eos_id, tok.pad_id)
            if len(ds) == 0:
                raise ValueError(
                    f"the {split} split has {len(stream)} tokens, fewer than data.seq_len="
                    f"{self.seq_len}; lower data.seq_len or add data"
                )
            if split == "train" and self.unique_tokens is not None:
                ds = self._data_budget(ds)
            self._datasets[split] = ds
        return self._datasets[split]

    def _data_budget(self, ds: Dataset) -> Dataset:
        """The first ceil(U / seq_len) training sequences: a fixed, deterministic subset."""
        n = math.ceil(self.unique_tokens / self.seq_len)
        if n > len(ds):
            raise ValueError(
                f"data.unique_tokens={self.unique_tokens} is larger than the training corpus "
                f"({len(ds) * self.seq_len} tokens = {len(ds)} sequences of data.seq_len="
                f"{self.seq_len}): lower data.unique_tokens or use more data"
            )
        logger.info("data budget: %d unique tokens = the first %d of %d training sequences",
                    n * self.seq_len, n, len(ds))
        return Subset(ds, range(n))

    @property
    def train_tokens_per_epoch(self) -> int:
        """Unique training tokens (sequences x seq_len); epochs = tokens trained / this."""
        return self.num_train_samples * self.seq_len

    @property
    def num_train_tokens(self) -> int:
        """Tokens in the training stream (documents + EOS separators)."""
        return len(self.token_stream("train"))

    @property
    def num_train_samples(self) -> int:
        """Training samples (sequences) per epoch before drop_last."""
        return len(self.dataset("train"))

    # ---- Lightning hooks -------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Fills the caches (Lightning runs this on one process per node before ``setup``);
        outside fit only the validation split (evaluation data may have no train split)."""
        fitting = self.trainer is None or self.trainer.state.fn in (None, "fit")
        for split in ("train", "validation") if fitting else ("validation",):
            self.token_stream(split)

    def setup(self, stage: str | None = None) -> None:
        """Reads world size/rank from the trainer and builds the datasets the stage needs."""
        if self.trainer is not None:
            self.world_size, self.rank = int(self.trainer.world_size), int(self.trainer.global_rank)
        if stage in (None, "fit"):
            self.dataset("train")
        self.dataset("validation")
        self._check_loaded_state()

    def _check_distributed(self) -> None:
        connector = getattr(self.trainer, "_accelerator_connector", None) if self.trainer else None
        if self.world_size > 1 and getattr(connector, "use_distributed_sampler", False):
            raise ValueError(
                "LMDataModule shards data across ranks itself; create the Trainer with "
                "use_distributed_sampler=False (trainer.use_distributed_sampler=false)"
            )

    def train_dataloader(self) -> DataLoader:
        """Resumable shuffled loader starting at ``consumed_batches``."""
        self._check_distributed()
        self._position_from_samples()
        self.train_sampler = ResumableBatchSampler(
            self.num_train_samples,
            self.batch_size,
            self.world_size,
            self.rank,
            seed=self.seed,
            shuffle=self.shuffle,
            start_batch=self.consumed_batches,
            max_batches=self.max_train_batches,
            accumulation=self.accumulation,
        )
        return make_loader(self.dataset("train"), self.train_sampler, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        """Sequential loader over this rank's share of the (first ``val_max_batches``)
        validation batches; the same global batches for any number of ranks."""
        self._check_distributed()
        ds = self.dataset("validation")
        self.val_sampler = EvalBatchSampler(len(ds), self.eval_batch_size, self.world_size,
                                            self.rank, self.val_max_batches)
        return make_loader(ds, self.val_sampler, self.num_workers)

    # ---- resume state ----------------------------------------------------------------------
    @property
    def micro_batch_samples(self) -> int:
        """Samples in one micro-batch over all ranks (W x B)."""
        return self.world_size * self.batch_size

    def epoch_of(self, batch_index: int) -> int:
        """Data epoch of training micro-batch ``batch_index`` (epochs are cut in global batches)."""
        global_batch = self.micro_batch_samples * self.accumulation
        per_epoch = (self.num_train_samples // global_batch) * self.accumulation
        return batch_index // max(per_epoch, 1)

    @property
    def consumed_samples(self) -> int:
        """Training samples consumed over all ranks (the position, whatever the split)."""
        return self.consumed_batches * self.micro_batch_samples

    def state_dict(self) -> dict[str, Any]:
        """Resume state stored in checkpoints."""
        n = len(self._datasets["train"]) if "train" in self._datasets else None
        return {
            "consumed_batches": int(self.consumed_batches),
            "consumed_samples": int(self.consumed_samples),
            "seed": self.seed,
            "num_train_samples": n,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the position (Lightning calls this before building dataloaders). It is
        kept in samples and turned into this run's micro-batches when the loader is built:
        the number of processes or the micro-batch may differ from the saving run's."""
        self.consumed_batches = int(state_dict.get("consumed_batches", 0))
        samples = state_dict.get("consumed_samples")
        self._resume_samples = None if samples is None else int(samples)
        self._loaded_state = dict(state_dict)
        self._check_loaded_state()

    def _position_from_samples(self) -> None:
        if self._resume_samples is None:
            return
        samples, per = self._resume_samples, self.micro_batch_samples
        if samples % per:
            raise ValueError(
                f"the checkpoint stopped after {samples} training samples, not a whole number of "
                f"micro-batches of {per} ({self.world_size} processes x data.batch_size "
                f"{self.batch_size}): resume with a data.batch_size that divides the global batch")
        self.consumed_batches, self._resume_samples = samples // per, None

    def _check_loaded_state(self) -> None:
        state = self._loaded_state
        if not state or "train" not in self._datasets:
            return
        if state.get("seed") not in (None, self.seed):
            logger.warning(
                "resuming with data.seed=%s but the checkpoint used %s: the data order changes",
                self.seed,
                state["seed"],
            )
        if state.get("num_train_samples") not in (None, self.num_train_samples):
            logger.warning(
                "checkpoint had %s training samples, now %d (data or seq_len changed): the resumed "
                "stream is not the original one",
                state["num_train_samples"],
                self.num_train_samples,
            )
        self._loaded_state = None

    # ---- baselines -------------------------------------------------------------------------
    def unigram_baseline(self) -> dict[str, float]:
        """Add-one unigram fit on train tokens, NLL/perplexity per validation token (float64)."""
        if self._unigram is None:
            tok = self.build_tokenizer()
            train = token_counts(self.token_stream("train"), tok.vocab_size)
            val = token_counts(self.token_stream("validation"), tok.vocab_size)
            self._unigram = unigram_nll(train, val, tok.mask_id)
        return dict(self._unigram)


class DataProgress(L.Callback):
    """Counts consumed training micro-batches on the datamodule and logs ``data/epoch``."""

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        dm = getattr(trainer, "datamodule", None)
        if not isinstance(dm, LMDataModule):
            return
        dm.consumed_batches += 1
        pl_module.log(
            "data/epoch",
            float(dm.epoch_of(dm.consumed_batches - 1)),
            on_step=True,
            on_epoch=False,
            rank_zero_only=True,
        )
