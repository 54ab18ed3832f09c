"""Generative perplexity under a Hugging Face causal LM loaded from a local folder (no hub):
a judge whose logits are all zero is uniform over GPT-2's 50257 tokens, so the perplexity of
any text must be exactly 50257 and the NLL must count every token after the first."""

from __future__ import annotations

import math

import pytest
import torch

from src.data.tokenizer_files import gpt2_backend
from src.eval.sample_metrics import HFJudge, generative_perplexity, mean_unigram_entropy

GPT2_VOCAB = 50257
TEXTS = ["ROMEO: But soft, what light through yonder window breaks?", "Is this a dagger"]


@pytest.fixture(scope="module")
def uniform_judge_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("judge")
    tok = PreTrainedTokenizerFast(tokenizer_object=gpt2_backend(), eos_token="<|endoftext|>")
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=GPT2_VOCAB, n_positions=64, n_embd=8,
                                       n_layer=1, n_head=2))
    with torch.no_grad():
        model.transformer.wte.weight.zero_()  # tied output head: every logit is 0
    model.save_pretrained(folder)
    return folder


def test_uniform_judge_gives_the_vocabulary_size(uniform_judge_dir):
    judge = HFJudge(str(uniform_judge_dir))
    nll, n = judge.nll(TEXTS[0])
    assert n == len(judge.tok(TEXTS[0]).input_ids) - 1 > 5
    assert nll == pytest.approx(n * math.log(GPT2_VOCAB), rel=1e-5)
    assert generative_perplexity(judge, TEXTS) == pytest.approx(GPT2_VOCAB, rel=1e-4)


def test_missing_judge_is_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match="cannot load judge LM .*pass a local path"):
        HFJudge(str(tmp_path / "no_such_model"))


def test_unigram_entropy_of_known_samples():
    # [1, 1, 2, 3]: probabilities 1/2, 1/4, 1/4 -> 1.5 ln 2; [5, 5]: 0.
    assert mean_unigram_entropy([[1, 1, 2, 3], [5, 5]]) == pytest.approx(0.75 * math.log(2))
