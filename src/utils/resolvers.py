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


def tokens_to_steps(tokens: int | str, global_batch_size: int | str, seq_len: int | str) -> int:
    """Optimizer steps that train on about `tokens` tokens (at least 1): a cadence in tokens,
    so runs that differ in batch size validate at the same token counts."""
    per_step = int(global_batch_size) * int(seq_len)
    return max(1, round(int(float(tokens)) / per_step))


RESOLVERS = {"budget_tag": budget_tag, "tokens_to_steps": tokens_to_steps}


def register_resolvers() -> None:
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
