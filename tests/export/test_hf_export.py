"""Hugging Face export: a fresh process that never imports `src` loads every algo's export
with transformers, gets the checkpoint's logits and samples what the repo's samplers draw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.algos.inference import network_logits, without_mask
from src.checkpoints import load_run
from src.export.vendor import ALLOWED_PACKAGES, third_party
from src.samplers.factory import build_sampler

#: (algo run, sampler name or None for the run's own, sampler options, prompt?)
GENERATIONS = [
    ("ar", None, {}, True), ("ar", "ar", {"top_p": 0.9, "temperature": 0.8}, False),
    ("mdlm", None, {}, False), ("mdlm", "ancestral", {"top_p": 0.9}, True),
    ("duo", "duo_ancestral", {}, False),
    ("gidd", "gidd_ancestral", {}, False), ("gidd", "gidd_adaptive", {}, False),
    ("esolm", "esolm", {}, True), ("esolm", "esolm_block_ar", {"block_size": 8}, False),
    ("esolm", "esolm_nocache", {}, False),
    ("gidd_arch", None, {}, True), ("mdlm_gqa", None, {"block_size": 8}, True),
]
LENGTH, STEPS, N = 24, 6, 2

FRESH_PROCESS = r'''
import json, sys
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
job = json.load(open(sys.argv[1]))
out = {"logits": {}, "samples": [], "text": {}}
ids = torch.tensor(job["ids"])
sigma = torch.tensor(job["sigma"])
for name, folder in job["folders"].items():
    causal = name.startswith("ar")
    head = AutoModelForCausalLM if causal else AutoModelForMaskedLM
    model = head.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__name__ == type(AutoModel.from_pretrained(folder, trust_remote_code=True)).__name__
    with torch.no_grad():
        logits = model(ids).logits if causal else model(ids, sigma=sigma).logits
    out["logits"][name] = logits.tolist()
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    out["text"][name] = tok.batch_decode(model.sample(num_samples=1, max_length=16, steps=4, seed=1))
for algo, sampler, options, prompt in job["generations"]:
    model = (AutoModelForCausalLM if algo == "ar" else AutoModelForMaskedLM).from_pretrained(
        job["folders"][algo], trust_remote_code=True)
    kwargs = dict(options)
    if prompt:
        kwargs["input_ids"] = torch.tensor(job["prompt"])
    ids_out = model.sample(num_samples=job["n"], max_length=job["length"], steps=job["steps"],
                             sampler=sampler, seed=0, **kwargs)
    out["samples"].append(ids_out.tolist())
out["src_imported"] = sorted(m for m in sys.modules if m == "src" or m.startswith("src."))
json.dump(out, open(sys.argv[2], "w"))
'''


@pytest.fixture(scope="module")
def fresh(exports, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fresh")
    job = {"folders": {k: str(v) for k, v in exports.items()}, "ids": IDS.tolist(),
           "sigma": SIGMA.tolist(), "generations": GENERATIONS, "prompt": PROMPT.tolist(),
           "n": N, "length": LENGTH, "steps": STEPS}
    (root / "job.json").write_text(json.dumps(job))
    (root / "fresh.py").write_text(FRESH_PROCESS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    proc = subprocess.run([sys.executable, "-I", "fresh.py", "job.json", "out.json"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((root / "out.json").read_text())


IDS = torch.tensor([[72, 101, 108, 108, 111, 257, 257, 32, 119, 257, 114, 108, 100, 33, 10, 256],
                    [257] * 8 + [65, 66, 67, 68, 257, 257, 69, 70]])
SIGMA = torch.tensor([0.3, 2.0])
PROMPT = torch.tensor([82, 79, 77, 69, 79, 58])  # "ROMEO:"


def test_fresh_process_never_imports_src(fresh):
    assert fresh["src_imported"] == []


def test_exported_code_needs_only_torch_and_transformers(exports):
    for path in Path(exports["gidd"]).glob("*.py"):
        assert third_party(path) <= ALLOWED_PACKAGES, path.name


@pytest.mark.parametrize("algo", ["ar", "mdlm", "duo", "gidd", "esolm", "ar_moe", "gidd_arch",
                                  "mdlm_gqa"])
def test_same_logits_as_the_checkpoint(algo, fresh, tiny_runs):
    run = load_run(tiny_runs[algo])
    with torch.no_grad():
        ours = network_logits(run.algo.name, run.algo.backbone, IDS, SIGMA, run.algo.mask_id)
    if run.algo.name == "ar":  # the AR distribution never predicts [MASK]
        ours = without_mask(ours, run.algo.mask_id)
    theirs = torch.tensor(fresh["logits"][algo])
    assert theirs.shape == ours.shape
    assert torch.equal(theirs.isfinite(), ours.isfinite())
    assert (theirs - ours)[ours.isfinite()].abs().max() < 1e-5


def test_ema_weights_are_exported(exports, tiny_runs):
    from safetensors.torch import load_file

    stored = load_file(str(exports["mdlm"] / "model.safetensors"))
    ema = load_run(tiny_runs["mdlm"]).algo.backbone.state_dict()
    raw = load_run(tiny_runs["mdlm"], use_ema=False).algo.backbone.state_dict()
    assert set(stored) == {f"backbone.{k}" for k in ema}
    assert all(torch.equal(stored[f"backbone.{k}"], v) for k, v in ema.items())
    assert not all(torch.equal(stored[f"backbone.{k}"], v) for k, v in raw.items())


@pytest.mark.parametrize("index", range(len(GENERATIONS)))
def test_generate_draws_what_the_repo_sampler_draws(index, fresh, tiny_runs):
    algo, name, options, prompt = GENERATIONS[index]
    run = load_run(tiny_runs[algo])
    sampler = build_sampler(name or run.cfg.sampler, steps=STEPS, **options)
    g = torch.Generator().manual_seed(0)
    expected = sampler.sample(run.algo, N, LENGTH, STEPS, prompt=PROMPT if prompt else None,
                              generator=g)
    assert fresh["samples"][index] == expected.tolist()


def test_generated_text_decodes(fresh):
    for algo, texts in fresh["text"].items():
        assert len(texts) == 1 and isinstance(texts[0], str) and texts[0], algo
