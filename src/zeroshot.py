"""Zero-shot perplexity table of one model (src/eval/zeroshot.py).

    python -m src.zeroshot ckpt=<run dir | .ckpt | HF folder>
    python -m src.zeroshot ckpt=<run> sets=[ptb,wikitext2] max_docs=500
    python -m src.zeroshot ckpt=<run> sets=[ptb] local.ptb=ptb_test.jsonl   # offline
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from src.eval.zeroshot import (evaluate_set, prepared_file, run_seq_len, set_spec,
                               write_table)
from src.export.import_model import as_run
from src.runs.preflight import check_required
from src.utils.cli import one_line_errors, run_cli
from src.utils.resolvers import register_resolvers
from src.utils.runtime import setup_torch

log = logging.getLogger(__name__)
register_resolvers()


def zeroshot(cfg: DictConfig) -> dict[str, Any]:
    check_required(cfg)
    ckpt = str(as_run(cfg.ckpt))  # a Hugging Face folder is imported first
    seq_len = int(cfg.seq_len or run_seq_len(ckpt))
    specs = {name: set_spec(str(name)) for name in cfg.sets}  # unknown names fail first
    rows = []
    for name, spec in specs.items():
        local = (cfg.get("local") or {}).get(name)
        path, docs = prepared_file(name, spec, local, str(cfg.paths.cache_dir), cfg.max_docs)
        metrics = evaluate_set(ckpt, name, path, seq_len, max_batches=cfg.max_batches,
                               repeats=int(cfg.repeats), device=str(cfg.device),
                               log_dir=str(cfg.paths.log_dir))
        rows.append({"set": name, "docs": docs, **metrics})
        log.info("%s: ppl %.2f, bpb %.4f", name, metrics["ppl"], metrics["bpb"])
    run_dir = Path(ckpt).parent.parent if Path(ckpt).is_file() else Path(ckpt)
    out = Path(cfg.out) if cfg.out else run_dir / "zeroshot"
    md, csv_path = write_table(rows, out)
    return {"rows": rows, "markdown": str(md), "csv": str(csv_path), "seq_len": seq_len}


@hydra.main(config_path="../configs", config_name="zeroshot", version_base="1.3")
def main(cfg: DictConfig) -> None:
    setup_torch()
    result = one_line_errors(zeroshot)(cfg)
    print(Path(result["markdown"]).read_text(encoding="utf-8"))
    print(f"written: {result['markdown']}, {result['csv']}")


if __name__ == "__main__":
    run_cli(main)
