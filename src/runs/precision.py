"""The precision a run trains under: `auto` is settled once, at the run's first start.

A fresh run resolves `trainer.precision=auto` for the machine it starts on
(src/utils/precision.py). A run folder that already has a config.yaml keeps the precision it
was started with, whatever machine resumes it: a resume never silently changes numerics (a
run started with bf16 on a GPU and resumed on an fp32-only CPU stays bf16, with a warning
that gives the slowdown). The folder's identity uses the unresolved `auto` (the readable
folder is the same on every machine); config.yaml and result.json record the resolved value.
An explicit value other than `auto` is a semantic setting like any other (its own folder).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, open_dict

from src.runs.config_guard import CONFIG_FILE, read_stored_config
from src.utils.precision import AUTO, PrecisionChoice, resolve_precision


# Lightning's precision values: a stored value is data, checked against these before use.
KNOWN_PRECISIONS = ("32-true", "32", "64-true", "64", "bf16-mixed", "bf16-true", "bf16",
                    "16-mixed", "16-true", "16", "transformer-engine", "transformer-engine-float16")


def stored_precision(run_dir: Path) -> str | None:
    """The resolved precision in the folder's config.yaml, if it has one."""
    stored = read_stored_config(run_dir) or {}
    value = (stored.get("trainer") or {}).get("precision")
    if value in (None, AUTO):
        return None
    if str(value) not in KNOWN_PRECISIONS:
        raise ValueError(f"{run_dir / CONFIG_FILE}: trainer.precision={value!r} is not a precision "
                         f"(one of {', '.join(KNOWN_PRECISIONS)}): fix that file or train into "
                         f"another folder (paths.log_dir=...)")
    return str(value)


def settle_precision(cfg: DictConfig, run_dir: Path) -> PrecisionChoice:
    """Resolve `cfg.trainer.precision` in place (before the config guard compares it with the
    folder's config.yaml) and return the choice with its reason."""
    requested = str(cfg.trainer.precision)
    stored = stored_precision(run_dir) if requested == AUTO else None
    if stored is not None:
        choice = resolve_precision(stored, cfg.trainer.accelerator,
                                   why=f"auto: the run's own, from {run_dir / CONFIG_FILE}; "
                                       f"a resumed run keeps its numerics")
    else:
        choice = resolve_precision(requested, cfg.trainer.accelerator)
    with open_dict(cfg):
        cfg.trainer.precision = choice.value
    return choice
