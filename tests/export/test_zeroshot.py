"""Zero-shot suite: detokenizers on text in each corpus' own style, and the one-table command
on local fixtures in the hub sets' formats (columns, tokenization, file types)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pandas as pd
import pytest

from src.data.detokenizers import get_detokenizer, lambada, lm1b, ptb, wikitext
from src.eval.zeroshot import set_spec
from src.utils.cli import CONFIG_DIR
from tests.conftest import ROOT

PTB_ROWS = [" the company 's N shares rose to $ N \\/ share but it did n't <unk> ",
            " investors ' money was N N N lost "]
WIKI_ROWS = [" = Valkyria Chronicles III = \n", "", " It sold 1 @,@ 000 copies in 2 @.@ 5 "
             "years ( from Sega ) ; the game 's sales @-@ figures rose . \n",
             " = = Gameplay = = \n"]
ARTICLES = ["we study the @xmath0 model ( see fig . 1 ) , and find that it 's fast .",
            "results : the error is 3 @.@ 2 % ."]
LAMBADA = ["\u201cHello,\u201d she said. He looked at the door   "]


def test_detokenizers_restore_plain_text():
    assert ptb(PTB_ROWS[0]) == " the company's 1 shares rose to $1 / share but it didn't ? "
    assert ptb(PTB_ROWS[1]) == " investors' money was 1 1 1 lost "
    assert wikitext(WIKI_ROWS[2]) == (" It sold 1,000 copies in 2.5 years (from Sega); the "
                                      "game's sales-figures rose.\n")
    assert wikitext(WIKI_ROWS[3]) == " == Gameplay ==\n"
    assert lm1b("he said , \" it 's fine \" ( really ) to me .") == \
        'he said, "it\'s fine" (really) to me.'
    assert lambada(LAMBADA[0]) == '\n"Hello," she said. He looked at the door'
    assert get_detokenizer(None) is None
    with pytest.raises(ValueError, match="unknown detokenizer"):
        get_detokenizer("bert")


def test_every_set_config_is_complete():
    names = sorted(p.stem for p in (CONFIG_DIR / "zeroshot").glob("*.yaml"))
    assert names == sorted(["ptb", "wikitext2", "wikitext103", "lm1b", "lambada", "ag_news",
                            "pubmed", "arxiv"])
    for name in names:
        spec = set_spec(name)
        assert {"name", "config", "split", "text_field", "detokenizer"} <= set(spec), name
        get_detokenizer(spec["detokenizer"])  # a known one


def test_table_from_local_fixtures(tiny_runs, tmp_path):
    (tmp_path / "ptb.jsonl").write_text("".join(json.dumps({"sentence": r}) + "\n"
                                                for r in PTB_ROWS * 20))
    (tmp_path / "wiki.jsonl").write_text("".join(json.dumps({"text": r}) + "\n"
                                                 for r in WIKI_ROWS * 20))
    pd.DataFrame({"article": ARTICLES * 20, "abstract": ["x"] * 40}).to_parquet(
        tmp_path / "arxiv.parquet")
    (tmp_path / "lambada.jsonl").write_text(json.dumps({"text": LAMBADA[0] * 10}) + "\n")
    out = tmp_path / "table"
    proc = subprocess.run(
        [sys.executable, "-m", "src.zeroshot", f"ckpt={tiny_runs['mdlm']}",
         "sets=[ptb,wikitext2,arxiv,lambada]", f"local.ptb={tmp_path / 'ptb.jsonl'}",
         f"local.wikitext2={tmp_path / 'wiki.jsonl'}", f"local.arxiv={tmp_path / 'arxiv.parquet'}",
         f"local.lambada={tmp_path / 'lambada.jsonl'}", f"out={out}",
         f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((out / "zeroshot.csv").open()))
    assert [r["set"] for r in rows] == ["ptb", "wikitext2", "arxiv", "lambada"]
    for r in rows:
        assert float(r["tokens"]) > 0 and float(r["bytes"]) > 0 and r["is_bound"] == "True"
        assert 0 < float(r["bpb"]) < 20 and float(r["ppl"]) > 1
    assert rows[0]["docs"] == "40" and rows[3]["docs"] == "1"
    table = (out / "zeroshot.md").read_text()
    assert table.startswith("| set | docs |") and table.count("\n") == 6
    assert "| ptb |" in proc.stdout


def test_offline_hub_set_names_the_local_option(tiny_runs, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "src.zeroshot", f"ckpt={tiny_runs['mdlm']}", "sets=[ptb]",
         f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
         f"out={tmp_path / 'table'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert proc.returncode != 0
    assert "pass local.ptb=" in proc.stderr.strip().splitlines()[-1]
