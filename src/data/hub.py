"""Hugging Face hub datasets (openwebtext, fineweb-edu, lm1b, SlimPajama, ...)."""

from __future__ import annotations

import logging

from src.data.corpus import VAL_ALIASES, Corpus, carve, check_field

logger = logging.getLogger(__name__)

# Datasets with only train/test (lm1b) validate on test, as the MDLM/DUO papers do.
_HUB_VAL_NAMES = VAL_ALIASES + ("test",)


def load_hub(
    name: str | None,
    config: str | None,
    split: str,
    *,
    text_field: str,
    cache_dir: str | None,
    streaming: bool,
    fraction: float,
) -> Corpus:
    """One split of a hub dataset; validation is carved from train when the dataset has none.

    Raises:
        OSError: The dataset cannot be loaded (no network and no cache), naming the fix.
        ValueError: No name, or an unknown split.
    """
    import datasets

    if not name:
        raise ValueError("data source 'hf' needs a dataset name; set data.name=<hub dataset id>")
    try:
        dd = datasets.load_dataset(name, config, cache_dir=cache_dir, streaming=streaming)
    except Exception as err:  # noqa: BLE001 - one actionable message for any hub failure
        raise OSError(
            f"could not load hub dataset {name!r} (config {config!r}): "
            f"{type(err).__name__}: {err}. "
            "It needs network or a populated data.cache_dir; offline, write token shards "
            "elsewhere with `python -m src.data.prepare` and use data=memmap"
        ) from err
    val_name = next((s for s in _HUB_VAL_NAMES if s in dd), None)
    if split in ("train", "validation") and val_name is None:
        if "train" not in dd:
            raise ValueError(
                f"hub dataset {name!r} has splits {list(dd)} and no 'train' to carve from"
            )
        logger.info("%s has no validation split: carving %.3g%% of train", name, 100 * fraction)
        ds = carve(dd["train"], split, fraction)
    else:
        real = val_name if split == "validation" else split
        if real not in dd:
            raise ValueError(f"hub dataset {name!r} has splits {list(dd)}, not {split!r}")
        if real != split:
            logger.info("%s: using its %r split as validation", name, real)
        ds = dd[real]
    check_field(ds, text_field)
    return Corpus(ds, text_field)
