"""Load, validate and normalise the run table that every scaling-law fit reads.

The fits work on four canonical columns added by :func:`prepare_table`:
``N`` (parameters), ``D`` (training tokens), ``L`` (loss, nats/token), ``C``
(compute actually spent, FLOPs) and ``budget`` (the nominal FLOP budget used to
group IsoFLOP profiles).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("params", "tokens", "loss")


class MissingColumnsError(ValueError):
    """Raised when a table lacks columns that a fit needs."""


class FitError(ValueError):
    """Raised when a fit cannot be made from the data (too few points, etc.)."""


def require_columns(df: pd.DataFrame, columns: Iterable[str], source: str = "table") -> None:
    """Raise one clear error naming the missing columns and the columns found.

    Args:
        df: Table to check.
        columns: Column names that must be present.
        source: Name of the table (e.g. the CSV path) for the message.

    Raises:
        MissingColumnsError: If any column is missing.
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingColumnsError(
            f"{source}: missing required column(s) {', '.join(missing)}; "
            f"found columns: {', '.join(map(str, df.columns)) or '(none)'}"
        )


def add_loss_column(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with a ``loss`` column, filled from ``val_nll`` where absent.

    Args:
        df: Run table (not modified).

    Returns:
        A copy with ``loss`` = ``val_nll`` wherever ``loss`` is missing.
    """
    out = df.copy()
    if "val_nll" not in out.columns:
        return out
    if "loss" not in out.columns:
        out["loss"] = out["val_nll"]
    else:
        out["loss"] = out["loss"].fillna(out["val_nll"])
    return out


def load_table(path: str | Path, params_col: str = "params") -> pd.DataFrame:
    """Read a run CSV and check the required columns.

    Args:
        path: CSV file (e.g. written by ``scripts/collect_runs.py``).
        params_col: Column used as the parameter count N.

    Returns:
        The raw table, with ``loss`` filled from ``val_nll`` when needed.

    Raises:
        MissingColumnsError: If ``params_col``, ``tokens`` or ``loss`` is missing.
    """
    df = add_loss_column(pd.read_csv(path))
    require_columns(df, _required(params_col), source=str(path))
    return df


def _required(params_col: str) -> list[str]:
    return [params_col if c == "params" else c for c in REQUIRED_COLUMNS]


def _numeric(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[col], errors="coerce").astype(float)


def _cumulative(df: pd.DataFrame, col: str) -> pd.Series:
    own = _numeric(df, col)
    return _numeric(df, f"cumulative_{col}").where(lambda s: np.isfinite(s) & (s > 0), own)


def prepare_table(df: pd.DataFrame, params_col: str = "params") -> pd.DataFrame:
    """Add the canonical fit columns N, D, L, C, budget and drop unusable rows.

    ``D`` and ``C`` are ``cumulative_tokens`` / ``cumulative_flops`` where present (runs
    started from a parent), else ``tokens`` / ``flops``. ``C`` falls back to ``6 N D``
    (Kaplan et al. 2020 / Chinchilla convention). ``budget`` is ``flops_budget``
    where present, else ``C``. Rows with a non-finite or non-positive N, D or L
    are dropped with a warning.

    Args:
        df: Raw run table.
        params_col: Column used as the parameter count N.

    Returns:
        A new table with the extra columns, index reset.

    Raises:
        MissingColumnsError: If a required column is missing.
    """
    df = add_loss_column(df)
    require_columns(df, _required(params_col))
    out = df.copy()
    out["N"] = _numeric(df, params_col)
    # A run started from another (training.init_from) was trained on its ancestors' tokens
    # and FLOPs too: the cumulative columns, where present, are its D and C.
    out["D"] = _cumulative(df, "tokens")
    out["L"] = _numeric(df, "loss")
    six_nd = 6.0 * out["N"] * out["D"]
    out["C"] = _cumulative(df, "flops").where(lambda s: np.isfinite(s) & (s > 0), six_nd)
    out["budget"] = _numeric(df, "flops_budget").where(
        lambda s: np.isfinite(s) & (s > 0), out["C"]
    )
    ok = np.ones(len(out), dtype=bool)
    for col in ("N", "D", "L", "C", "budget"):
        ok &= np.isfinite(out[col].to_numpy()) & (out[col].to_numpy() > 0)
    if (~ok).any():
        log.warning("dropping %d row(s) with missing or non-positive N, D or loss", (~ok).sum())
    if "flops_convention" in out.columns:
        conventions = sorted(map(str, out.loc[ok, "flops_convention"].dropna().unique()))
        if len(conventions) > 1:
            log.warning("rows mix FLOP conventions %s; budgets may not be comparable", conventions)
    return out.loc[ok].reset_index(drop=True)


def group_columns(group_col: str | None) -> list[str]:
    """``"algo,optim.lr"`` -> ``["algo", "optim.lr"]``; None -> []."""
    return [c.strip() for c in (group_col or "").split(",") if c.strip()]


def split_groups(df: pd.DataFrame, group_col: str | None) -> dict[str, pd.DataFrame]:
    """Split a table by ``group_col`` (sorted by group name).

    Args:
        df: Table to split.
        group_col: Column to group by, several as ``"algo,optim.lr"``, or None for one
            group named ``all``. One column names groups by its values (``ar``), several
            by ``col=value`` pairs (``algo=ar, optim.lr=0.003``).

    Returns:
        Mapping group name -> sub-table (index reset).

    Raises:
        MissingColumnsError: If a group column is given but absent.
    """
    cols = group_columns(group_col)
    if not cols:
        return {"all": df.reset_index(drop=True)}
    require_columns(df, cols)
    parts = [df[c].fillna("nan").astype(str) for c in cols]
    if len(cols) == 1:
        keys = parts[0]
    else:
        keys = parts[0].radd(f"{cols[0]}=")
        for col, part in zip(cols[1:], parts[1:]):
            keys = keys + f", {col}=" + part
    return {
        name: df.loc[keys == name].reset_index(drop=True) for name in sorted(keys.unique())
    }


def default_group_col(df: pd.DataFrame) -> str | None:
    """Pick the grouping column when the user named none: ``group``, then ``algo``.

    Args:
        df: Run table.

    Returns:
        The column name, or None when neither column exists.
    """
    for col in ("group", "algo"):
        if col in df.columns:
            return col
    return None
