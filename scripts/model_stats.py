"""Parameter counts, FLOPs per token and FLOP-budget step counts of one backbone size.

    python scripts/model_stats.py model=113M [vocab_size=32001] [seq_len=2048]
        [global_batch_size=256] [flops_budget=6e18] [algo=mdlm] [algo.alpha_0=0.5] ...

Prints one JSON object. Parameters are exact: the real `DiT` is instantiated on the
`meta` device (no memory) and counted. FLOPs come from `src.models.flops` for every
convention (the `full` one counts what the algo runs per sequence: its
`training_passes`, from configs/algo/<algo>.yaml with any `algo.<key>=` overrides); with a
budget, `max_steps` per convention from `src.scaling.budget`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from src.algos.cost import algo_passes  # noqa: E402
from src.models.arch import Arch  # noqa: E402
from src.models.dit import DiT, count_params  # noqa: E402
from src.models.flops import CONVENTIONS, flops_per_token, param_counts  # noqa: E402
from src.scaling.budget import steps_for_budget  # noqa: E402

MODEL_DIR = ROOT / "configs" / "model"
DEFAULT_ARCH = vars(Arch())
DEFAULTS = {"vocab_size": 32001, "seq_len": 2048, "global_batch_size": 256, "flops_budget": None,
            "algo": "mdlm"}


class UsageError(Exception):
    """A bad command line; reported as one line on stderr."""


def _size_key(name: str) -> tuple[float, str]:
    try:
        return float(name.rstrip("M")), name
    except ValueError:
        return float("inf"), name


def available_sizes() -> list[str]:
    names = (p.stem for p in MODEL_DIR.glob("*.yaml") if not p.stem.startswith("_"))
    return sorted(names, key=_size_key)


def _compose(path: Path) -> DictConfig:
    """Merge a config file over its `defaults` (Hydra's order: defaults first, then _self_)."""
    own = OmegaConf.to_container(OmegaConf.load(path))
    merged = OmegaConf.create()
    for base in own.pop("defaults", []):  # type: ignore[union-attr]
        if base != "_self_":
            merged = OmegaConf.merge(merged, _compose(path.parent / f"{base}.yaml"))
    return OmegaConf.merge(merged, own)  # type: ignore[return-value]


def load_model_config(size: str) -> DictConfig:
    """configs/model/<size>.yaml composed with `_dit.yaml`, as `model=<size>` gives in Hydra."""
    path = MODEL_DIR / f"{size}.yaml"
    if size.startswith("_") or not path.is_file():
        raise UsageError(
            f"unknown model {size!r}: available sizes are {', '.join(available_sizes())}"
        )
    return _compose(path)


def load_algo_config(name: str, overrides: dict[str, object]) -> DictConfig:
    """configs/algo/<name>.yaml (composed as `algo=<name>` is in training) with `algo.<key>=`
    overrides; an unknown algo or key is a usage error."""
    from src.runs.identity import compose_train

    names = sorted(p.stem for p in (ROOT / "configs" / "algo").glob("*.yaml"))
    if name not in names:
        raise UsageError(f"unknown algo {name!r}: choose one of {', '.join(names)}")
    try:
        cfg = compose_train([f"algo={name}", *(f"algo.{k}={v}" for k, v in overrides.items())])
    except Exception as err:  # noqa: BLE001 - Hydra's override errors: one line
        raise UsageError(f"algo {name!r}: {str(err).splitlines()[0]}") from None
    return cfg.algo


def _value(text: str) -> object:
    """A key=value override's value: int, float (6e18), true/false, null, else the string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return None if lowered in ("null", "none") else text


def parse_args(argv: list[str]) -> dict[str, object]:
    """Hydra-style key=value arguments; unknown keys are a usage error."""
    args: dict[str, object] = dict(DEFAULTS)
    algo_kwargs: dict[str, object] = {}
    moe: dict[str, object] = {}
    for item in argv:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"arguments are key=value, got {item!r}")
        if key.startswith("model.moe."):
            moe[key[len("model.moe."):]] = _value(text)
        elif key.startswith("algo."):
            algo_kwargs[key[len("algo."):]] = _value(text)
        elif key in DEFAULTS or key == "model":
            args[key] = text if key in ("model", "algo") else _value(text)
        else:
            raise UsageError(
                f"unknown argument {key!r}: use model, {', '.join(DEFAULTS)}, model.moe.<key> "
                "or algo.<key>"
            )
    if "model" not in args:
        raise UsageError(
            f"model=<size> is required: available sizes are {', '.join(available_sizes())}"
        )
    args["algo_kwargs"], args["moe"] = algo_kwargs, moe
    return args


def model_stats(args: dict[str, object]) -> dict[str, object]:
    """The JSON-ready statistics of `args` (see module docstring)."""
    cfg = load_model_config(str(args["model"]))
    vocab, seq_len = int(args["vocab_size"]), int(args["seq_len"])  # type: ignore[arg-type]
    batch = int(args["global_batch_size"])  # type: ignore[arg-type]
    moe = {**dict(cfg.get("moe") or {}), **args.get("moe", {})}  # type: ignore[arg-type]
    arch = OmegaConf.to_container(cfg.arch) if cfg.get("arch") is not None else None
    with torch.device("meta"):
        model = DiT(vocab, cfg.dim, cfg.n_blocks, cfg.n_heads, cond_dim=cfg.cond_dim,
                    max_seq_len=cfg.max_seq_len, adaln=cfg.adaln, moe=moe, arch=arch)
    shape = dict(dim=cfg.dim, n_blocks=cfg.n_blocks, n_heads=cfg.n_heads, vocab_size=vocab,
                 seq_len=seq_len, cond_dim=cfg.cond_dim, adaln=cfg.adaln, moe=moe, arch=arch)
    passes = algo_passes(load_algo_config(str(args["algo"]), args["algo_kwargs"]), seq_len)
    fpt = {c: flops_per_token(convention=c, passes=passes, **shape) for c in CONVENTIONS}
    out: dict[str, object] = {
        "model": cfg.name, "dim": cfg.dim, "n_blocks": cfg.n_blocks, "n_heads": cfg.n_heads,
        "adaln": cfg.adaln, "vocab_size": vocab, "seq_len": seq_len, "global_batch_size": batch,
        "algo": args["algo"], **args["algo_kwargs"], **count_params(model),
        **({"moe": moe, **{k: v for k, v in param_counts(**{
            k: shape[k] for k in ("dim", "n_blocks", "vocab_size", "cond_dim", "adaln", "moe",
                                  "n_heads", "arch")}
        ).items() if k.startswith("active")}} if moe.get("num_experts") else {}),
        **({"arch": {k: v for k, v in arch.items() if v != DEFAULT_ARCH[k]}}
           if arch and not Arch.build(arch).is_default else {}),
        "flops_per_token": fpt,
    }
    if args["flops_budget"] is not None:
        budget = float(args["flops_budget"])
        out["flops_budget"] = budget
        steps = {}
        for convention, value in fpt.items():
            try:
                steps[convention] = steps_for_budget(budget, value, batch, seq_len)
            except ValueError as err:
                raise ValueError(f"convention {convention!r}: {err}") from None
        out["max_steps"] = steps
    return out


def main(argv: list[str]) -> int:
    try:
        print(json.dumps(model_stats(parse_args(argv))))
    except (UsageError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
