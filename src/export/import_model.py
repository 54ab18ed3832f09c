"""Bring a published checkpoint into the lab as a run folder.

    python -m src.export.import_model source=<file | folder> out=<run dir> [overrides...]

`source` is one of
  (a) a reference DiT state dict (MDLM / DUO / scaling-dllms `models/dit.py` keys), as a
      .safetensors / .pt / .bin / Lightning .ckpt file (the head count is not in the
      weights: pass model.n_heads=...);
  (b) a Hugging Face folder as MDLM / DUO publish them (config.json + model.safetensors
      or pytorch_model.bin, keys under `backbone.`), e.g. a local snapshot of
      kuleshov-group/mdlm-owt, or `hf:kuleshov-group/mdlm-owt` to download it;
  (c) a folder written by `python -m src.export`;
  (d) a GIDD Hugging Face folder (`model_type: gidd`: gidd-mask-3b, gidd-unif-3b, ...);
  (e) a MegaDLMs Hugging Face conversion (`DiffLM`, JinjieNi/MegaDLMs megatron_to_hf_te.py);
  (f) a Megatron-Core legacy checkpoint (the folder with latest_checkpointed_iteration.txt, an
      iter_* folder or its model_optim_rng.pt; src/export/megatron.py): pass its tokenizer.
GIDD and MegaDLMs networks become backbone options (src/export/published.py,
src/models/arch.py); their tokenizer is the folder's own when it has one, and its [MASK] id
must be the one the model was trained with.
The run folder gets checkpoints/last.ckpt with a full run config, so `src.evaluate`,
`src.sample`, `src.export` and `training.init_from=<out>` read it like a trained run.
Further arguments are training-config overrides (e.g. algo=duo, data=text_files,
data.tokenizer.kind=gpt2, algo.time_conditioning=true). Nothing runs code from the source:
tensors load with weights_only / safetensors.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from src.builders import build_algo, build_backbone, build_datamodule
from src.export.megatron import (
    is_megatron,
    legacy_file,
    load_legacy,
    megatron_settings,
    megatron_state,
)
from src.export.published import (
    gidd_settings,
    gidd_state,
    is_gidd,
    is_megadlm,
    megadlm_settings,
    megadlm_state,
)
from src.export.reference import (
    from_reference,
    is_reference,
    rotary_head_dim,
    shape_facts,
    strip_prefixes,
)
from src.resume.checkpoint_file import save_checkpoint_file
from src.runs.file_config import file_overrides
from src.runs.identity import compose_train
from src.utils.cli import CONFIG_DIR, UserError, group_options

logger = logging.getLogger(__name__)

#: Hugging Face `model_type` of the reference family -> this repo's algo.
REFERENCE_ALGOS = {"mdlm": "mdlm", "udlm": "duo", "duo": "duo"}
GPT2_VOCAB = 50258  # GPT-2's 50257 ids + [MASK], what MDLM / DUO OpenWebText models use
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class Source:
    """What a source says about itself; `overrides` rebuild it as a training config."""

    state: dict[str, torch.Tensor]
    origin: str
    overrides: list[str] = field(default_factory=list)
    tokenizer: dict[str, Any] | None = None  # the checkpoint's `tokenizer` record
    head_dim: int | None = None  # known from a reference rotary buffer (rotary_head_dim)
    mask_id: int | None = None  # the [MASK] id the publisher trained with (GIDD, MegaDLMs)
    padded_vocab: bool = False  # rows past the tokenizer's ids may be padding (Megatron's)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a torch file, never running pickled code."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises several types for unsafe files
        raise UserError(f"{path}: cannot be read with weights_only=True ({str(err).splitlines()[0][:120]}): "
                        "re-save its state dict alone, torch.save(ckpt['state_dict'], "
                        "'weights.pt'), and import that") from None
    if isinstance(obj, dict) and "run_config" in obj and "global_step" in obj:
        raise UserError(f"{path} was written by src.train: it needs no import; use it directly "
                        f"(src.evaluate / src.sample / src.export ckpt=<its run dir or this file>, "
                        f"training.init_from=...)")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: not a state dict of tensors")
    return obj


def _weights_in(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's weights: one file, or the shards its `*.index.json` lists."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return load_tensors(folder / name)
        index = folder / f"{name}.index.json"
        if index.is_file():
            return _sharded(folder, index)
    raise UserError(f"{folder}: no {' or '.join(WEIGHT_FILES)} (or their .index.json)")


def _sharded(folder: Path, index: Path) -> dict[str, torch.Tensor]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{index}: not a weight index ({err})") from None
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        path = folder / str(shard)
        if path.parent != folder or not path.is_file():  # names only, inside the folder
            raise UserError(f"{index}: shard {str(shard)[:80]!r} is not a file in {folder}")
        state.update(load_tensors(path))
    return state


def noise_config(class_name: str) -> str:
    """The configs/noise file whose `_target_` is that schedule class."""
    for name in group_options("noise"):
        target = str(OmegaConf.load(CONFIG_DIR / "noise" / f"{name}.yaml")["_target_"])
        if target.rsplit(".", 1)[-1] == class_name:
            return name
    raise UserError(f"no configs/noise file for schedule {class_name!r}")


def dotted(prefix: str, values: dict[str, Any]) -> list[str]:
    """Hydra overrides `prefix.key=value` for a nested dict (None as null)."""
    out = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += dotted(f"{prefix}.{key}", value)
        else:
            out.append(f"{prefix}.{key}={'null' if value is None else value}")
    return out


def _lab_export(folder: Path, config: dict[str, Any]) -> Source:
    """An src.export folder. Its config.json is data: every value becomes a checked literal
    override (src/runs/file_config.py), never override grammar."""
    state = {k.removeprefix("backbone."): v for k, v in _weights_in(folder).items()}
    where = str(folder / "config.json")
    dit, algo = dict(config.get("dit") or {}), dict(config.get("algo") or {})
    name = algo.get("algo")
    if name not in group_options("algo"):
        raise UserError(f"{where}: algo.algo={str(name)[:40]!r} is not one of "
                        f"{', '.join(group_options('algo'))}: re-export it with src.export")
    overrides = [f"algo={name}",
                 *file_overrides(where, "data", {"seq_len": config.get("seq_len")}),
                 *file_overrides(where, "model", {k: v for k, v in dit.items()
                                                  if k not in ("vocab_size", "attn_backend")}),
                 *file_overrides(where, "algo", {k: v for k, v in algo.items() if k not in
                                                 ("algo", "vocab_size", "mask_id", "eos_id",
                                                  "noise")})]
    if "noise" in algo:
        noise = dict(algo["noise"])
        overrides.append(f"noise@algo.noise={noise_config(str(noise.pop('class')))}")
        overrides += file_overrides(where, "algo.noise", noise)
    record = dict(config.get("lab", {}).get("tokenizer") or {})
    kind = record.pop("kind", None)
    if kind in ("byte", "gpt2"):  # their size is their own: the data config's bpe size is not
        overrides += [f"data.tokenizer.kind={kind}", "data.tokenizer.vocab_size=null"]
    elif kind is not None:  # a trained BPE or an hf tokenizer: the folder's tokenizer.json
        record["json"] = (folder / "tokenizer.json").read_text(encoding="utf-8")
        overrides += ["data.tokenizer.kind=bpe",
                      f"data.tokenizer.name_or_path={folder / 'tokenizer.json'}"]
    return Source(state, f"src.export folder {folder}", overrides, record or None)


def _reference_folder(folder: Path, config: dict[str, Any]) -> Source:
    raw = _weights_in(folder)
    state = from_reference(raw)
    model_type = str(config.get("model_type", "mdlm"))
    where = str(folder / "config.json")
    overrides = [f"algo={REFERENCE_ALGOS.get(model_type, 'mdlm')}"]
    if "n_heads" in config:
        overrides += file_overrides(where, "model", {"n_heads": config["n_heads"]})
    if "model_length" in config:
        overrides += file_overrides(where, "data", {"seq_len": config["model_length"]})
    if "time_conditioning" in config:
        overrides.append(f"algo.time_conditioning={str(bool(config['time_conditioning'])).lower()}")
    return Source(state, f"{model_type} Hugging Face folder {folder}", overrides,
                  head_dim=rotary_head_dim(raw))


def _published_folder(folder: Path, config: dict[str, Any]) -> Source:
    """A GIDD or MegaDLMs folder: renamed weights and the settings of its network."""
    where = str(folder / "config.json")
    raw = _weights_in(folder)
    if is_gidd(config):
        overrides, mask_id = gidd_settings(config, where)
        state, name = gidd_state(raw, where), "GIDD"
    else:
        overrides, mask_id = megadlm_settings(config, where)
        state = megadlm_state(raw, where, bool(config.get("tie_word_embeddings", False)))
        name = "MegaDLMs"
    if any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        overrides += ["data.tokenizer.kind=hf", f"data.tokenizer.name_or_path={folder}"]
    heads = int(config["num_attention_heads"])
    return Source(state, f"{name} Hugging Face folder {folder}", overrides,
                  head_dim=int(config["hidden_size"]) // heads, mask_id=mask_id,
                  padded_vocab=True)


def _megatron(path: Path) -> Source:
    """A Megatron-Core legacy checkpoint: its args set the network, its tensors are renamed."""
    file = legacy_file(path)
    args, model = load_legacy(file)
    where = str(file)
    heads = int(args.get("num_attention_heads") or 0)
    state = megatron_state(model, args, where)
    return Source(state, f"Megatron checkpoint {file}", megatron_settings(args, where),
                  head_dim=int(args["hidden_size"]) // heads if heads else None,
                  padded_vocab=True)


def hub_snapshot(repo_id: str) -> Path:
    """Download a hub model's config and weights (needs the network or the HF cache)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=[
            "config.json", "*.safetensors", "*.bin", "*.index.json", "tokenizer*",
            "special_tokens_map.json", "vocab.json", "merges.txt"]))
    except Exception as err:  # noqa: BLE001 - one actionable line for any hub failure
        raise UserError(f"cannot download {repo_id} from the Hugging Face hub "
                        f"({type(err).__name__}): it needs the network; or download it "
                        f"elsewhere and pass source=<local folder>") from None


def read_source(path: str | Path) -> Source:
    """Recognise the source's format; see the module docstring. `hf:<repo id>` downloads a
    hub model first."""
    if str(path).startswith("hf:"):
        path = hub_snapshot(str(path)[3:])
    path = Path(path)
    if is_megatron(path):
        return _megatron(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: a folder needs a config.json (a Hugging Face model folder)")
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path / 'config.json'} is not valid JSON ({err}): fix or "
                            f"re-download that file") from None
        if not isinstance(config, dict):
            raise UserError(f"{path / 'config.json'} holds a {type(config).__name__}, not the "
                            f"JSON object of a model config")
        if config.get("model_type") == "dlm_lab":
            return _lab_export(path, config)
        if is_gidd(config) or is_megadlm(config):
            return _published_folder(path, config)
        return _reference_folder(path, config)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: pass source=<file or folder>")
    state = load_tensors(path)
    if is_reference(state):
        return Source(from_reference(state), f"reference DiT state dict {path}",
                      head_dim=rotary_head_dim(state))
    state = strip_prefixes(state)
    if "embed" not in state:
        raise UserError(f"{path}: neither a reference DiT nor this repo's backbone state dict")
    return Source(state, f"state dict {path}")


def training_overrides(source: Source, user: list[str]) -> list[str]:
    """The source's own settings, its sizes read off the weights, then the user's."""
    facts = shape_facts(source.state)
    sizes = [f"model.dim={facts['dim']}", f"model.n_blocks={facts['n_blocks']}",
             f"model.adaln={str(facts['adaln']).lower()}"]
    if "cond_dim" in facts:
        sizes.append(f"model.cond_dim={facts['cond_dim']}")
    own = [*sizes, *source.overrides]
    if facts["vocab_size"] == GPT2_VOCAB and not any("tokenizer" in o for o in own + user):
        own.append("data.tokenizer.kind=gpt2")
    base = ["model=0.13M", "model.name=imported", "training.ema=0", "eval.num_samples=0"]
    return [*base, *own, *user]


def check_head_count(src: Source, dim: int, n_heads: int) -> None:
    """The head split changes every logit but no weight shape: check it against the rotary
    buffer where the file has one, else say once that it is taken on trust."""
    if src.head_dim is None:
        if not src.origin.startswith("src.export folder"):  # our exports store their own
            logger.warning("%s: model.n_heads=%d cannot be verified (the weights have no "
                           "rotary_emb.inv_freq): a wrong head count gives wrong logits "
                           "without an error", src.origin, n_heads)
        return
    if dim % n_heads or dim // n_heads != src.head_dim:
        right = dim // src.head_dim
        raise UserError(f"{src.origin}: model.n_heads={n_heads} gives head dim "
                        f"{dim / n_heads:g}, but its rotary_emb.inv_freq was built for head dim "
                        f"{src.head_dim}: pass model.n_heads={right}")


def import_model(source: str | Path, out: str | Path, overrides: list[str]) -> dict[str, Any]:
    """Write `out`/checkpoints/last.ckpt from `source`; returns a summary."""
    src = read_source(source)
    full = training_overrides(src, overrides)
    if not any(o.startswith("model.n_heads=") for o in full):
        raise UserError("the head count is not stored in the weights: pass model.n_heads=<heads> "
                        "(the reference's config.model.n_heads)")
    cfg = compose_train(full)
    check_head_count(src, int(cfg.model.dim), int(cfg.model.n_heads))
    if int(cfg.model.max_seq_len) < int(cfg.data.seq_len):
        cfg.model.max_seq_len = int(cfg.data.seq_len)
    dm = build_datamodule(cfg)
    tok = dm.tokenizer
    vocab = shape_facts(src.state)["vocab_size"]
    if src.mask_id is not None and src.mask_id != tok.mask_id:
        raise UserError(f"{src.origin} was trained with [MASK] = id {src.mask_id}, tokenizer "
                        f"{tok.name} has it at {tok.mask_id}: pass the model's own tokenizer "
                        f"(data.tokenizer.kind=hf data.tokenizer.name_or_path=<its folder>)")
    if src.padded_vocab and vocab > tok.vocab_size:
        src.state = drop_padded_rows(src.state, tok.vocab_size, src.origin)
        vocab = tok.vocab_size
    if tok.vocab_size != vocab:
        raise UserError(f"the weights have {vocab} token ids, tokenizer {tok.name} has "
                        f"{tok.vocab_size}: pass the model's tokenizer (data.tokenizer.kind=gpt2 "
                        "| byte | hf with data.tokenizer.name_or_path=...)")
    algo = build_algo(cfg, tok, build_backbone(cfg, tok.vocab_size))
    expected = algo.backbone.state_dict()
    for key, tensor in src.state.items():
        if key in expected and tuple(tensor.shape) != tuple(expected[key].shape):
            raise UserError(f"{src.origin}: {key} has shape {tuple(tensor.shape)}, model "
                            f"dim={cfg.model.dim} n_blocks={cfg.model.n_blocks} "
                            f"n_heads={cfg.model.n_heads} expects {tuple(expected[key].shape)}: "
                            f"pass the model's own sizes (model=<size> or model.dim=...)")
    missing, unexpected = algo.backbone.load_state_dict(src.state, strict=False)
    if missing or unexpected:
        raise UserError(f"{src.origin} does not fit model dim={cfg.model.dim} "
                        f"n_blocks={cfg.model.n_blocks}: missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]}")
    record = src.tokenizer or {"name": tok.name, "vocab_size": tok.vocab_size,
                               "fingerprint": tok.fingerprint}
    ckpt = {"state_dict": algo.state_dict(), "run_config": OmegaConf.to_container(cfg, resolve=True),
            "global_step": 0, "tokenizer": record, "imported_from": src.origin}
    path = Path(out) / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint_file(ckpt, path)
    summary = {"out": str(out), "checkpoint": str(path), "source": src.origin,
               "algo": str(cfg.algo.name), "dim": int(cfg.model.dim),
               "n_blocks": int(cfg.model.n_blocks), "n_heads": int(cfg.model.n_heads),
               "vocab_size": tok.vocab_size, "seq_len": int(cfg.data.seq_len)}
    (Path(out) / "import.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def drop_padded_rows(state: dict[str, torch.Tensor], vocab: int, origin: str
                     ) -> dict[str, torch.Tensor]:
    """Embedding and readout rows past the tokenizer's ids: Megatron pads the vocabulary to a
    multiple of 128 with ids no tokenizer emits. Dropping them removes those ids from every
    softmax (the publisher's own sampler could still draw them); said once, loudly."""
    out = dict(state)
    for key in ("embed", "final.linear.weight", "final.linear.bias", "final.bias"):
        if key in out:
            out[key] = out[key][:vocab]
    logger.warning("%s: its %d-id vocabulary is padded past the tokenizer's %d ids; the padded "
                   "rows are dropped (their ids leave every softmax)", origin,
                   int(state["embed"].shape[0]), vocab)
    return out


def as_run(ckpt: str | Path) -> Path:
    """A run dir / .ckpt as given; a Hugging Face folder imported into a temporary run dir
    (what evaluate / lm_eval / zeroshot read)."""
    path = Path(ckpt)
    if path.is_dir() and (path / "config.json").is_file():
        out = Path(tempfile.mkdtemp(prefix="dlm_import_"))
        import_model(path, out, [])
        return out
    return path


def main(argv: list[str]) -> None:
    from src.utils.cli import one_line_errors

    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: python -m src.export.import_model source=<file | folder> out=<run dir> "
              f"[training overrides]\n{__doc__}")
        return
    args = dict(a.split("=", 1) for a in argv if a.split("=", 1)[0] in ("source", "out"))
    rest = [a for a in argv if a.split("=", 1)[0] not in ("source", "out")]
    if "source" not in args or "out" not in args:
        sys.exit("usage: python -m src.export.import_model source=<file | folder> "
                 "out=<run dir> [training overrides, e.g. model.n_heads=12]")
    print(json.dumps(one_line_errors(import_model)(args["source"], args["out"], rest), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
