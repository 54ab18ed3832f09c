"""The GPU path, checked on CPU: flash-attn only ever sees half precision (other calls fall
back to SDPA), and sampling / judging run under the run's training precision."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from src.models.attention import attention
from src.models.dit import DiT
from src.utils.runtime import inference_autocast


@pytest.fixture
def fake_flash(monkeypatch) -> list[torch.dtype]:
    """A stand-in flash_attn that fails like the real one on fp32 and records its calls."""
    calls: list[torch.dtype] = []

    def flash_attn_func(q, k, v, causal=False, softmax_scale=None):
        if q.dtype not in (torch.float16, torch.bfloat16):
            raise RuntimeError("FlashAttention only support fp16 and bf16 data type")
        calls.append(q.dtype)
        return torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal,
            scale=softmax_scale).transpose(1, 2)

    module = types.ModuleType("flash_attn")
    module.flash_attn_func = flash_attn_func
    monkeypatch.setitem(sys.modules, "flash_attn", module)
    return calls


def test_flash_backend_falls_back_to_sdpa_outside_half_precision(fake_flash):
    q, k, v = (torch.randn(2, 3, 8, 16) for _ in range(3))
    out = attention(q, k, v, causal=True, backend="flash")  # fp32: SDPA, no crash
    assert fake_flash == []
    torch.testing.assert_close(out, attention(q, k, v, causal=True, backend="sdpa"))
    half = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal=True, backend="flash")
    assert fake_flash == [torch.bfloat16] and half.dtype == torch.bfloat16
    mask = torch.ones(8, 8, dtype=torch.bool)
    attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal=False, backend="flash", mask=mask)
    assert fake_flash == [torch.bfloat16]  # custom masks are SDPA's


def test_a_dit_forced_to_flash_runs_in_fp32_and_under_autocast(fake_flash, monkeypatch):
    monkeypatch.setattr("src.models.attention.flash_available", lambda: True)
    model = DiT(32, 32, 2, 2, attn_backend="sdpa").eval()
    model.attn_backend = "flash"
    from src.models import attention as attn

    monkeypatch.setitem(attn._chosen, ("flash", "cpu"), "flash")
    x = torch.randint(0, 31, (2, 8))
    assert model(x).dtype == torch.float32 and fake_flash == []
    with inference_autocast("bf16-mixed", "cpu"):
        assert model(x).dtype == torch.bfloat16
    assert set(fake_flash) == {torch.bfloat16}


@pytest.mark.parametrize("precision, dtype", [("bf16-mixed", torch.bfloat16), ("32-true", None),
                                              ("16-mixed", None)])  # fp16 is CUDA-only
def test_inference_autocast_follows_the_training_precision(precision, dtype):
    with inference_autocast(precision, "cpu"):
        assert torch.is_autocast_enabled("cpu") == (dtype is not None)
        if dtype is not None:
            assert torch.get_autocast_dtype("cpu") == dtype
