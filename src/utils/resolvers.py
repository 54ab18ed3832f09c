"""The few pure OmegaConf resolvers the configs use (no `eval`)."""

from __future__ import annotations

from omegaconf import OmegaConf


def budget_tag(flops_budget: float | str | None, max_steps: int) -> str:
    """Run-directory tag: the FLOP budget when set (f6e+18), else the step count (steps1500).

    Three significant digits when they are exact (every budget so far), else the shortest
    exact spelling (f1.2345e+18): two budgets never share a tag.
    """
    if flops_budget in (None, "null", "None"):
        return f"steps{int(max_steps)}"
    budget = float(flops_budget)
    short = f"{budget:.3g}"
    return f"f{short}" if float(short) == budget else f"f{budget!r}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("budget_tag"):
        OmegaConf.register_new_resolver("budget_tag", budget_tag)
