"""End to end on CPU: train tiny AR and MDLM runs, then evaluate and sample them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from src.train import train
from src.utils.cli import CONFIG_DIR
from src.utils.resolvers import register_resolvers
from tests.cli import cli_error
from tests.conftest import ROOT

register_resolvers()
RESULT_KEYS = {"algo", "model", "params", "non_embedding_params", "tokens", "steps", "val_nll",
               "val_ppl", "wall_time_s", "tokens_per_s", "flops", "flops_convention",
               "flops_budget"}


def tiny_overrides(root: Path, algo: str) -> list[str]:
    return [f"algo={algo}", "model=0.13M", "data=shakespeare_byte", "data.seq_len=32",
            "data.batch_size=4", "data.eval_batch_size=16", "training.max_steps=6",
            "training.val_every_n_steps=3", "training.ckpt_every_n_steps=3",
            "training.val_max_batches=3", "eval.num_samples=2", "eval.sample_steps=8", f"paths.log_dir={root}/runs", f"paths.cache_dir={root}/cache",
            "trainer.enable_progress_bar=false", "trainer.precision=32-true"]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("e2e")
    out = {}
    for algo in ("ar", "mdlm"):
        out[algo] = train(compose_cfg(tiny_overrides(root, algo)))
        out[algo]["root"] = root
    return out


@pytest.mark.parametrize("algo", ["ar", "mdlm"])
def test_run_writes_result_row(runs, algo):
    result = runs[algo]
    on_disk = json.loads((Path(result["run_dir"]) / "result.json").read_text())
    assert RESULT_KEYS <= set(on_disk)
    assert on_disk["steps"] == 6 and on_disk["tokens"] == 6 * 4 * 32
    assert on_disk["epochs"] == pytest.approx(on_disk["tokens"] / on_disk["unique_tokens"])
    assert on_disk["unique_tokens"] > 100_000  # the whole byte-level Shakespeare train split
    assert on_disk["flops"] == pytest.approx(on_disk["tokens"] * on_disk["flops_per_token"])
    assert 0 < on_disk["val_nll"] < 7 and on_disk["val_ppl"] > 1
    # Byte tokenizer: a scored token is one byte, or an EOS separator (0 bytes), so bits per
    # byte sits a little above bits per token.
    per_token = on_disk["val_bits_per_token"]
    assert per_token == pytest.approx(on_disk["val_nll"] / math.log(2))
    # Two float64 formulas (nll_sum / tokens / ln 2 and nll_sum / (ln 2 bytes)): 1e-12 slack.
    assert per_token * (1 - 1e-12) <= on_disk["val_bpb"] < per_token * 1.05
    # The final NELBO averages training.final_val_draws (= val_draws = 8) noise draws and
    # carries their standard error; AR's NLL is exact (one pass, SE 0).
    assert on_disk["val_draws"] == (1 if algo == "ar" else 8)
    assert on_disk["val_nll_se"] == 0.0 if algo == "ar" else 0 < on_disk["val_nll_se"] < 0.5
    assert len(json.loads((Path(result["run_dir"]) / "samples.json").read_text())) == 2
    assert (Path(result["run_dir"]) / "checkpoints" / "last.ckpt").exists()


def test_finished_run_is_skipped_on_relaunch(runs):
    root = runs["ar"]["root"]
    again = train(compose_cfg(tiny_overrides(root, "ar")))
    assert "samples" not in again  # read back from result.json, nothing retrained
    assert again["val_nll"] == runs["ar"]["val_nll"]


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("algo", [pytest.param("ar", marks=pytest.mark.slow), "mdlm"])
def test_evaluate_reproduces_validation_nll(runs, algo, tmp_path):
    """The evaluation noise is keyed like the run's final validation (seed, step, batch,
    draw), so evaluate == the run's final val/nll."""
    run_dir = runs[algo]["run_dir"]
    out = tmp_path / "eval.json"
    proc = _cli("src.evaluate", f"ckpt={run_dir}", "max_batches=3", f"out={out}",
                f"paths.log_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads(out.read_text())
    assert metrics["nll"] == pytest.approx(runs[algo]["val_nll"], rel=1e-4)
    assert metrics["is_bound"] == (algo != "ar")
    # The same draws as the run's end-of-run validation: the same standard error too.
    assert metrics["draws"] == runs[algo]["val_draws"]
    assert metrics["nll_se"] == pytest.approx(runs[algo]["val_nll_se"], rel=1e-4)

    # repeats=2 adds a second Monte-Carlo pass with fresh noise: a different estimate for
    # the diffusion bound, the same exact NLL for AR.
    proc = _cli("src.evaluate", f"ckpt={run_dir}", "max_batches=3", "repeats=2", f"out={out}",
                f"paths.log_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    pooled = json.loads(out.read_text())
    twice = pooled["nll"]
    if algo != "ar":  # 2 passes of 8 draws, pooled: 16 draws behind the estimate
        assert pooled["draws"] == 16 and 0 < pooled["nll_se"]
    if algo == "ar":
        assert twice == pytest.approx(metrics["nll"], rel=1e-6)
    else:
        assert twice != pytest.approx(metrics["nll"], rel=1e-6)
        assert twice == pytest.approx(metrics["nll"], rel=0.2)


def test_sample_cli_with_prompt_and_own_ar_judge(runs, tmp_path):
    out = tmp_path / "samples.json"
    proc = _cli("src.sample", f"ckpt={runs['mdlm']['run_dir']}", "num_samples=3", "batch_size=2",
                "steps=8", "prompt=ROMEO:", f"judge=ckpt:{runs['ar']['run_dir']}", f"out={out}",
                f"paths.log_dir={tmp_path}", "sampler.top_p=0.9")  # edits the run's own sampler
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["sampler"]["top_p"] == 0.9 and res["sampler"]["steps"] == 8
    assert res["sampler"]["_target_"] == "src.samplers.ancestral.MDLMAncestral"
    assert res["num_samples"] == 3 and all(s.startswith("ROMEO:") for s in res["samples"])
    assert res["gen_ppl"] > 1 and res["unigram_entropy"] > 0
    assert all(len(ids) == 32 for ids in res["ids"])


def test_unknown_option_of_the_runs_sampler_is_one_clear_line(runs, tmp_path):
    from src.sample import main

    line = cli_error(main, "src.sample", f"ckpt={runs['mdlm']['run_dir']}", "+sampler.top_k=5",
                     f"paths.log_dir={tmp_path}")
    assert "sampler.top_k is not an option of this run's sampler" in line and "top_p" in line


def test_non_utf8_file_is_one_line_with_its_offset(tmp_path):
    from src.train import main

    (tmp_path / "corpus.txt").write_bytes(b"plain text\n" * 50 + b"caf\xe9 \xff\n" + b"more\n")
    line = cli_error(main, "src.train", "data=text_files", f"data.path={tmp_path}/corpus.txt",
                     "data.tokenizer.kind=byte", f"paths.log_dir={tmp_path}/runs",
                     f"paths.cache_dir={tmp_path}/cache")
    assert f"{tmp_path}/corpus.txt is not UTF-8 text: byte 0xe9 at offset 553" in line, line


def test_prompt_longer_than_sequence_is_one_clear_line(runs, tmp_path):
    proc = _cli("src.sample", f"ckpt={runs['ar']['run_dir']}", "prompt=" + "x" * 40,
                f"paths.log_dir={tmp_path}")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "prompt" in last and "length" in last


def test_missing_data_is_one_clear_line(tmp_path):
    proc = _cli("src.train", "data=text_files", f"data.path={tmp_path}/corpus.txt",
                "data.tokenizer.kind=byte", f"paths.log_dir={tmp_path}/runs",
                f"paths.cache_dir={tmp_path}/cache")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and "set data.path" in lines[-1], lines[-3:]


def test_empty_corpus_is_one_clear_line(tmp_path):
    from src.train import main

    (tmp_path / "corpus.txt").write_text("")
    line = cli_error(main, "src.train", "data=text_files", f"data.path={tmp_path}/corpus.txt",
                     "data.tokenizer.kind=byte", f"paths.log_dir={tmp_path}/runs",
                     f"paths.cache_dir={tmp_path}/cache")
    assert "empty" in line.lower(), line


def _compose(config: str, overrides: list[str]):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(config, overrides=overrides)


def test_bad_evaluate_and_sample_input_with_a_run(runs, tmp_path):
    from src.evaluate import main as evaluate_main
    from src.sample import main as sample_main

    mdlm, log = runs["mdlm"]["run_dir"], f"paths.log_dir={tmp_path}"
    cases = [
        (evaluate_main, "src.evaluate", ["device=cuda"], "device=cuda but no CUDA device"),
        (evaluate_main, "src.evaluate", ["repeats=0"], "repeats=0 must be >= 1"),
        (evaluate_main, "src.evaluate", ["max_batches=0"], "max_batches=0 must be >= 1"),
        (sample_main, "src.sample", ["num_samples=0"], "num_samples=0 must be >= 1"),
        (sample_main, "src.sample", ["steps=0"], "steps=0 must be >= 1"),
        (sample_main, "src.sample", ["device=cuda"], "device=cuda but no CUDA device"),
        (sample_main, "src.sample", ["sampler=duo_ancestral"],
         "DUOAncestral samples algo=duo|duo_distill, not algo=mdlm: use sampler=ancestral_cache"),
        (sample_main, "src.sample", [f"judge={tmp_path}/no_such_lm"], "cannot load judge LM"),
    ]
    for main, module, args, expected in cases:
        line = cli_error(main, module, f"ckpt={mdlm}", log, *args)
        assert expected in line, (args, line)
    assert not (Path(mdlm) / "samples").exists()  # the judge failed before any sampling


def test_evaluate_one_file_and_samples_land_in_the_run(runs, tmp_path):
    from src.evaluate import evaluate
    from src.sample import sample

    corpus = tmp_path / "my_corpus.txt"
    corpus.write_text("O Romeo, Romeo! wherefore art thou Romeo?\n" * 40)
    metrics = evaluate(_compose("evaluate", [f"ckpt={runs['ar']['run_dir']}", "data=text_files",
                                             f"data.path={corpus}", f"paths.log_dir={tmp_path}"]))
    assert metrics["tokens"] > 1000 and 0 < metrics["nll"] < 10  # the whole file, one split
    # AR scores every token but each row's first; ASCII bytes are tokens, EOS is 0 bytes.
    assert metrics["tokens"] - 60 <= metrics["bytes"] <= metrics["tokens"]
    assert metrics["bpb"] * metrics["bytes"] == pytest.approx(
        metrics["bits_per_token"] * metrics["tokens"])
    out = sample(_compose("sample", [f"ckpt={runs['mdlm']['run_dir']}", "num_samples=2",
                                     "steps=4", f"paths.log_dir={tmp_path}"]))
    assert Path(out["out"]).parent == Path(runs["mdlm"]["run_dir"]) / "samples"
    assert Path(out["out"]).name == "ancestral_cache_steps4_n2_seed0.json"  # the run's sampler
    # Every sampler setting gets its own file, named after its configs/sampler name.
    from src.sample import partial_sampler_overrides
    names = {Path(sample(_compose("sample", partial_sampler_overrides(
        [f"ckpt={runs['mdlm']['run_dir']}", "num_samples=2", "steps=4", *extra])))["out"]).name
             for extra in ([], ["sampler.top_p=0.9"], ["sampler=ancestral"])}
    assert len(names) == 3 and "ancestral_steps4_n2_seed0.json" in names, names
