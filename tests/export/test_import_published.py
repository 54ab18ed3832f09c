"""GIDD and MegaDLMs checkpoints (random weights in the publishers' key layout and config)
import into run folders whose backbone gives the publishers' logits, as computed by an
independent re-implementation of their forwards (tests/export/reference_published.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from src.checkpoints import load_run
from src.export.import_model import import_model
from src.models.dit import count_params
from src.utils.cli import UserError
from tests.export.test_lm_harness import tasks  # noqa: F401 - the local lm-eval tasks fixture
from tests.export.reference_published import (
    gidd_forward,
    gidd_layout,
    megadlm_forward,
    megadlm_layout,
)

VOCAB, MASK_ID = 258, 257  # the byte tokenizer's, which the tests import with
IDS = torch.tensor([[72, 101, 108, 108, 111, 257, 257, 32, 119, 257, 114, 108, 100, 33, 10, 256],
                    [257] * 8 + [65, 66, 67, 68, 257, 257, 69, 70]])

GIDD_CONFIG = {
    "model_type": "gidd", "architectures": ["GiddForDiffusionLM"],
    "auto_map": {"AutoConfig": "configuration_gidd.GiddConfig",
                 "AutoModel": "modeling_gidd_hf.GiddForDiffusionLM"},
    "vocab_size": VOCAB, "hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2,
    "num_attention_heads": 4, "head_dim": 16, "is_causal": False, "attn_soft_cap": 5.0,
    "max_position_embeddings": 64, "resid_scale": 4.0, "rms_norm_eps": 1e-6,
    "use_qk_norm": True, "weight_scaling": "fan_in", "head_scaling": 0.5, "rope_theta": 500.0,
    "rope_scaling": None, "attention_bias": True, "mlp_bias": True,
    "tie_word_embeddings": False, "noise_type": 0.0, "min_log_snr": -9.0, "max_log_snr": 9.0,
    "mask_token_id": MASK_ID, "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "float32",
}
MEGADLM_CONFIG = {
    "architectures": ["DiffLM"],
    "auto_map": {"AutoConfig": "configuration_dlm.DLMConfig",
                 "AutoModelForCausalLM": "modeling_dlm.DiffLM"},
    "attention_dropout": 0.0, "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 64,
    "initializer_range": 0.02, "intermediate_size": 176, "max_position_embeddings": 128,
    "max_window_layers": 2, "num_attention_heads": 4, "num_hidden_layers": 2,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    "sliding_window": 128, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "use_cache": True, "use_mrope": False, "use_sliding_window": False, "vocab_size": VOCAB,
    "mask_token_id": MASK_ID, "attn_mask_type": "bidirectional",
}
FORMATS = {"gidd": (GIDD_CONFIG, gidd_layout, gidd_forward),
           "megadlm": (MEGADLM_CONFIG, megadlm_layout, megadlm_forward)}


def close(ours: torch.Tensor, ref: torch.Tensor, rel: float = 1e-5) -> bool:
    """float32 agreement within `rel` of the largest logit."""
    return float((ours - ref).abs().max()) <= rel * float(ref.abs().max())


def publish(folder: Path, config: dict, state: dict[str, torch.Tensor], shards: int = 1) -> Path:
    """Write a publisher-style HF folder: config.json and one or `shards` safetensors files
    (with model.safetensors.index.json, as save_pretrained shards a 3B model)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    if shards == 1:
        save_file(state, str(folder / "model.safetensors"))
        return folder
    keys, weight_map = sorted(state), {}
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[s::shards]}
        save_file(part, str(folder / name))
        weight_map.update({k: name for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def variants() -> list[tuple[str, dict]]:
    """Each format with its options switched on and off (every mapped field matters)."""
    return [("gidd", {}), ("gidd", {"weight_scaling": 1.0, "use_qk_norm": False}),
            ("gidd", {"attention_bias": False, "mlp_bias": False, "weight_scaling": "fan_out",
                      "tie_word_embeddings": True}),
            ("megadlm", {}), ("megadlm", {"num_key_value_heads": 4, "tie_word_embeddings": True,
                                          "rope_theta": 1e6})]


@pytest.mark.parametrize(("fmt", "changes"), variants())
def test_import_gives_the_publishers_logits(fmt, changes, tmp_path):
    base, layout, forward = FORMATS[fmt]
    config = {**base, **changes}
    state = layout(config, VOCAB)
    folder = publish(tmp_path / "published", config, state, shards=2 if not changes else 1)
    summary = import_model(folder, tmp_path / "run", ["data=shakespeare_byte"])
    run = load_run(tmp_path / "run")
    with torch.no_grad():
        ours = run.algo.backbone(IDS)
        ref = forward(state, config, IDS)
    assert close(ours, ref), float((ours - ref).abs().max() / ref.abs().max())
    assert run.algo.name == ("gidd" if fmt == "gidd" else "mdlm")
    assert not run.algo.time_conditioning and summary["n_heads"] == config["num_attention_heads"]
    # One parameter per published number (rotary buffers are recomputed, a tied head shared).
    published = sum(v.numel() for k, v in state.items() if "inv_freq" not in k)
    assert count_params(run.algo.backbone)["params"] == published


def test_the_reference_forwards_see_every_option():
    """Each option the import maps changes the publisher's logits: the test above has power."""
    for fmt, key, other in [("gidd", "attn_soft_cap", 30.0), ("gidd", "head_scaling", 1.0),
                            ("gidd", "rope_theta", 10000.0), ("gidd", "resid_scale", 1.0),
                            ("megadlm", "rope_theta", 500.0), ("megadlm", "rms_norm_eps", 1e-1)]:
        base, layout, forward = FORMATS[fmt]
        state = layout(base, VOCAB)
        a, b = forward(state, base, IDS), forward(state, {**base, key: other}, IDS)
        assert not close(a, b, 1e-3), (fmt, key)


def test_gidd_noise_and_mask_id_map_to_the_algo(tmp_path):
    config = {**GIDD_CONFIG, "noise_type": float("-inf"), "max_log_snr": 7.0,
              "min_log_snr": -7.0}
    folder = publish(tmp_path / "published", config, gidd_layout(config, VOCAB))
    import_model(folder, tmp_path / "run", ["data=shakespeare_byte"])
    cfg = load_run(tmp_path / "run").cfg
    assert cfg.algo.mix_shift == float("-inf") and cfg.algo.log_snr_clip == 7.0
    assert cfg.sampler._target_.endswith("GIDDAdaptive")
    wrong = {**GIDD_CONFIG, "mask_token_id": 3}
    other = publish(tmp_path / "wrong", wrong, gidd_layout(wrong, VOCAB))
    with pytest.raises(UserError, match=r"\[MASK\] = id 3, tokenizer byte has it at 257"):
        import_model(other, tmp_path / "run2", ["data=shakespeare_byte"])


@pytest.mark.parametrize(("fmt", "changes", "message"), [
    ("gidd", {"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling is set"),
    ("gidd", {"is_causal": True}, "is_causal=true"),
    ("megadlm", {"hidden_act": "gelu"}, "hidden_act=gelu"),
    ("megadlm", {"use_sliding_window": True}, "sliding-window"),
    ("megadlm", {"attn_mask_type": "causal"}, "attn_mask_type=causal"),
])
def test_settings_the_backbone_cannot_compute_are_refused(fmt, changes, message, tmp_path):
    base, layout, _ = FORMATS[fmt]
    config = {**base, **changes}
    folder = publish(tmp_path / "published", config, layout(base, VOCAB))
    with pytest.raises(UserError, match=message):
        import_model(folder, tmp_path / "run", ["data=shakespeare_byte"])


def test_unknown_weight_is_named(tmp_path):
    state = {**megadlm_layout(MEGADLM_CONFIG, VOCAB),
             "model.layers.0.mlp.experts.0.w": torch.ones(2)}
    folder = publish(tmp_path / "published", MEGADLM_CONFIG, state)
    with pytest.raises(UserError, match=r"unexpected weight 'model.layers.0.mlp.experts.0.w'"):
        import_model(folder, tmp_path / "run", ["data=shakespeare_byte"])


def test_padded_vocabulary_rows_are_dropped_with_a_warning(tmp_path, caplog):
    config = {**MEGADLM_CONFIG, "vocab_size": 384}  # Megatron pads to a multiple of 128
    state = megadlm_layout(config, 384)
    folder = publish(tmp_path / "published", config, state)
    import_model(folder, tmp_path / "run", ["data=shakespeare_byte"])
    run = load_run(tmp_path / "run")
    assert "padded past the tokenizer's 258 ids" in caplog.text
    with torch.no_grad():
        ours = run.algo.backbone(IDS)
    assert close(ours, megadlm_forward(state, config, IDS)[..., :VOCAB])


FRESH_LOAD = r'''
import json, sys
import torch
from transformers import AutoModelForMaskedLM
model = AutoModelForMaskedLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(torch.tensor(json.loads(sys.argv[2]))).logits
print(json.dumps({"logits": logits.tolist(),
                  "src": sorted(m for m in sys.modules if m == "src" or m.startswith("src."))}))
'''


@pytest.mark.parametrize("fmt", ["gidd", "megadlm", "megatron"])
def test_an_imported_published_run_works_through_the_lab(fmt, tmp_path, tasks):  # noqa: F811
    """Bits per byte, the format's own sampler, the lm-eval adapter, and a re-export that
    transformers loads in a fresh process with the publisher's logits."""
    import os
    import subprocess
    import sys

    from src.eval.harness import LabLM
    from src.evaluate import evaluate
    from src.export.hf_export import export
    from src.runs.identity import compose_config
    from src.samplers.factory import build_sampler
    from tests.export.test_lm_harness import evaluate as lm_evaluate

    base, layout, forward = FORMATS["gidd" if fmt == "gidd" else "megadlm"]
    state = layout(base, VOCAB)
    source = megatron_checkpoint(tmp_path / "megatron", base, state) if fmt == "megatron" \
        else publish(tmp_path / "published", base, state)
    run_dir = tmp_path / "run"
    import_model(source, run_dir, ["data=shakespeare_byte", "data.seq_len=32"])
    metrics = evaluate(compose_config("evaluate", [f"ckpt={run_dir}", "max_batches=1",
                                                   f"paths.log_dir={tmp_path}"]))
    assert metrics["algo"] == ("gidd" if fmt == "gidd" else "mdlm")
    assert 0 < metrics["bpb"] < 100 and metrics["bpb"] == metrics["bpb"]

    run = load_run(run_dir)
    sampler = build_sampler(run.cfg.sampler, steps=4)
    assert type(sampler).__name__ == ("GIDDAdaptive" if fmt == "gidd" else "LowConfidence")
    prompt = torch.tensor([72, 105])
    ids = sampler.sample(run.algo, 2, 16, 4, prompt=prompt,
                         generator=torch.Generator().manual_seed(0))
    assert ids.shape == (2, 16) and (ids[:, :2] == prompt).all()
    assert int(ids.min()) >= 0 and int(ids.max()) < VOCAB
    if fmt != "gidd":  # confidence-ordered unmasking fixes every position
        assert (ids != MASK_ID).all()

    results = lm_evaluate(LabLM(ckpt=str(run_dir), mc_samples=2, mc_batch=2, steps=2), tasks,
                          ["choice", "ppl"])
    assert 0.0 <= results["counting_choice"]["acc,none"] <= 1.0
    assert results["counting_ppl"]["bits_per_byte,none"] > 0

    export(run_dir, tmp_path / "export")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    (tmp_path / "load.py").write_text(FRESH_LOAD)
    proc = subprocess.run([sys.executable, "-I", "load.py", str(tmp_path / "export"),
                           json.dumps(IDS.tolist())], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["src"] == []
    theirs = torch.tensor(out["logits"])
    if fmt == "gidd":  # the GIDD denoiser's distribution never predicts [MASK]
        theirs = theirs[..., :MASK_ID]
    ref = forward(state, base, IDS)[..., :theirs.shape[-1]]
    assert close(theirs, ref), float((theirs - ref).abs().max() / ref.abs().max())


def megatron_checkpoint(root: Path, config: dict, hf: dict[str, torch.Tensor],
                        extra: dict | None = None) -> Path:
    """A Megatron-Core legacy checkpoint holding the weights of `hf` (DiffLM keys), written
    the way MegaDLMs' megatron_to_hf_te.py reads one (its convert_wqkv / convert_ffn run
    backwards), with Megatron-like pickled args (an enum of a `megatron` module this
    machine does not have) and Transformer Engine's BytesIO extra state."""
    import argparse
    import enum
    import io
    import sys
    import types

    heads, groups = config["num_attention_heads"], config["num_key_value_heads"]
    d = config["hidden_size"]
    hd = d // heads
    model: dict[str, object] = {"embedding.word_embeddings.weight": hf["model.embed_tokens.weight"],
                                "decoder.final_layernorm.weight": hf["model.norm.weight"]}
    if not config["tie_word_embeddings"]:
        model["output_layer.weight"] = hf["lm_head.weight"]
    for i in range(config["num_hidden_layers"]):
        p, m = f"model.layers.{i}.", f"decoder.layers.{i}."
        q = hf[p + "self_attn.q_proj.weight"].view(groups, heads // groups * hd, d)
        k = hf[p + "self_attn.k_proj.weight"].view(groups, hd, d)
        v = hf[p + "self_attn.v_proj.weight"].view(groups, hd, d)
        model[m + "self_attention.linear_qkv.weight"] = torch.cat([q, k, v], dim=1).reshape(-1, d)
        model[m + "self_attention.linear_qkv.layer_norm_weight"] = hf[p + "input_layernorm.weight"]
        model[m + "self_attention.q_layernorm.weight"] = hf[p + "self_attn.q_norm.weight"]
        model[m + "self_attention.k_layernorm.weight"] = hf[p + "self_attn.k_norm.weight"]
        model[m + "self_attention.linear_proj.weight"] = hf[p + "self_attn.o_proj.weight"]
        model[m + "mlp.linear_fc1.weight"] = torch.cat([hf[p + "mlp.gate_proj.weight"],
                                                        hf[p + "mlp.up_proj.weight"]])
        model[m + "mlp.linear_fc1.layer_norm_weight"] = hf[p + "post_attention_layernorm.weight"]
        model[m + "mlp.linear_fc2.weight"] = hf[p + "mlp.down_proj.weight"]
        model[m + "self_attention.core_attention._extra_state"] = io.BytesIO(b"te-fp8-meta")
    fake = types.ModuleType("megatron.core.enums")

    class ModelType(enum.Enum):
        encoder_or_decoder = 1

    ModelType.__module__, ModelType.__qualname__ = "megatron.core.enums", "ModelType"
    fake.ModelType = ModelType
    saved = {name: sys.modules.get(name) for name in ("megatron", "megatron.core",
                                                      "megatron.core.enums")}
    sys.modules.update({"megatron": types.ModuleType("megatron"),
                        "megatron.core": types.ModuleType("megatron.core"),
                        "megatron.core.enums": fake})
    flags = dict(
        num_layers=config["num_hidden_layers"], hidden_size=d, num_attention_heads=heads,
        group_query_attention=groups != heads, num_query_groups=groups,
        ffn_hidden_size=config["intermediate_size"], seq_length=64,
        max_position_embeddings=config["max_position_embeddings"],
        padded_vocab_size=hf["model.embed_tokens.weight"].shape[0], normalization="RMSNorm",
        norm_epsilon=config["rms_norm_eps"], swiglu=True, qk_layernorm=True,
        position_embedding_type="rope", rotary_base=int(config["rope_theta"]),
        rotary_percent=1.0, add_bias_linear=False,
        untie_embeddings_and_output_weights=not config["tie_word_embeddings"],
        params_dtype=torch.float32, model_type=ModelType.encoder_or_decoder)
    args = argparse.Namespace(**{**flags, **(extra or {})})
    folder = root / "iter_0000020" / "mp_rank_00"
    folder.mkdir(parents=True)
    try:
        torch.save({"args": args, "model": model, "iteration": 20, "checkpoint_version": 3.0},
                   folder / "model_optim_rng.pt")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    (root / "latest_checkpointed_iteration.txt").write_text("20")
    return root


@pytest.mark.parametrize("changes", [{}, {"num_key_value_heads": 4, "tie_word_embeddings": True}])
def test_megatron_legacy_checkpoint_gives_the_converted_models_logits(changes, tmp_path):
    config = {**MEGADLM_CONFIG, **changes}
    hf = megadlm_layout(config, VOCAB)
    source = megatron_checkpoint(tmp_path / "megatron", config, hf)
    import_model(source, tmp_path / "run", ["data=shakespeare_byte"])
    run = load_run(tmp_path / "run")
    with torch.no_grad():
        ours, ref = run.algo.backbone(IDS), megadlm_forward(hf, config, IDS)
    assert close(ours, ref), float((ours - ref).abs().max() / ref.abs().max())
    assert run.algo.name == "mdlm" and run.cfg.sampler._target_.endswith("LowConfidence")
    assert "megatron" not in __import__("sys").modules  # nothing the file names was imported


@pytest.mark.parametrize(("extra", "message"), [
    ({"add_bias_linear": True}, "biases on linear layers"),
    ({"swiglu": False}, "erf-GELU"),
    ({"rotary_interleaved": True}, "interleaved rotary"),
])
def test_megatron_settings_the_backbone_cannot_compute_are_refused(extra, message, tmp_path):
    hf = megadlm_layout(MEGADLM_CONFIG, VOCAB)
    source = megatron_checkpoint(tmp_path / "megatron", MEGADLM_CONFIG, hf, extra)
    with pytest.raises(UserError, match=message):
        import_model(source, tmp_path / "run", ["data=shakespeare_byte"])


def test_megatron_file_that_would_run_code_is_refused(tmp_path):
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    folder = tmp_path / "iter_0000001" / "mp_rank_00"
    folder.mkdir(parents=True)
    torch.save({"args": Payload(), "model": {}}, folder / "model_optim_rng.pt")
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("1")
    with pytest.raises(UserError, match="refused as a Megatron checkpoint"):
        import_model(tmp_path, tmp_path / "run", ["data=shakespeare_byte"])
    assert not (tmp_path / "ran").exists()
    sharded = tmp_path / "tp2"
    for rank in ("mp_rank_00", "mp_rank_01"):
        (sharded / rank).mkdir(parents=True)
    with pytest.raises(UserError, match="2 model-parallel ranks"):
        import_model(sharded, tmp_path / "run2", ["data=shakespeare_byte"])
