"""An AR export is a standard transformers causal LM: `generate` with the usual arguments,
a KV cache, attention masks and left padding, and lm-eval's `hf` generate_until giving our
adapter's continuations."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from src.checkpoints import load_run
from src.samplers.ar import ARSampler
from tests.export.conftest import lm_eval_hf

TEXTS = ["ROMEO:", "To be, or not to be", "O"]


@pytest.fixture(scope="module")
def hf_ar(exports):
    model = AutoModelForCausalLM.from_pretrained(str(exports["ar"]), trust_remote_code=True)
    tok = AutoTokenizer.from_pretrained(str(exports["ar"]), trust_remote_code=True)
    return model.eval(), tok


def greedy(model, ids: torch.Tensor, new: int) -> torch.Tensor:
    """Argmax decoding by full forwards, no cache (the definition generate must meet)."""
    for _ in range(new):
        with torch.no_grad():
            nxt = model(ids).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    return ids


def test_generate_takes_the_standard_arguments(hf_ar, tiny_runs):
    model, tok = hf_ar
    ids = tok(TEXTS[0], return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 8)
    assert torch.equal(out, greedy(model, ids, 8))
    assert torch.equal(out, model.generate(ids, max_new_tokens=8, do_sample=False,
                                           use_cache=False))
    # the repo's own greedy AR sampler draws the same tokens
    run = load_run(tiny_runs["ar"])
    ours = ARSampler(temperature=0.0).sample(run.algo, 1, ids.shape[1] + 8, prompt=ids[0])
    assert torch.equal(out, ours)
    sampled = model.generate(ids, max_new_tokens=8, do_sample=True, top_k=5, temperature=0.9)
    assert sampled.shape == out.shape and int(sampled.max()) < model.config.vocab_size


def test_left_padded_batches_generate_what_each_row_does_alone(hf_ar):
    model, tok = hf_ar
    tok.padding_side = "left"
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    assert not bool(batch.attention_mask.all())  # the batch really is padded
    out = model.generate(**batch, max_new_tokens=6, do_sample=False)
    width = batch.input_ids.shape[1]
    for row, text in enumerate(TEXTS):
        alone = model.generate(tok(text, return_tensors="pt").input_ids, max_new_tokens=6,
                               do_sample=False)
        assert out[row, width:].tolist() == alone[0, -6:].tolist(), text
    # forward honours the mask: a padded row's logits at its tokens are the unpadded ones
    with torch.no_grad():
        padded = model(**batch).logits
        n = len(tok(TEXTS[0]).input_ids)
        alone = model(tok(TEXTS[0], return_tensors="pt").input_ids).logits
    torch.testing.assert_close(padded[0, -n:], alone[0], atol=1e-5, rtol=1e-5)


def test_diffusion_exports_keep_the_sampler_api(exports):
    model = AutoModelForMaskedLM.from_pretrained(str(exports["mdlm"]), trust_remote_code=True)
    a = model.sample(num_samples=2, max_length=12, steps=3, seed=0)
    assert torch.equal(a, model.generate(num_samples=2, max_length=12, steps=3, seed=0))


@pytest.fixture(scope="module")
def gen_task(tmp_path_factory):
    """Six prompts from the play, of different lengths; continue each for up to 12 bytes,
    stop at a newline."""
    from src.data.embedded import load_shakespeare

    root = tmp_path_factory.mktemp("gen_task")
    text = "".join(load_shakespeare("validation"))[:5000]
    # contexts of 10-25 bytes: lm-eval batches them left-padded (batch_size 4)
    docs = [{"context": text[i * 700:i * 700 + 10 + 3 * i],
             "target": text[i * 700 + 10 + 3 * i:i * 700 + 16 + 3 * i]} for i in range(6)]
    data = root / "continue.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "continue.yaml").write_text(
        "task: continue_play\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: generate_until\n"
        'doc_to_text: "{{context}}"\ndoc_to_target: "{{target}}"\ntarget_delimiter: ""\n'
        "generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: 12\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n")
    return root


def test_lm_eval_hf_generate_until_matches_our_adapter(exports, tiny_runs, gen_task, tmp_path):
    pytest.importorskip("accelerate")
    hf = lm_eval_hf(exports["ar"], "continue_play", gen_task, tmp_path / "hf")
    assert hf.returncode == 0, hf.stderr[-3000:]
    samples = next((tmp_path / "hf").rglob("samples_continue_play_*.jsonl"))
    logged = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(logged) == 6
    from src.eval.harness import LabLM

    model = LabLM(ckpt=tiny_runs["ar"])
    for sample in logged:  # arguments: {"gen_args_0": {"arg_0": context, "arg_1": kwargs}}
        (args,) = sample["arguments"].values()
        request = SimpleNamespace(args=(args["arg_0"], args["arg_1"]))
        mine = model.generate_until([request], disable_tqdm=True)[0]
        assert mine == sample["resps"][0][0], (args["arg_0"], mine, sample["resps"][0][0])
    assert any(s["resps"][0][0] for s in logged)  # something was generated
