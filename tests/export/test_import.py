"""Import: reference-format state dicts, MDLM-style Hugging Face folders and our own exports
become run folders whose logits equal the source's forward."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from src.checkpoints import load_run
from src.export.import_model import import_model
from src.export.reference import from_reference, to_reference
from src.models.dit import DiT
from tests.conftest import ROOT
from tests.export.reference_dit import reference_forward

IDS = torch.tensor([[5, 17, 250, 257, 257, 99, 3, 257], [257] * 4 + [10, 20, 30, 40]])
SIGMA = torch.tensor([0.0, 1.5])


def close(ours: torch.Tensor, ref: torch.Tensor) -> bool:
    """float32 agreement: max |diff| within 1e-6 of the largest logit (|logits| ~ 50 here)."""
    return float((ours - ref).abs().max()) <= 1e-6 * float(ref.abs().max())


def reference_state(vocab: int = 258, dim: int = 64, blocks: int = 2, heads: int = 4,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """A reference-format DiT state dict with random (non-zero) weights, and the
    reference's rotary buffer."""
    torch.manual_seed(seed)
    model = DiT(vocab, dim, blocks, heads)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)  # sharp attention: the head split matters
    state = to_reference(model.state_dict())
    half = dim // heads
    state["rotary_emb.inv_freq"] = 1.0 / (10_000 ** (torch.arange(0, half, 2).float() / half))
    return state


def test_renaming_round_trips_and_rejects_foreign_keys():
    ours = DiT(258, 64, 2, 4).state_dict()
    assert from_reference(to_reference(ours)).keys() == ours.keys()
    bad = {**to_reference(ours), "blocks.0.attn.c_attn.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="attn.c_attn"):
        from_reference(bad)


def test_oracle_is_sensitive_to_the_head_split():
    state = reference_state()
    ref = reference_forward(state, IDS, SIGMA, n_heads=4)
    assert not torch.allclose(ref, reference_forward(state, IDS, SIGMA, n_heads=2), atol=1e-3)


@pytest.mark.parametrize("wrapper", ["", "backbone.", "model._orig_mod."])
def test_reference_state_dict_file_imports_with_the_reference_logits(tmp_path, wrapper):
    state = reference_state()
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {wrapper + k: v for k, v in state.items()}}, path)
    import_model(path, tmp_path / "run", ["model.n_heads=4", "data=shakespeare_byte",
                                          "algo.time_conditioning=true"])
    run = load_run(tmp_path / "run")
    with torch.no_grad():
        ours = run.algo.backbone(IDS, SIGMA)
    assert close(ours, reference_forward(state, IDS, SIGMA, n_heads=4))
    assert run.algo.name == "mdlm" and run.algo.time_conditioning


def test_missing_head_count_is_one_line(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file(reference_state(), str(path))
    proc = subprocess.run([sys.executable, "-m", "src.export.import_model", f"source={path}",
                           f"out={tmp_path / 'run'}", "data=shakespeare_byte"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("error: the head count")
    assert not (tmp_path / "run").exists()


def test_mdlm_style_hf_folder_imports(tmp_path):
    """config.json + model.safetensors with a `backbone.` prefix, as MDLM / DUO publish."""
    folder = tmp_path / "mdlm-hf"
    folder.mkdir()
    state = reference_state(seed=1)
    save_file({f"backbone.{k}": v for k, v in state.items()}, str(folder / "model.safetensors"))
    config = {"model_type": "mdlm", "vocab_size": 258, "model_length": 64, "hidden_dim": 64,
              "cond_dim": 128, "n_blocks": 2, "n_heads": 4, "dropout": 0.1,
              "time_conditioning": False}
    (folder / "config.json").write_text(json.dumps(config))
    summary = import_model(folder, tmp_path / "run", ["data=shakespeare_byte"])
    assert (summary["algo"], summary["n_heads"], summary["seq_len"]) == ("mdlm", 4, 64)
    run = load_run(tmp_path / "run")
    assert not run.algo.time_conditioning
    with torch.no_grad():
        ours = run.algo.backbone(IDS, torch.zeros(2))
    assert close(ours, reference_forward(state, IDS, torch.zeros(2), n_heads=4))


def test_wrong_qkv_shape_is_named(tmp_path):
    state = reference_state()
    state["blocks.0.attn_qkv.weight"] = state["blocks.0.attn_qkv.weight"][:-4]
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path))
    with pytest.raises(Exception, match=r"blocks.0.qkv.weight has shape .* expects") as err:
        import_model(path, tmp_path / "run", ["model.n_heads=4", "data=shakespeare_byte"])
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()


def test_own_training_checkpoint_is_told_to_be_used_directly(tiny_runs, tmp_path):
    ckpt = Path(tiny_runs["mdlm"]) / "checkpoints" / "last.ckpt"
    with pytest.raises(Exception, match="was written by src.train: it needs no import"):
        import_model(ckpt, tmp_path / "run", ["model.n_heads=4"])
    assert not (tmp_path / "run").exists()


def test_invalid_config_json_is_named(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text('{"n_heads": 4,')
    with pytest.raises(Exception, match=r"hf/config.json is not valid JSON"):
        import_model(folder, tmp_path / "run", [])
    assert not (tmp_path / "run").exists()


def test_hub_source_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception, match="needs the network"):
        import_model("hf:kuleshov-group/mdlm-owt", tmp_path / "run", [])
    assert not (tmp_path / "run").exists()


def test_wrong_tokenizer_is_named(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file(reference_state(vocab=300), str(path))
    with pytest.raises(Exception, match="300 token ids"):
        import_model(path, tmp_path / "run", ["model.n_heads=4", "data=shakespeare_byte"])


@pytest.mark.parametrize("algo", ["mdlm", "gidd", "esolm", "ar", "gidd_arch", "mdlm_gqa"])
def test_own_export_round_trips(algo, exports, tiny_runs, tmp_path):
    import_model(exports[algo], tmp_path / "run", [])
    back, original = load_run(tmp_path / "run"), load_run(tiny_runs[algo])
    assert back.algo.name == original.algo.name
    for key in ("algo", "model"):
        mine = {k: v for k, v in back.cfg[key].items() if k not in ("name", "attn_backend")}
        theirs = {k: v for k, v in original.cfg[key].items() if k not in ("name", "attn_backend")}
        assert mine == theirs, key
    assert back.datamodule.tokenizer.fingerprint == original.datamodule.tokenizer.fingerprint
    for (k, a), (_, b) in zip(back.algo.backbone.state_dict().items(),
                              original.algo.backbone.state_dict().items()):
        assert torch.equal(a, b), k


def test_imported_run_evaluates_and_seeds_a_new_run(exports, tmp_path):
    from tests.export.conftest import train_tiny

    import_model(exports["mdlm"], tmp_path / "imported", [])
    from src.evaluate import evaluate
    from src.runs.identity import compose_config

    metrics = evaluate(compose_config("evaluate", [f"ckpt={tmp_path / 'imported'}",
                                                   "max_batches=1",
                                                   f"paths.log_dir={tmp_path}"]))
    assert metrics["algo"] == "mdlm" and 0 < metrics["bpb"] < 20
    child = train_tiny(tmp_path, "algo=mdlm", "algo.time_conditioning=true",
                       f"training.init_from={tmp_path / 'imported'}")
    assert child["parent"]["step"] == 0 and child["steps"] == 3
