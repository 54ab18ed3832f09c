"""Run artefacts written atomically: result.json (a `RunResult`), samples.json, failures."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from src.utils.atomic import atomic_write_text

RESULT_FILE = "result.json"
FAILED_FILE = "failed.json"  # a run that diverged: never a result (src/callbacks/divergence.py)
__all__ = ["FAILED_FILE", "RESULT_FILE", "RESULT_FIELDS", "RunResult", "atomic_write_text",
           "emit", "read_failed", "read_result", "write_json"]


@dataclass
class RunResult:
    """One finished run: what src.train writes to result.json and src/scaling reads back.

    `tokens` / `flops` are this run's own training; `cumulative_*` add its ancestors'
    (training.init_from), and are what the scaling fits use. `val_*` are the final
    validation (a bound for diffusion models, averaged over `val_draws` noise draws per
    batch, with standard error `val_nll_se`); `val_bpb` is bits per UTF-8 byte of
    the scored text, the one comparable across tokenizers. `baselines` (unigram NLL / ppl of the data)
    are written as top-level keys.
    """

    algo: str
    model: str
    data: str
    seed: int
    params: int
    non_embedding_params: int
    vocab_size: int
    seq_len: int
    global_batch_size: int
    steps: int
    tokens: int
    flops: float
    cumulative_tokens: int
    cumulative_flops: float
    flops_per_token: float
    flops_convention: str
    flops_budget: float | None
    unique_tokens: int
    epochs: float
    val_nll: float
    val_nll_se: float | None  # its Monte-Carlo standard error (0: AR, exact; None: one draw)
    val_draws: int          # noise draws per validation batch it averages
    val_bits_per_token: float
    val_bpb: float | None
    val_ppl: float
    train_time_s: float
    wall_time_s: float
    tokens_per_s: float
    precision: str          # the resolved trainer.precision (never `auto`)
    precision_reason: str   # why: auto's hardware reason, the run's stored value, or as asked
    run_dir: str
    config_hash: str | None
    config_delta: dict[str, Any]
    config_changes: list[str]
    parent: dict[str, Any] | None = None
    baselines: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("baselines"))
        return out


#: result.json keys in their declared order (collect_runs.py leads its table with them).
RESULT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunResult) if f.name != "baselines")


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def emit(result: dict[str, Any], out: str | Path | None, shown: Any = None) -> None:
    """An entry point's result: written to `out` when given, printed as JSON (`shown`, a
    part of it, when the whole is long)."""
    if out:
        write_json(Path(out), result)
    print(json.dumps(result if shown is None else shown, indent=2, default=str))


def read_result(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RESULT_FILE
    return json.loads(path.read_text()) if path.exists() else None


def read_failed(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / FAILED_FILE
    return json.loads(path.read_text()) if path.exists() else None
