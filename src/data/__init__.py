"""Data pipeline: tokenizers, text sources, token caches, packing and resumable loaders.

Entry points: :class:`src.data.datamodule.LMDataModule` (+ ``DataProgress``),
:func:`src.data.tokenizers.build_tokenizer`, :func:`src.data.sources.load_texts`,
``python -m src.data.prepare`` (write memmap shards). Import submodules directly;
this package import stays light on purpose.
"""
