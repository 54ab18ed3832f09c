"""The few pure OmegaConf resolvers the configs use (no `eval`)."""

from __future__ import annotations

from omegaconf import OmegaConf


def budget_tag(flops_budget: float | str | None, max_steps: int) -> str:
    """Run-directory tag: the FLOP budget when set (f6e+18), else the step count (steps1500)."""
    if flops_budget in (None, "null", "None"):
        return f"steps{int(max_steps)}"
    return f"f{float(flops_budget):.3g}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("budget_tag"):
        OmegaConf.register_new_resolver("budget_tag", budget_tag)
