"""Undo the tokenization of pre-tokenized evaluation corpora before our tokenizer reads them.

PTB, WikiText, LM1B and the scientific-papers sets ship text with spaces around punctuation
("it 's", "1 @,@ 000"); scoring that text as-is would not match the zero-shot numbers of
MDLM / DUO, whose data pipeline detokenizes first. These are the same rules, so the
numbers are comparable (rule sets as in the MDLM data pipeline; LAMBADA normalises curly
quotes and starts each passage on a new line).
"""

from __future__ import annotations

import re
from collections.abc import Callable

Rule = tuple[str, str, bool]  # (pattern, replacement, is_regex)


def _apply(text: str, rules: tuple[Rule, ...]) -> str:
    for pattern, repl, is_regex in rules:
        text = re.sub(pattern, repl, text) if is_regex else text.replace(pattern, repl)
    return text


WIKITEXT_RULES: tuple[Rule, ...] = (
    ("s '", "s'", False), (r"/' [0-9]/", r"/'[0-9]/", True),
    (" @-@ ", "-", False), (" @,@ ", ",", False), (" @.@ ", ".", False),
    (" : ", ": ", False), (" ; ", "; ", False), (" . ", ". ", False), (" ! ", "! ", False),
    (" ? ", "? ", False), (" , ", ", ", False),
    (r"\(\s*([^\)]*?)\s*\)", r"(\1)", True), (r"\[\s*([^\]]*?)\s*\]", r"[\1]", True),
    (r"{\s*([^}]*?)\s*}", r"{\1}", True), (r"\"\s*([^\"]*?)\s*\"", r'"\1"', True),
    (r"'\s*([^']*?)\s*'", r"'\1'", True),
    ("= = = =", "====", False), ("= = =", "===", False), ("= =", "==", False),
    (" \u00b0 ", "\u00b0", False), (" \n", "\n", False), ("\n ", "\n", False),
    (" N ", " 1 ", False), (" 's", "'s", False),
)

PTB_RULES: tuple[Rule, ...] = (
    (" 's", "'s", False), ("s ' ", "s' ", False), (" n't", "n't", False),
    (" \n ", "\n", False), ("\\/", "/", False),
    # " N " stands for a number; replacing it can expose a new match, hence ten passes.
    *((" N ", " 1 ", False),) * 10,
    ("$ 1", "$1", False), ("# 1", "#1", False), ("<unk>", "?", False),
)

LM1B_RULES: tuple[Rule, ...] = (
    ("http : / / ", "http://", False), ("https : / / ", "https://", False),
    (r" \'(\w+)", r"'\1", True), (r" (\w+) \. ", r" \1. ", True), (r" (\w+) \.$", r" \1.", True),
    (" ? ", "? ", False), (r" \?$", "?", True), (" ! ", "! ", False), (r" \!$", "!", True),
    (" , ", ", ", False), (" : ", ": ", False), (" ; ", "; ", False), (" / ", "/", False),
    (r"\" ([^\"]+) \"", r'"\1"', True), (r"\' ([^\']+) \'", r"'\1'", True),
    (r"\( ([^\(\)]+) \)", r"(\1)", True), (r"\[ ([^\[\]]+) \]", r"[\1]", True),
    ("$ ", "$", False), ("\u00a3 ", "\u00a3", False),
)


def wikitext(text: str) -> str:
    return _apply(text, WIKITEXT_RULES)


def ptb(text: str) -> str:
    return _apply(text, PTB_RULES)


def lm1b(text: str) -> str:
    return _apply(text, LM1B_RULES)


def lambada(text: str) -> str:
    return "\n" + text.replace("\u201c", '"').replace("\u201d", '"').strip()


def scientific_papers(text: str) -> str:
    return lm1b(wikitext(text))


DETOKENIZERS: dict[str, Callable[[str], str]] = {
    "wikitext": wikitext, "ptb": ptb, "lm1b": lm1b, "lambada": lambada,
    "scientific_papers": scientific_papers,
}


def get_detokenizer(name: str | None) -> Callable[[str], str] | None:
    if name in (None, "", "none"):
        return None
    if name not in DETOKENIZERS:
        raise ValueError(f"unknown detokenizer {name!r}: one of {sorted(DETOKENIZERS)} or null")
    return DETOKENIZERS[name]
