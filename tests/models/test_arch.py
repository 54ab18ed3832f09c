"""Architecture options (model.arch): the defaults are the DiT, every option's parameters and
FLOPs equal the instantiated model and the profiler, causal decoding with a KV cache equals the
full forward under every option, and the named published shapes count what they build."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from src.models.arch import Arch
from src.models.dit import DiT, count_params
from src.models.flops import (
    CONVENTIONS,
    flops_per_token,
    forward_flops,
    model_forward_flops,
    param_counts,
)
from src.runs.identity import compose_train
from src.utils.cli import CONFIG_DIR
from tests.scaling.test_flops import counted

V, D, N, H = 97, 64, 2, 4
#: Each option alone, then the two published combinations (configs/model/*_tiny.yaml).
OPTIONS = [
    {"norm": "rmsnorm"}, {"norm_gain": "one_plus_w"}, {"mlp": "swiglu", "mlp_hidden": 96},
    {"mlp": "relu2", "mlp_bias": False}, {"n_kv_heads": 2}, {"n_kv_heads": 1},
    {"qk_norm": "head"}, {"qk_norm": "all", "n_kv_heads": 2}, {"attn_softcap": 2.0},
    {"rope_base": 500.0}, {"kv_slots": True}, {"kv_slots": True, "n_kv_heads": 2},
    {"linear_scale": "fan_in"}, {"linear_scale": "fan_out"}, {"linear_scale": 0.7},
    {"branch_scale": 0.5}, {"head_bias": False, "head_scale": 3.0}, {"tie_embeddings": True},
    {"tie_embeddings": True, "head_bias": False},
]
NAMED = ["gidd_tiny", "megadlm_tiny"]


def named_arch(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml").arch)


def all_cases() -> list[dict]:
    return OPTIONS + [named_arch(n) for n in NAMED]


def randomised(arch: dict | None, adaln: bool = False, seed: int = 0) -> DiT:
    """A DiT with random non-zero weights everywhere (zero-init layers included)."""
    torch.manual_seed(seed)
    model = DiT(V, D, N, H, adaln=adaln, arch=arch, attn_backend="math")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def test_default_options_are_the_dit_bit_for_bit():
    yaml_defaults = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / "_dit.yaml").arch)
    assert Arch.build(yaml_defaults) == Arch() and Arch.build(yaml_defaults).is_default
    for adaln in (True, False):
        torch.manual_seed(0)
        plain = DiT(V, D, N, H, adaln=adaln)
        torch.manual_seed(0)
        explicit = DiT(V, D, N, H, adaln=adaln, arch=yaml_defaults)
        for (k, a), (k2, b) in zip(plain.state_dict().items(), explicit.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k
        torch.manual_seed(1)
        x, sig = torch.randint(0, V, (2, 12)), torch.rand(2)
        assert torch.equal(plain(x, sig), explicit(x, sig))
    # The DiT's own key names (the reference import, checkpoints and the optimizer rely on them).
    keys = set(DiT(V, D, 1, H, adaln=False).state_dict())
    assert keys == {"embed", "blocks.0.norm1.weight", "blocks.0.norm2.weight",
                    "blocks.0.qkv.weight", "blocks.0.attn_out.weight", "blocks.0.mlp.0.weight",
                    "blocks.0.mlp.0.bias", "blocks.0.mlp.2.weight", "blocks.0.mlp.2.bias",
                    "final.norm.weight", "final.linear.weight", "final.linear.bias"}


@pytest.mark.parametrize("arch", all_cases(), ids=str)
@pytest.mark.parametrize("adaln", [False, True])
def test_param_counts_equal_the_model(arch, adaln):
    model = DiT(V, D, N, H, adaln=adaln, arch=arch)
    counts = param_counts(dim=D, n_blocks=N, vocab_size=V, adaln=adaln, n_heads=H, arch=arch)
    assert {k: counts[k] for k in ("params", "non_embedding_params")} == count_params(model)


@pytest.mark.parametrize("arch", all_cases(), ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_forward_and_training_flops_equal_the_profiler(arch, causal):
    model, batch, length = randomised(arch), 2, 24
    x = torch.randint(0, V, (batch, length))
    with torch.no_grad():
        forward = counted(lambda: model(x, causal=causal))
    assert forward == batch * model_forward_flops(dim=D, n_blocks=N, vocab_size=V, seq_len=length,
                                                  adaln=False, n_heads=H, arch=arch)
    training = counted(lambda: model(x, causal=causal).logsumexp(-1).sum().backward())
    analytic = 3 * batch * forward_flops(dim=D, n_blocks=N, n_heads=H, vocab_size=V,
                                         seq_len=length, adaln=False, arch=arch)
    assert abs(analytic / training - 1) < 0.02, analytic / training


@pytest.mark.parametrize("arch", all_cases(), ids=str)
def test_kv_cache_decoding_matches_the_full_causal_forward(arch):
    model, length = randomised(arch), 10
    x = torch.randint(0, V, (2, length))
    with torch.no_grad():
        full = model(x, causal=True)
        cache = model.new_kv_cache(2, length)
        steps = [model(x[:, :4], causal=True, kv_cache=cache)]
        steps += [model(x[:, i:i + 1], causal=True, kv_cache=cache) for i in range(4, length)]
    scale = float(full.abs().max())  # float32 agreement relative to the largest logit
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5 * scale, rtol=0)
    # Causal really is causal under every option (the key/value slot included).
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % V
    with torch.no_grad():
        torch.testing.assert_close(model(y, causal=True)[:, :6], full[:, :6], atol=1e-5 * scale,
                                   rtol=0)


@pytest.mark.parametrize("arch", all_cases(), ids=str)
def test_every_option_changes_the_function(arch):
    """Each option is live: the same weights under the default architecture differ (shapes
    permitting), so none of the switches is silently ignored."""
    model = randomised(arch)
    default = DiT(V, D, N, H, adaln=False, attn_backend="math")
    ours, theirs = model.state_dict(), default.state_dict()
    if any(k not in theirs or theirs[k].shape != v.shape for k, v in ours.items()) or \
            set(theirs) - set(ours):
        return  # different parameters: the counts test covers it
    default.load_state_dict(ours)
    x = torch.randint(0, V, (2, 12))
    with torch.no_grad():
        assert not torch.allclose(model(x), default(x), atol=1e-4)


@pytest.mark.parametrize("name,vocab", [("gidd_mask_3b", 131072), ("gidd_unif_3b", 131072),
                                        ("gidd_unif_10b", 131072), ("megadlm_1.7b", 50289),
                                        ("megadlm_1b", 50269), ("gidd_tiny", 258),
                                        ("megadlm_tiny", 258)])
def test_named_published_shapes_count_what_they_build(name, vocab):
    cfg = compose_train([f"model={name}", "algo=mdlm", "data.seq_len=128"])
    m = cfg.model
    arch = OmegaConf.to_container(m.arch)
    with torch.device("meta"):
        model = DiT(vocab, m.dim, m.n_blocks, m.n_heads, adaln=m.adaln, arch=arch)
    counts = param_counts(dim=m.dim, n_blocks=m.n_blocks, vocab_size=vocab, adaln=m.adaln,
                          n_heads=m.n_heads, arch=arch)
    assert counts["params"] == count_params(model)["params"]
    shape = dict(dim=m.dim, n_blocks=m.n_blocks, n_heads=m.n_heads, vocab_size=vocab,
                 seq_len=128, adaln=m.adaln, arch=arch)
    assert all(flops_per_token(convention=c, **shape) > 0 for c in CONVENTIONS)


def test_bad_options_are_one_line():
    with pytest.raises(ValueError, match=r"unknown model.arch option\(s\) \['mlp_kind'\]"):
        Arch.build({"mlp_kind": "swiglu"})
    with pytest.raises(ValueError, match="model.arch.mlp='geglu': one of gelu, swiglu, relu2"):
        Arch.build({"mlp": "geglu"})
    with pytest.raises(ValueError, match="n_kv_heads=3 must divide model.n_heads=4"):
        DiT(V, D, N, H, arch={"n_kv_heads": 3})
    with pytest.raises(ValueError, match="experts are 4d GELU MLPs"):
        DiT(V, D, N, H, arch={"mlp": "swiglu"}, moe={"num_experts": 2})
