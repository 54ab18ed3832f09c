"""A run's tokenizer as Hugging Face tokenizer files (tokenizer.json + configs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as RustTokenizer
from tokenizers import decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from src.data.token_bytes import byte_level_alphabet
from src.data.tokenizer_files import EOS_TOKEN, MASK_TOKEN
from src.data.tokenizers import ByteTokenizer, FastTokenizer, HFTokenizer, Tokenizer


def byte_backend() -> RustTokenizer:
    """The byte tokenizer as a `tokenizers` BPE with no merges: id = byte value (each
    byte spelled by GPT-2's printable alphabet), then EOS = 256, [MASK] = 257."""
    vocab = {char: byte for char, byte in byte_level_alphabet().items()}
    backend = RustTokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([EOS_TOKEN, MASK_TOKEN])
    return backend


def hf_tokenizer(tok: Tokenizer) -> Any:
    """A transformers tokenizer giving the same ids as `tok` (EOS, [MASK], padding = EOS;
    special-token strings inside text stay text, as in training)."""
    if isinstance(tok, HFTokenizer):
        return tok._tok
    if isinstance(tok, ByteTokenizer):
        backend = byte_backend()
    elif isinstance(tok, FastTokenizer):
        backend = tok._tok
    else:
        raise TypeError(f"no Hugging Face form for {tok!r}")
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS_TOKEN,
                                   bos_token=EOS_TOKEN, mask_token=MASK_TOKEN,
                                   pad_token=EOS_TOKEN, split_special_tokens=True)


def save_tokenizer(tok: Tokenizer, out: Path) -> list[str]:
    """Write the tokenizer files into `out`; returns their names."""
    return [Path(p).name for p in hf_tokenizer(tok).save_pretrained(str(out))]
