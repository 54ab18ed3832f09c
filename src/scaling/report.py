"""Turn fit results into a JSON-ready dict and a readable text summary."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from src.scaling.analyze import GroupResult, ParametricResult, Skipped
from src.scaling.data_constrained import DataConstrainedFit
from src.scaling.frontier import IsoFlopCI, Multiplier
from src.scaling.isoflop import BudgetFit, IsoFlopFit, PowerLaw, measured_bracket
from src.scaling.parametric import ParametricFit, unconstrained_reason
from src.scaling.uncertainty import constrained_reason
from src.scaling.published import PUBLISHED_ISOFLOP, PUBLISHED_LAWS, PUBLISHED_MULTIPLIERS


def _num(x: Any) -> float | None:
    # JSON has no NaN/inf: report them as null.
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def law_dict(law: PowerLaw | None, name: str) -> dict[str, Any] | None:
    """JSON form of a power law y = k C^exponent."""
    if law is None:
        return None
    return {"coefficient": _num(law.coefficient), "exponent": _num(law.exponent),
            "n_budgets": law.n_points, "r2": _num(law.r2), "formula": law.formula(name)}


def _budget_dict(b: BudgetFit) -> dict[str, Any]:
    return {
        "C": _num(b.budget), "n_runs": int(b.params.size),
        "n_distinct_N": b.n_distinct_params, "status": b.status, "reason": b.reason,
        "N_opt": _num(b.n_opt), "D_opt": _num(b.d_opt), "loss_opt": _num(b.loss_opt),
        "parabola_ln_N": None if b.coeffs is None else [_num(c) for c in b.coeffs],
        "measured_min": None if (m := measured_bracket(b.params, b.losses)) is None
        else {"N": m[0], "sizes_below": m[1], "sizes_above": m[2]},
    }


def isoflop_dict(fit: IsoFlopFit, ci: IsoFlopCI | None = None,
                 frontier: PowerLaw | None = None) -> dict[str, Any]:
    """JSON form of an IsoFLOP fit, its bootstrap intervals and its loss frontier."""
    return {
        "status": "skipped" if fit.reason else "ok", "reason": fit.reason,
        "budgets": [_budget_dict(b) for b in fit.budgets],
        "N_opt_law": law_dict(fit.n_opt_law, "N_opt"),
        "D_opt_law": law_dict(fit.d_opt_law, "D_opt"),
        "frontier": law_dict(frontier, "L_opt"),
        "ci": None if ci is None else {
            "level": ci.level, "n_boot": ci.n_boot, "n_ok": ci.n_ok,
            **{k: [_num(v) for v in pair] for k, pair in ci.intervals.items()}},
    }


def multiplier_dict(m: Multiplier) -> dict[str, Any]:
    """JSON form of a compute multiplier."""
    return {"reference": m.reference, "group": m.group,
            "C": [_num(c) for c in m.budgets], "loss": [_num(v) for v in m.losses],
            "multiplier": [_num(v) for v in m.values],
            "ci": None if m.ci is None else [[_num(a), _num(b)] for a, b in m.ci],
            "extrapolation": None if m.extrapolation is None
            else [_num(v) for v in m.extrapolation]}


def uncertainty_dict(r: GroupResult) -> dict[str, Any]:
    """The laws' t-intervals across budgets, case-bootstrap intervals, sensitivity rows and
    what the data do not constrain (src/scaling/uncertainty.py)."""
    case = r.case_ci
    unconstrained = [why for name in ("a", "b")
                     if (why := constrained_reason(name, r.t_ci.get(name))) is not None] \
        if r.isoflop.n_opt_law else []
    return {
        "t_interval": {k: [_num(v) for v in pair] for k, pair in r.t_ci.items()},
        "case_bootstrap": None if case is None else {
            "level": case.level, "n_boot": case.n_boot, "n_ok": case.n_ok,
            **{k: [_num(v) for v in pair] for k, pair in case.intervals.items()}},
        "sensitivity": [{"choice": row.choice, "reason": row.reason,
                         **{k: _num(v) for k, v in row.exponents.items()}}
                        for row in r.sensitivity],
        "unconstrained": unconstrained,
    }


def law_params(fit: ParametricFit) -> dict[str, Any]:
    """Parameters of L = E + A/N^alpha + B/D^beta and its compute-optimal allocation.

    ``N_opt_law``/``D_opt_law`` restate N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b
    (Chinchilla eq. 4) as k C^a, comparable with the IsoFLOP laws.
    """
    out = {k: _num(getattr(fit, k)) for k in ("E", "A", "B", "alpha", "beta", "G", "a", "b")}
    out["N_opt_law"] = law_dict(PowerLaw(fit.G * 6.0**-fit.a, fit.a, 0, math.nan), "N_opt")
    out["D_opt_law"] = law_dict(PowerLaw(6.0**-fit.b / fit.G, fit.b, 0, math.nan), "D_opt")
    for law in (out["N_opt_law"], out["D_opt_law"]):
        del law["n_budgets"], law["r2"]
    return out


def parametric_dict(res: ParametricResult | Skipped) -> dict[str, Any]:
    """JSON form of an approach-3 fit (or its skip reason)."""
    if isinstance(res, Skipped):
        return {"status": "skipped", "reason": res.reason}
    status = "unconstrained" if res.unconstrained else "ok"
    out: dict[str, Any] = {"status": status, "reason": res.unconstrained, "rows": res.rows,
                           "n_points": res.fit.n_points, **law_params(res.fit),
                           "objective": _num(res.fit.objective), "ci": None}
    if res.ci is not None:
        out["ci"] = {"level": res.ci.level, "n_boot": res.ci.n_boot, "n_ok": res.ci.n_ok,
                     **{k: [_num(v) for v in iv] for k, iv in res.ci.intervals.items()}}
    return out


def data_constrained_dict(res: DataConstrainedFit | Skipped) -> dict[str, Any]:
    """JSON form of the repetition fit (or its skip reason)."""
    if isinstance(res, Skipped):
        return {"status": "skipped", "reason": res.reason}
    reason = unconstrained_reason(res.base)  # a degenerate base law makes R* meaningless too
    return {
        "status": "unconstrained" if reason else "ok", "reason": reason, "mode": res.mode,
        "R_star": _num(res.r_star),
        "R_star_ci": None if res.r_star_ci is None else [_num(v) for v in res.r_star_ci],
        "n_points": res.n_points, "n_repeated": res.n_repeated,
        "objective": _num(res.objective), "base": law_params(res.base),
    }


def to_dict(results: list[GroupResult], multipliers: list[Multiplier] | None = None,
            **meta: Any) -> dict[str, Any]:
    """Whole report: ``meta`` (source, options), per-group fits, compute multipliers against
    the reference group, published laws."""
    return {
        **meta,
        "compute_multipliers": [multiplier_dict(m) for m in multipliers or []],
        "published_multipliers": PUBLISHED_MULTIPLIERS,
        "published_isoflop": {k: {"a": a, "b": b} for k, (a, b) in PUBLISHED_ISOFLOP.items()},
        "groups": {
            r.name: {
                "n_rows": len(r.table),
                "isoflop": isoflop_dict(r.isoflop, r.isoflop_ci, r.frontier),
                "isoflop_uncertainty": uncertainty_dict(r),
                "parametric": parametric_dict(r.parametric),
                "data_constrained": data_constrained_dict(r.data_constrained),
            }
            for r in results
        },
        "published": {name: law_params(law) for name, law in PUBLISHED_LAWS.items()},
    }


def _fmt_ci(ci: dict[str, Any] | None, key: str) -> str:
    if not ci or ci.get(key) is None or None in ci[key]:
        return ""
    lo, hi = ci[key]
    return f" [{lo:.4g}, {hi:.4g}]"


def _isoflop_lines(iso: dict[str, Any]) -> list[str]:
    lines = []
    for b in iso["budgets"]:
        where = f" N_opt {b['N_opt']:.3g}, D_opt {b['D_opt']:.3g}" if b["N_opt"] else ""
        note = f" ({b['reason']})" if b["reason"] else ""
        m = b.get("measured_min")
        lowest = (f"; lowest measured loss at N {m['N']:.3g} ({m['sizes_below']} sizes below, "
                  f"{m['sizes_above']} above)" if m and b["n_distinct_N"] >= 3 else "")
        lines.append(f"  IsoFLOP C={b['C']:.3g}: {b['n_runs']} runs, {b['status']}{where}{note}"
                     f"{lowest}")
    if iso["status"] == "ok":
        ci = iso.get("ci")
        level = f" ({100 * ci['level']:.0f}% CI, {ci['n_ok']}/{ci['n_boot']} boot)" if ci else ""
        lines.append(f"  IsoFLOP laws{level}: {iso['N_opt_law']['formula']}"
                     f"{_fmt_ci(ci, 'a')}, {iso['D_opt_law']['formula']}{_fmt_ci(ci, 'b')}")
        if iso.get("frontier"):
            lines.append(f"  Loss frontier: {iso['frontier']['formula']}"
                         f"{_fmt_ci(ci, 'frontier_exponent')}")
    else:
        lines.append(f"  IsoFLOP laws skipped: {iso['reason']}")
    return lines


def _uncertainty_lines(u: dict[str, Any]) -> list[str]:
    """The wider intervals and the sensitivity table of the IsoFLOP exponents."""
    lines = []
    t_ci, case = u["t_interval"], u["case_bootstrap"]
    names = (("a", "a"), ("b", "b"), ("frontier_exponent", "frontier exponent"))
    if t_ci:
        lines.append("  95% t-intervals across budgets: " + ", ".join(
            f"{label}{_fmt_ci(t_ci, key)}" for key, label in names if key in t_ci))
    if case:
        lines.append(f"  Case bootstrap over runs ({case['n_ok']}/{case['n_boot']} replicates "
                     "kept a bracketed minimum at every budget): " + ", ".join(
                         f"{label}{_fmt_ci(case, key)}" for key, label in names))
    for row in u["sensitivity"]:
        if row["reason"]:
            lines.append(f"    sensitivity {row['choice']}: no laws ({row['reason']})")
        else:
            lines.append(f"    sensitivity {row['choice']}: a {row['a']:.3f}, b {row['b']:.3f}, "
                         f"frontier {row['frontier_exponent']:.4f}")
    for why in u["unconstrained"]:
        lines.append(f"    NOT CONSTRAINED by these data: {why}")
    return lines


def _parametric_lines(p: dict[str, Any]) -> list[str]:
    if p["status"] == "skipped":
        return [f"  Parametric fit skipped: {p['reason']}"]
    ci = p["ci"]
    level = f" ({100 * ci['level']:.0f}% CI, {ci['n_ok']} boot)" if ci else ""
    lines = [f"  Parametric L = E + A/N^alpha + B/D^beta{level}, rows: {p['rows']}"]
    if p["status"] == "unconstrained":
        lines.append(f"    UNCONSTRAINED: {p['reason']}")
    for k in ("E", "A", "B", "alpha", "beta", "G", "a", "b"):
        value = "undefined" if p[k] is None else f"{p[k]:.4g}{_fmt_ci(ci, k)}"
        lines.append(f"    {k:>5} = {value}")
    lines.append(f"    implied {p['N_opt_law']['formula']}, {p['D_opt_law']['formula']}")
    return lines


def _data_constrained_lines(dc: dict[str, Any]) -> list[str]:
    if dc["status"] == "skipped":
        return [f"  Data-constrained fit skipped: {dc['reason']}"]
    ci = _fmt_ci({"R_star": dc["R_star_ci"]}, "R_star")
    base = dc["base"]
    lines = [f"  Data-constrained ({dc['mode']}): R* = {dc['R_star']:.4g}{ci}; base law "
             f"E {base['E']:.4g}, A {base['A']:.4g}, B {base['B']:.4g}, "
             f"alpha {base['alpha']:.4g}, beta {base['beta']:.4g}"]
    if dc["status"] == "unconstrained":
        lines.append(f"    UNCONSTRAINED: {dc['reason']}")
    return lines


def summary_text(report: dict[str, Any]) -> str:
    """Readable multi-line summary of :func:`to_dict`'s output."""
    lines = []
    for name, g in report["groups"].items():
        lines.append(f"== group {name} ({g['n_rows']} runs)")
        lines += _isoflop_lines(g["isoflop"])
        if g.get("isoflop_uncertainty") and g["isoflop"]["status"] == "ok":
            lines += _uncertainty_lines(g["isoflop_uncertainty"])
        lines += _parametric_lines(g["parametric"])
        lines += _data_constrained_lines(g["data_constrained"])
    for m in report.get("compute_multipliers", []):
        cells = []
        for i, (c, v) in enumerate(zip(m["C"], m["multiplier"])):
            ci = "" if m["ci"] is None else f" [{m['ci'][i][0]:.3g}, {m['ci'][i][1]:.3g}]"
            ext = (m.get("extrapolation") or [None] * (i + 1))[i]
            far = (f", EXTRAPOLATED {ext:.3g}x past {m['group']}'s largest budget"
                   if ext is not None and ext > 1.0 else "")
            cells.append(f"{v:.3g}x{ci} at C={c:.3g}{far}")
        lines.append(f"compute multiplier {m['group']} vs {m['reference']} "
                     f"(compute to reach {m['reference']}'s frontier loss): " + "; ".join(cells))
    pub = ", ".join(f"{n}: alpha {v['alpha']:.3g} beta {v['beta']:.3g} a {v['a']:.3f}"
                    for n, v in report["published"].items())
    lines.append(f"published: {pub}")
    iso = ", ".join(f"{n}: a {v['a']:.3g} b {v['b']:.3g}"
                    for n, v in report.get("published_isoflop", {}).items())
    mult = ", ".join(f"{n}: {v:g}x" for n, v in report.get("published_multipliers", {}).items())
    lines.append(f"published IsoFLOP exponents: {iso}; published multipliers: {mult}")
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy scalars and non-finite floats for ``json.dumps``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return _num(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
