"""Zero-shot perplexity of one model on the MDLM / DUO evaluation sets, in one table.

Each set (configs/zeroshot/<set>.yaml: hub name, config, split, text column, detokenizer)
is read from the hub, or from a local file in the same format, detokenized
(src/data/detokenizers.py), written once as JSONL under the cache, and scored by
`src.evaluate` with the model's own tokenizer at the run's sequence length (documents
packed with EOS, as MDLM's `wrap`). The table reports nll / ppl per token of the model's
tokenizer and bits per UTF-8 byte, which compares across tokenizers.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.checkpoints import resolve_checkpoint
from src.data.detokenizers import get_detokenizer
from src.data.local_files import infer_source
from src.resume.checkpoint_file import load_checkpoint_file
from src.runs.identity import compose_config
from src.utils.cli import CONFIG_DIR, UserError

COLUMNS = ("set", "docs", "tokens", "bytes", "nll", "ppl", "bpb", "bits_per_token", "is_bound")


def set_spec(name: str) -> dict[str, Any]:
    path = CONFIG_DIR / "zeroshot" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise UserError(f"unknown zero-shot set {name!r}: one of {known}")
    return OmegaConf.to_container(OmegaConf.load(path))


def raw_documents(name: str, spec: dict[str, Any], local: str | None,
                  cache_dir: str) -> list[str]:
    """The set's documents as stored (hub, or a local file with the same column)."""
    import datasets

    field = spec["text_field"]
    if local:
        builder = infer_source(local)  # the data layer's extension rule
        if builder not in ("json", "parquet"):  # a hub set's columns need a table format
            raise UserError(f"local.{name}={local}: use a .jsonl, .json or .parquet file")
        ds = datasets.load_dataset(builder, data_files={"test": str(local)}, split="test")
    else:
        try:
            ds = datasets.load_dataset(spec["name"], spec["config"], split=spec["split"],
                                       cache_dir=cache_dir)
        except Exception as err:  # noqa: BLE001 - one actionable line for any hub failure
            raise UserError(f"zero-shot set {name}: cannot load {spec['name']} "
                            f"({type(err).__name__}); offline, pass local.{name}=<file in its "
                            f"format> (column {field!r})") from None
    if field not in ds.column_names:
        raise UserError(f"zero-shot set {name}: no column {field!r} (has {ds.column_names})")
    return [str(t) for t in ds[field]]


def prepared_file(name: str, spec: dict[str, Any], local: str | None, cache_dir: str,
                  max_docs: int | None) -> tuple[Path, int]:
    """Detokenized documents as JSONL under the cache (written once); (path, documents)."""
    docs = raw_documents(name, spec, local, cache_dir)[:max_docs]
    detok = get_detokenizer(spec.get("detokenizer"))
    if detok is not None:
        docs = [detok(d) for d in docs]
    body = "".join(json.dumps({"text": d}) + "\n" for d in docs)
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]
    path = Path(cache_dir) / "zeroshot" / f"{name}-{digest}.jsonl"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    return path, len(docs)


def run_seq_len(ckpt: str | Path) -> int:
    ckpt = load_checkpoint_file(resolve_checkpoint(ckpt), mmap=True, verify=False)
    return int(ckpt["run_config"]["data"]["seq_len"])


def evaluate_set(ckpt: str, name: str, path: Path, seq_len: int, *, max_batches: int | None,
                 repeats: int, device: str, log_dir: str) -> dict[str, Any]:
    from src.evaluate import evaluate

    cfg = compose_config("evaluate", [
        f"ckpt={ckpt}", "data=text_files", f"data.path={path}", "data.text_field=text",
        f"data.seq_len={seq_len}", f"data.eval_batch_size={max(1, 8192 // seq_len)}",
        f"max_batches={'null' if max_batches is None else max_batches}",
        f"repeats={repeats}", f"device={device}", f"paths.log_dir={log_dir}"])
    return evaluate(cfg)


def write_table(rows: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    """zeroshot.csv and zeroshot.md in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "zeroshot.csv", out / "zeroshot.md"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: r[k] for k in COLUMNS} for r in rows)
    fmt = {"nll": "{:.4f}", "ppl": "{:.2f}", "bpb": "{:.4f}", "bits_per_token": "{:.4f}"}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [fmt[k].format(r[k]) if k in fmt else str(r[k]) for k in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md_path, csv_path
