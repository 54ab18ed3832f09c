"""Write a trained run as a self-contained Hugging Face model folder.

    python -m src.export ckpt=<run dir | .ckpt> out=<folder>

The folder holds config.json (with `auto_map` for `trust_remote_code`), model.safetensors
(the backbone under a `backbone.` prefix, as MDLM's HF checkpoints; the EMA weights when
the run keeps an EMA), the tokenizer files, and the modeling code: src/export/hf_modeling.py
and the repo modules it runs on, vendored (src/export/vendor.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.algos.inference import ALGO_ARGS
from src.checkpoints import LoadedRun, load_run
from src.export.hf_modeling import SAMPLER_CLASSES, DLMConfig, DLMForCausalLM, DLMForMaskedLM
from src.export.tokenizer import save_tokenizer
from src.export.vendor import vendor
from src.samplers.factory import sampler_config
from src.utils.cli import group_options

MODELING_FILE = "modeling_dlm"


def _class_name(target: str) -> str:
    return str(target).rsplit(".", 1)[-1]


def sampler_spec(cfg: dict[str, Any]) -> dict[str, Any]:
    """A sampler config (`_target_` + arguments) as {"class": name, **arguments}."""
    spec = {k: v for k, v in cfg.items() if k not in ("_target_", "defaults")}
    return {"class": _class_name(cfg["_target_"]), **spec}


def sampler_table(algo: str, run_sampler: DictConfig) -> dict[str, dict[str, Any]]:
    """Every configs/sampler entry that can sample `algo`, plus "default" = the run's own."""
    table = {"default": sampler_spec(OmegaConf.to_container(run_sampler, resolve=True))}
    for name in group_options("sampler"):
        spec = sampler_spec(OmegaConf.to_container(sampler_config(name), resolve=True))
        if algo in SAMPLER_CLASSES[spec["class"]].algos:
            table[name] = spec
    return table


def algo_spec(cfg: DictConfig, vocab_size: int, mask_id: int, eos_id: int) -> dict[str, Any]:
    """The `build_denoiser` spec of a run (src/algos/inference.py)."""
    algo = OmegaConf.to_container(cfg.algo, resolve=True)
    name = str(algo["name"])
    if name not in ALGO_ARGS:
        raise ValueError(f"algo={name} cannot be exported: one of {sorted(ALGO_ARGS)}")
    spec: dict[str, Any] = {"algo": name, "vocab_size": vocab_size, "mask_id": mask_id,
                            "eos_id": eos_id, **{k: algo[k] for k in ALGO_ARGS[name]}}
    if name != "ar":
        noise = dict(algo["noise"])
        spec["noise"] = {"class": _class_name(noise.pop("_target_")), **noise}
    return spec


def dit_kwargs(cfg: DictConfig, vocab_size: int) -> dict[str, Any]:
    """The DiT constructor arguments of a run (attention backend back to `auto`)."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("_target_", None)
    model.pop("name", None)
    return {**model, "vocab_size": vocab_size, "attn_backend": "auto"}


def hf_config(run: LoadedRun) -> DLMConfig:
    tok = run.datamodule.tokenizer
    name = run.algo.name
    causal = name == "ar"
    head = "AutoModelForCausalLM" if causal else "AutoModelForMaskedLM"
    cls = (DLMForCausalLM if causal else DLMForMaskedLM).__name__
    return DLMConfig(
        dit=dit_kwargs(run.cfg, tok.vocab_size),
        algo=algo_spec(run.cfg, tok.vocab_size, tok.mask_id, tok.eos_id),
        samplers=sampler_table(name, run.cfg.sampler), seq_len=int(run.cfg.data.seq_len),
        vocab_size=tok.vocab_size, eos_token_id=tok.eos_id, bos_token_id=tok.eos_id,
        pad_token_id=tok.pad_id, mask_token_id=tok.mask_id, architectures=[cls],
        auto_map={"AutoConfig": f"{MODELING_FILE}.DLMConfig", "AutoModel": f"{MODELING_FILE}.{cls}",
                  head: f"{MODELING_FILE}.{cls}"},
        torch_dtype="float32",
        # What src.export.import_model needs to rebuild the exact tokenizer.
        lab={"tokenizer": {"kind": str(run.cfg.data.tokenizer.kind), "name": tok.name,
                           "vocab_size": tok.vocab_size, "fingerprint": tok.fingerprint}},
    )


def export(ckpt: str | Path, out: str | Path) -> dict[str, Any]:
    """Export `ckpt` (run dir or .ckpt) to the folder `out`; returns a summary."""
    run = load_run(ckpt)  # EMA weights swapped in when the run has them
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = hf_config(run)
    model = (DLMForCausalLM if run.algo.name == "ar" else DLMForMaskedLM)(config)
    model.backbone.load_state_dict(run.algo.backbone.state_dict())
    model.save_pretrained(str(out), safe_serialization=True)
    # save_pretrained wrote the in-repo class names; point auto_map at the vendored file.
    (out / "config.json").write_text(config.to_json_string(use_diff=False), encoding="utf-8")
    code = vendor("src.export.hf_modeling", out, MODELING_FILE)
    tokenizer = save_tokenizer(run.datamodule.tokenizer, out)
    summary = {"out": str(out), "algo": run.algo.name, "checkpoint": str(run.checkpoint_path),
               "ema": run.algo.ema is not None, "code": sorted(code), "tokenizer": tokenizer,
               "params": sum(p.numel() for p in model.parameters())}
    (out / "export_info.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
