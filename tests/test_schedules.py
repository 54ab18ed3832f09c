"""Learning-rate multipliers: warmup (absolute or fractional), cosine, constant, WSD."""

from __future__ import annotations

import pytest

from src.optim.schedules import lr_lambda


def test_cosine_warms_up_then_decays_to_floor():
    f = lr_lambda("cosine", warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_fractional_warmup_scales_with_run_length():
    f = lr_lambda("constant", warmup_steps=0.1, max_steps=200)
    assert f(9) == pytest.approx(0.5) and f(19) == pytest.approx(1.0)


def test_wsd_is_flat_then_linear_to_floor():
    f = lr_lambda("wsd", warmup_steps=0, max_steps=100, decay_frac=0.2, min_lr_ratio=0.0)
    assert f(79) == 1.0 and f(90) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_unknown_schedule_names_the_options():
    with pytest.raises(ValueError, match="cosine"):
        lr_lambda("linear-ish", warmup_steps=0, max_steps=10)
