"""An AR export scored by lm-eval's own `hf` model gives our adapter's accuracies: the same
windows (config.max_position_embeddings = the run's seq_len) and the same log-likelihoods."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from types import SimpleNamespace

import pytest

from src.checkpoints import load_run
from src.data.embedded import load_shakespeare
from src.eval.harness import LabLM
from tests.conftest import ROOT
from tests.export.conftest import LM_EVAL_ENV, lm_eval_hf


@pytest.fixture(scope="module")
def short_task(tmp_path_factory):
    """12 questions: 40 bytes of a play (longer than the 32-byte model: windows differ unless
    both tools cut them alike), then which 6 bytes come next (4 choices)."""
    root = tmp_path_factory.mktemp("hf_task")
    text = "".join(load_shakespeare("validation"))[:20000]
    rng = random.Random(0)
    docs = []
    for _ in range(12):
        starts = [rng.randrange(len(text) - 46) for _ in range(4)]
        context = text[starts[0]:starts[0] + 40]
        choices = [text[s + 40:s + 46] for s in starts]
        label = rng.randrange(4)
        choices[0], choices[label] = choices[label], choices[0]
        docs.append({"context": context, "choices": choices, "label": label})
    data = root / "next_bytes.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "next_bytes.yaml").write_text(
        "task: next_bytes\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{context}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{label}}"\n'
        'target_delimiter: ""\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n')
    return root


def test_lm_eval_hf_scores_an_ar_export_like_our_adapter(exports, tiny_runs, short_task,
                                                         tmp_path):
    pytest.importorskip("accelerate")  # what lm-eval's hf model needs (requirements.txt)
    env = {**os.environ, **LM_EVAL_ENV}
    hf = lm_eval_hf(exports["ar"], "next_bytes", short_task, tmp_path / "hf")
    assert hf.returncode == 0, hf.stderr[-3000:]
    theirs = json.loads(next((tmp_path / "hf").rglob("results_*.json")).read_text())
    ours_out = tmp_path / "ours.json"
    proc = subprocess.run(
        [sys.executable, "-m", "src.lm_eval", f"ckpt={tiny_runs['ar']}",
         f"tasks=[{short_task / 'next_bytes.yaml'}]", f"out={ours_out}",
         f"paths.log_dir={tmp_path}/logs"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Running loglikelihood requests" in proc.stderr  # our adapter's progress bar
    ours = json.loads(ours_out.read_text())
    for metric in ("acc,none", "acc_norm,none"):
        assert ours["results"]["next_bytes"][metric] == theirs["results"]["next_bytes"][metric]

    # and each choice's log-likelihood, request by request (fp32 both ways)
    logged = [json.loads(line) for line in
              next((tmp_path / "hf").rglob("samples_next_bytes_*.jsonl")).read_text().splitlines()]
    model = LabLM(ckpt=tiny_runs["ar"])
    for sample in logged:  # arguments: {"gen_args_i": {"arg_0": context, "arg_1": choice}}
        for args, resp in zip(sample["arguments"].values(), sample["resps"]):
            request = SimpleNamespace(args=(args["arg_0"], args["arg_1"]))
            mine = model.loglikelihood([request], disable_tqdm=True)[0][0]
            assert mine == pytest.approx(float(resp[0][0]), rel=1e-5, abs=1e-4)


def test_lm_eval_hf_windows_to_the_runs_seq_len(exports, tiny_runs):
    pytest.importorskip("accelerate")
    from lm_eval.models.huggingface import HFLM

    seq_len = load_run(tiny_runs["ar"]).cfg.data.seq_len
    hf = HFLM(pretrained=str(exports["ar"]), trust_remote_code=True, device="cpu",
              dtype="float32")
    assert hf.max_length == seq_len == 32  # else it would read positions the model never saw
