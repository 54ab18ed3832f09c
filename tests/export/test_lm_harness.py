"""lm-evaluation-harness adapter on local task YAMLs over JSONL files the test writes.

Accuracy is checked with an exact oracle: a network that knows the "counting" language
(each byte is the previous one plus 1, starting from 'a'), swapped in for the backbone of
a real tiny run. Through the adapter it must score every multiple-choice item right,
generate every continuation exactly and reach ~0 bits per byte; a wrong conditioning
(context noised too, continuation not scored, choices mixed up) breaks that.
"""

from __future__ import annotations

import json
import subprocess
import sys

import lm_eval
import pytest
import torch
import torch.nn as nn
from lm_eval.tasks import TaskManager

from src.checkpoints import load_run
from src.eval.harness import LabLM
from src.lm_eval import task_names
from tests.conftest import ROOT

A = ord("a")
SHARP = 30.0


class CountingOracle(nn.Module):
    """Logits of the counting language. Causal: next = current + 1 (EOS -> 'a').
    Bidirectional: every position i holds x_p + (i - p) for the first clean position p
    (97 + i when everything is masked)."""

    def __init__(self, vocab_size: int, mask_id: int, eos_id: int) -> None:
        super().__init__()
        self.vocab_size, self.mask_id, self.eos_id = vocab_size, mask_id, eos_id
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device
        self.max_seq_len = 4096

    def new_kv_cache(self, batch_size: int, max_len: int) -> object:
        return object()  # the causal rule reads only the current token

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None, *,
                causal: bool = False, **_: object) -> torch.Tensor:
        b, length = x.shape
        if causal:
            pred = torch.where(x == self.eos_id, A, x + 1)
        else:
            pos = torch.arange(length, device=x.device).expand(b, -1)
            clean = x != self.mask_id
            first = torch.where(clean, pos, length).min(1).values  # (B,)
            has = first < length
            anchor_tok = x.gather(1, first.clamp(max=length - 1)[:, None]).squeeze(1)
            start = torch.where(has, anchor_tok - first, torch.full_like(first, A))
            pred = start[:, None] + pos
        logits = torch.full((b, length, self.vocab_size), -SHARP)
        logits.scatter_(-1, (pred % 256)[..., None], SHARP)
        return logits + 0 * self.anchor


def oracle_model(run_dir: str) -> LabLM:
    run = load_run(run_dir)
    tok = run.datamodule.tokenizer
    oracle = CountingOracle(tok.vocab_size, tok.mask_id, tok.eos_id)
    run.algo.backbone = run.algo._net = oracle
    return LabLM(run=run, mc_samples=8, mc_batch=8, max_length=16)  # 16: two windows


def counting(start: int, n: int) -> str:
    return "".join(chr(A + start + i) for i in range(n))


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    choice_docs, gen_docs, ppl_docs = [], [], []
    for i in range(6):
        context, right = counting(i, 4), counting(i + 4, 3)
        wrong = [counting(i + 5, 3), right[:2] + "z", "zzz"]
        label = i % 3
        choices = wrong[:label] + [right] + wrong[label:2]
        choice_docs.append({"context": context, "choices": choices, "label": label})
        gen_docs.append({"context": context, "target": right})
        ppl_docs.append({"text": counting(0, 20 + 2 * i)})  # 20-30 ASCII bytes
    files = {}
    for name, docs in (("choice", choice_docs), ("gen", gen_docs), ("ppl", ppl_docs)):
        path = root / f"{name}.jsonl"
        path.write_text("".join(json.dumps(d) + "\n" for d in docs))
        files[name] = path
    head = "dataset_path: json\ntest_split: test\ndataset_kwargs:\n  data_files:\n    test: {}\n"
    yamls = {
        "choice": "task: counting_choice\noutput_type: multiple_choice\n"
                  "doc_to_text: '{{context}}'\ndoc_to_choice: '{{choices}}'\n"
                  "doc_to_target: '{{label}}'\ntarget_delimiter: ''\n"
                  "metric_list:\n  - metric: acc\n",
        "gen": "task: counting_gen\noutput_type: generate_until\ndoc_to_text: '{{context}}'\n"
               "doc_to_target: '{{target}}'\ntarget_delimiter: ''\n"
               "generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: 3\n"
               "metric_list:\n  - metric: exact_match\n",
        "ppl": "task: counting_ppl\noutput_type: loglikelihood_rolling\ndoc_to_text: ''\n"
               "doc_to_target: '{{text}}'\n"
               "metric_list:\n  - metric: bits_per_byte\n",
    }
    out = {}
    for name, body in yamls.items():
        path = root / f"{name}.yaml"
        path.write_text(body + head.format(files[name]))
        out[name] = path
    return out


def evaluate(model: LabLM, tasks: dict, which: list[str]) -> dict:
    names, include = task_names([str(tasks[w]) for w in which])
    res = lm_eval.simple_evaluate(model=model, tasks=names,
                                  task_manager=TaskManager(include_path=include),
                                  log_samples=False)
    return res["results"]


@pytest.mark.parametrize("algo", ["ar", "mdlm"])
def test_oracle_is_right_through_the_adapter(algo, tiny_runs, tasks):
    results = evaluate(oracle_model(tiny_runs[algo]), tasks, ["choice", "gen", "ppl"])
    assert results["counting_choice"]["acc,none"] == 1.0
    assert results["counting_gen"]["exact_match,none"] == 1.0
    assert results["counting_ppl"]["bits_per_byte,none"] < 1e-3


def test_diffusion_bound_scores_only_the_continuation(tiny_runs):
    model = oracle_model(tiny_runs["mdlm"])
    ctx, right = model.tok.encode(counting(0, 4)), model.tok.encode(counting(4, 3))
    logp, greedy = model.score(ctx, right), model.is_greedy(ctx, right)
    assert logp > -1e-3 and greedy
    wrong = model.tok.encode("zzz")
    wrong_logp, wrong_greedy = model.score(ctx, wrong), model.is_greedy(ctx, wrong)
    assert wrong_logp < -30 and not wrong_greedy  # every noised wrong token costs ~2 SHARP
    assert model.score(ctx, right) == logp  # keyed by the request: reproducible


@pytest.mark.slow  # three more algos end to end: ~21 s (ar and mdlm stay in the fast suite)
@pytest.mark.parametrize("algo", ["duo", "gidd", "esolm"])
def test_every_algo_scores_and_generates(algo, tiny_runs, tasks):
    model = LabLM(ckpt=tiny_runs[algo], mc_samples=4, mc_batch=4, steps=4)
    results = evaluate(model, tasks, ["choice", "gen"])
    assert 0.0 <= results["counting_choice"]["acc,none"] <= 1.0
    assert 0.0 <= results["counting_gen"]["exact_match,none"] <= 1.0


@pytest.mark.slow  # lm-eval CLI in a subprocess: ~13 s
def test_cli_on_an_exported_folder(exports, tasks, tmp_path):
    out = tmp_path / "lm_eval.json"
    proc = subprocess.run(
        [sys.executable, "-m", "src.lm_eval", f"ckpt={exports['mdlm']}",
         f"tasks=[{tasks['choice']},{tasks['ppl']}]", "mc_samples=2", "limit=2", f"out={out}",
         f"paths.log_dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["algo"] == "mdlm" and result["mc_samples"] == 2
    assert set(result["results"]) == {"counting_choice", "counting_ppl"}
    assert result["results"]["counting_ppl"]["bits_per_byte,none"] > 0


def test_task_yaml_errors_are_one_line(tmp_path):
    """A task file that is not YAML says where it breaks (it was "not a registered task");
    lm-eval's `!function` tags are read, not run."""
    from src.utils.cli import UserError
    good = tmp_path / "good.yaml"
    good.write_text("task: mine\nprocess_docs: !function utils.process_docs\n")
    assert task_names([str(good)]) == (["mine"], [str(tmp_path.resolve())])
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n  x: y\n")
    with pytest.raises(UserError, match=r"bad.yaml is not valid YAML \(.* at line 2"):
        task_names([str(bad)])
