"""Validation curves of a run: val/nll against steps, tokens, FLOPs and epochs.

A run folder of ``src.train`` holds ``logs/metrics.csv`` (``val/nll`` rows at each validation,
``perf/tokens`` and ``perf/flops`` where training logged them), ``config.yaml`` and, once
finished, ``result.json``. Diffusion runs report a bound (NELBO), AR runs the exact NLL.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

X_AXES: tuple[str, ...] = ("step", "tokens", "flops", "epochs")
#: Validations in the centered moving average on which a Monte-Carlo curve's best is chosen.
#: Each validation draws fresh noise, so the window averages 5x the draws of one point; the
#: minimum of the raw points would pick the luckiest draw (a downward bias on every "best").
SMOOTH_WINDOW = 5
EXACT_ALGOS: tuple[str, ...] = ("ar",)  # validation loss is an exact NLL, not an estimate


def centered_windows(n: int, window: int) -> list[slice]:
    """The centered window of each of n points; near the ends it shrinks to the points that
    exist (so the last point's holds itself and the window//2 before it)."""
    half = window // 2
    return [slice(max(0, i - half), i + half + 1) for i in range(n)]


def centered_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Centered moving average over :func:`centered_windows`."""
    return np.array([float(np.mean(values[w])) for w in centered_windows(len(values), window)])


@dataclass
class ValCurve:
    """One run's validation curve.

    Attributes:
        run_dir: The run folder.
        algo: ``cfg.algo.name`` (None without config.yaml).
        label: A readable name: algo, model, data budget and the sweep axes of the run.
        unique_tokens: Tokens in one epoch of the training data, when the run had a data budget.
        steps: Optimizer step of each validation.
        nll: ``val/nll`` at each validation (nats per token).
        tokens: Training tokens seen at each validation (None when unknown).
        flops: Training FLOPs spent at each validation (None when unknown).
        delta: The run's config delta (the keys its folder hash stands for).
        seed: ``cfg.seed`` (None without config.yaml).
        nll_se: ``val/nll_se`` at each validation (NaN where not logged: one draw, or a run
            older than the estimator; 0 for AR).
        final_nll: result.json's ``val_nll`` (the end-of-run validation, with its own draws).
        final_se: its Monte-Carlo standard error (0 for AR, None when unknown).
    """

    run_dir: Path
    algo: str | None
    label: str
    unique_tokens: int | None
    steps: np.ndarray
    nll: np.ndarray
    tokens: np.ndarray | None = None
    flops: np.ndarray | None = None
    delta: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    nll_se: np.ndarray | None = None
    final_nll: float | None = None
    final_se: float | None = None

    @property
    def epochs(self) -> np.ndarray | None:
        """Passes over the unique training tokens at each validation (None without a budget)."""
        if self.tokens is None or not self.unique_tokens:
            return None
        return self.tokens / float(self.unique_tokens)

    def x(self, axis: str) -> np.ndarray:
        """The abscissa named `axis` (one of X_AXES); ValueError names the fix when unknown."""
        values = {"step": self.steps, "tokens": self.tokens, "flops": self.flops,
                  "epochs": self.epochs}[axis]
        if values is None:
            raise ValueError(f"{self.run_dir}: cannot compute {axis} (no config.yaml, no "
                             "perf/flops column, or no data budget for epochs): use --x step")
        return values

    @property
    def stochastic(self) -> bool:
        """Whether each point is a Monte-Carlo estimate (a diffusion NELBO)."""
        return self.algo not in EXACT_ALGOS

    @property
    def selection_nll(self) -> np.ndarray:
        """The curve a best is chosen on: the points themselves for an exact NLL, their
        centered moving average (SMOOTH_WINDOW) for a Monte-Carlo one."""
        return centered_mean(self.nll, SMOOTH_WINDOW) if self.stochastic else self.nll

    @property
    def selection_se(self) -> np.ndarray:
        """Monte-Carlo standard error of each `selection_nll` point: 0 for an exact NLL;
        for a moving average, the root-mean-square SE of its points over sqrt(points)
        (independent draws at each validation). NaN where a point's SE is unknown. It
        leaves out the bias of choosing the minimum, which smoothing shrinks."""
        if not self.stochastic:
            return np.zeros(len(self.nll))
        se = self.nll_se if self.nll_se is not None else np.full(len(self.nll), np.nan)
        return np.array([float(np.sqrt(np.mean(se[w] ** 2) / len(se[w])))
                         for w in centered_windows(len(se), SMOOTH_WINDOW)])

    @property
    def best_index(self) -> int:
        """Index of the lowest point of `selection_nll` (the first one on ties)."""
        return int(np.argmin(self.selection_nll))


def _float(value: str | None) -> float | None:
    try:
        out = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return out if out is None or math.isfinite(out) else None


def _per_step(rows: list[dict[str, str]], column: str) -> dict[int, float]:
    return {int(r["step"]): v for r in rows if (v := _float(r.get(column))) is not None}


def _at(step: int, logged: dict[int, float], per_step: float | None) -> float | None:
    """A cumulative counter at `step`: as logged at that step, else interpolated linearly
    through the origin from the nearest logged step, else step count x per-step amount."""
    if step in logged:
        return logged[step]
    if logged:
        near = min(logged, key=lambda s: abs(s - step))
        if near >= 0:
            return logged[near] * (step + 1) / (near + 1)
    return None if per_step is None else (step + 1) * per_step


def load_curve(run_dir: str | Path) -> ValCurve:
    """Read a run folder's validation curve.

    Args:
        run_dir: A ``src.train`` run folder.

    Returns:
        The curve, one point per validation step.

    Raises:
        FileNotFoundError: Without ``logs/metrics.csv``.
        ValueError: When the metrics hold no ``val/nll`` row.
    """
    from omegaconf import OmegaConf  # config reading only; the analysis stays numpy

    run_dir = Path(run_dir)
    metrics = run_dir / "logs" / "metrics.csv"
    if not metrics.exists():
        raise FileNotFoundError(f"{metrics} not found: pass run directories of src.train "
                                "(with logger=csv, the default)")
    with metrics.open() as fh:
        rows = list(csv.DictReader(fh))
    cfg = OmegaConf.load(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else None
    result_path = run_dir / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    seq_len = int(cfg.data.seq_len) if cfg is not None else None
    tokens_per_step = int(cfg.training.global_batch_size) * seq_len if cfg is not None else None
    flops_per_token = result.get("flops_per_token")
    flops_per_step = (None if flops_per_token is None or tokens_per_step is None
                      else float(flops_per_token) * tokens_per_step)
    unique = result.get("unique_tokens")
    if unique is None and cfg is not None and cfg.data.get("unique_tokens") is not None:
        unique = math.ceil(int(cfg.data.unique_tokens) / seq_len) * seq_len
    logged_tokens, logged_flops = _per_step(rows, "perf/tokens"), _per_step(rows, "perf/flops")
    steps, nll, nll_se, tokens, flops, seen = [], [], [], [], [], set()
    for r in rows:
        # The first validation of a step: the cadence's (an end-of-run validation with more
        # draws at the same step is result.json's final_nll).
        value, step = _float(r.get("val/nll")), int(r["step"])
        if value is None or step in seen:
            continue
        seen.add(step)
        steps.append(step)
        nll.append(value)
        se = _float(r.get("val/nll_se"))
        nll_se.append(math.nan if se is None else se)
        tokens.append(_at(step, logged_tokens, tokens_per_step))
        flops.append(_at(step, logged_flops, flops_per_step))
    if not nll:
        raise ValueError(f"{metrics} has no val/nll rows: validate during training "
                         "(training.val_every_n_steps)")
    delta = dict(((cfg.get("run_identity") or {}).get("config_delta") or {})) if cfg else {}
    return ValCurve(
        run_dir=run_dir, algo=str(cfg.algo.name) if cfg is not None else None,
        label=curve_label(cfg, delta) if cfg is not None else run_dir.name,
        unique_tokens=int(unique) if unique else None,
        steps=np.asarray(steps), nll=np.asarray(nll, float),
        tokens=None if None in tokens else np.asarray(tokens, float),
        flops=None if None in flops else np.asarray(flops, float),
        delta=delta, seed=int(cfg.seed) if cfg is not None else None,
        nll_se=np.asarray(nll_se, float),
        final_nll=_float(str(result.get("val_nll", ""))),
        final_se=_float(str(result.get("val_nll_se", ""))),
    )


CURVE_COLUMNS: tuple[str, ...] = (
    "run_dir", "algo", "label", "delta", "seed", "unique_tokens", "step", "tokens", "flops",
    "nll", "nll_se", "final_nll", "final_se")


def curves_to_frame(curves: list[ValCurve], root: Path) -> Any:
    """Every validation of every curve, one row each (the data behind the crossover figures,
    committed next to them); `curves_from_frame` reads it back into the same curves."""
    import pandas as pd

    frames = []
    for c in curves:
        n = len(c.steps)
        frames.append(pd.DataFrame({
            "run_dir": Path(c.run_dir).relative_to(root).as_posix(), "algo": c.algo,
            "label": c.label, "delta": json.dumps(c.delta, sort_keys=True), "seed": c.seed,
            "unique_tokens": c.unique_tokens, "step": c.steps,
            "tokens": c.tokens if c.tokens is not None else [math.nan] * n,
            "flops": c.flops if c.flops is not None else [math.nan] * n,
            "nll": c.nll, "nll_se": c.nll_se if c.nll_se is not None else [math.nan] * n,
            "final_nll": math.nan if c.final_nll is None else c.final_nll,
            "final_se": math.nan if c.final_se is None else c.final_se}))
    return pd.concat(frames, ignore_index=True)[list(CURVE_COLUMNS)]


def curves_from_frame(frame: Any) -> list[ValCurve]:
    """The curves of :func:`curves_to_frame`'s table (e.g. read from a committed curves.csv),
    in the order of their first row."""

    def optional(values: np.ndarray) -> np.ndarray | None:
        return None if np.isnan(values).any() else values

    def scalar(value: Any) -> float | None:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) \
            else float(value)

    curves = []
    for run_dir, rows in frame.groupby("run_dir", sort=False):
        first = rows.iloc[0]
        curves.append(ValCurve(
            run_dir=Path(str(run_dir)), algo=str(first["algo"]), label=str(first["label"]),
            unique_tokens=None if scalar(first["unique_tokens"]) is None
            else int(first["unique_tokens"]),
            steps=rows["step"].to_numpy(int), nll=rows["nll"].to_numpy(float),
            tokens=optional(rows["tokens"].to_numpy(float)),
            flops=optional(rows["flops"].to_numpy(float)),
            delta=json.loads(first["delta"]),
            seed=None if scalar(first["seed"]) is None else int(first["seed"]),
            nll_se=rows["nll_se"].to_numpy(float),
            final_nll=scalar(first["final_nll"]), final_se=scalar(first["final_se"])))
    return curves


def curve_label(cfg: Any, delta: dict[str, Any]) -> str:
    """`algo model [U=...] [axis=value ...]`: what sets a run apart in a legend (its config
    delta with short keys; the data budget and the algo name are said once)."""
    label = f"{cfg.algo.name} {cfg.model.name}"
    if cfg.data.get("unique_tokens") is not None:
        label += f" U={int(cfg.data.unique_tokens):,}"
    return label + "".join(f" {short_key(k)}={v}" for k, v in delta.items()
                           if not str(k).startswith(("data.unique_tokens", "algo.name")))


def short_key(key: str) -> str:
    """The last two parts of a dotted config key (``model.dropout``, ``algo.mix_shift``)."""
    return ".".join(str(key).split(".")[-2:])


def read_curves(source: Path) -> tuple[list[ValCurve], Any]:
    """Curves from a run folder (its finished runs, collected; a failed run is named on
    stderr and left out) or from a curves.csv of :func:`curves_to_frame`.

    Returns:
        (curves, the collect_runs Collection, or None when read from a CSV).

    Raises:
        ValueError: A run folder without a finished run.
    """
    import sys

    import pandas as pd

    from src.scaling.collect import collect_runs

    if source.is_file():
        return curves_from_frame(pd.read_csv(source)), None
    found = collect_runs(source)
    if found.table.empty:
        raise ValueError(f"{source}: no finished run (result.json) found")
    for run_dir, reason in sorted(found.failed.items()):
        print(f"left out (failed, not a result): {run_dir}: {reason}", file=sys.stderr)
    return [load_curve(source / d) for d in found.table["run_dir"]], found
