"""Clean-to-noisy moving-window curriculum over the diffusion time t (Quokka ablation).

Early in training the model only sees lightly noised inputs (small t, mostly clean
tokens); the window then slides and widens linearly until, after `steps` optimizer
steps, it is the full range again. The window is a pure function of the optimizer
step, so a resumed run replays exactly the same windows, and only *training* times
are moved: validation keeps t ~ U[eps_t, 1), so the reported NELBO stays unbiased.
"""

from __future__ import annotations

import torch


class TimeCurriculum:
    """Window [lo(s), hi(s)] over t that moves from [start_lo, start_hi] to [0, 1].

    With progress p = min(s / steps, 1) at optimizer step s,
    lo(s) = (1 - p) start_lo and hi(s) = start_hi + p (1 - start_hi). A stratified
    time t in [eps_t, 1) maps affinely into the window, t' = lo + (hi - lo) t, so the
    stratification over the global batch is kept inside the window.

    Args:
        steps: Optimizer steps until the window is the full range (0 = off).
        start_lo: Lower edge of the first window.
        start_hi: Upper edge of the first window (small = clean inputs first).
    """

    def __init__(self, steps: int, start_lo: float = 0.0, start_hi: float = 0.1) -> None:
        if int(steps) < 0:
            raise ValueError(f"algo.t_curriculum.steps={steps} must be >= 0 (0 turns it off)")
        if not 0.0 <= start_lo < start_hi <= 1.0:
            raise ValueError(
                f"algo.t_curriculum window [{start_lo}, {start_hi}] must satisfy "
                "0 <= start_lo < start_hi <= 1: e.g. start_lo=0, start_hi=0.1"
            )
        self.steps, self.start_lo, self.start_hi = int(steps), float(start_lo), float(start_hi)

    def window(self, step: int) -> tuple[float, float]:
        """(lo, hi) of the window at optimizer step `step`."""
        p = 1.0 if self.steps == 0 else min(max(step, 0) / self.steps, 1.0)
        return (1.0 - p) * self.start_lo, self.start_hi + p * (1.0 - self.start_hi)

    def apply(self, t: torch.Tensor, step: int) -> torch.Tensor:
        """Map (B,) times in [0, 1) into the window of `step` (identity once it is full)."""
        lo, hi = self.window(step)
        return lo + (hi - lo) * t

    def __repr__(self) -> str:
        return (f"TimeCurriculum(steps={self.steps}, start=[{self.start_lo}, "
                f"{self.start_hi}])")
