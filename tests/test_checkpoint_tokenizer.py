"""A checkpoint carries its trained BPE tokenizer: evaluating it on other text needs neither
the training corpus nor retraining the tokenizer (which would give other ids)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from src.evaluate import evaluate
from src.runs.identity import compose_train
from src.train import train
from src.utils.cli import CONFIG_DIR

TEXT = ("From fairest creatures we desire increase, that thereby beauty's rose might never "
        "die, but as the riper should by time decease, his tender heir might bear his memory. ")


def test_bpe_run_evaluates_elsewhere_without_its_corpus(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"doc{i}.txt").write_text(TEXT * (20 + i))
    common = [f"paths.log_dir={tmp_path}/runs", f"paths.cache_dir={tmp_path}/cache"]
    result = train(compose_train([
        "data=text_files", f"data.path={corpus}", "data.tokenizer.kind=bpe",
        "data.tokenizer.vocab_size=300", "model=0.13M", "data.seq_len=32", "data.batch_size=4",
        "training.max_steps=2", "eval.num_samples=0", "trainer.enable_progress_bar=false",
        *common]))
    ckpt = torch.load(Path(result["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=True)
    stored = ckpt["tokenizer"]
    assert stored["fingerprint"].startswith("bpe300-") and '"merges"' in stored["json"]
    shutil.rmtree(corpus)
    shutil.rmtree(tmp_path / "cache")  # no corpus, no cached tokenizer: only the checkpoint
    other = tmp_path / "other.txt"
    other.write_text(TEXT * 30)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt={result['run_dir']}", "data=text_files",
                                             f"data.path={other}", *common])
    metrics = evaluate(cfg)
    assert metrics["tokens"] > 100 and 0 < metrics["nll"] < 10
    assert (tmp_path / "cache" / "tokenizers" / f"{stored['fingerprint']}.json").is_file()
