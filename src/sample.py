"""Generate samples from a checkpoint and score them; writes one JSON file.

    python -m src.sample ckpt=<run_dir> num_samples=16 steps=128
    python -m src.sample ckpt=<run_dir> prompt="ROMEO:" judge=ckpt:<ar_run_dir>
    python -m src.sample ckpt=<run_dir> judge=gpt2          # any HF causal LM, name or path
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from src.checkpoints import load_run
from src.runs.preflight import check_device, check_required
from src.samplers.factory import build_sampler
from src.eval.sample_metrics import (
    CheckpointJudge,
    HFJudge,
    generative_perplexity,
    mean_unigram_entropy,
)
from src.results import write_json
from src.utils.resolvers import register_resolvers
from src.utils.cli import CONFIG_DIR, one_line_errors, run_cli
from src.utils.runtime import inference_autocast, setup_torch

log = logging.getLogger(__name__)
register_resolvers()


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_judge(spec: str, device: torch.device) -> HFJudge | CheckpointJudge:
    """`ckpt:<run_dir or file>` = one of our AR runs; anything else = an HF causal LM."""
    if spec.startswith("ckpt:"):
        run = load_run(spec[len("ckpt:"):], device=device)
        if not hasattr(run.algo, "causal_logits"):
            raise SystemExit(f"judge {spec} is a {run.algo.name} run: the judge must be an AR run")
        return CheckpointJudge(run.algo, run.datamodule.tokenizer)
    return HFJudge(spec, device=str(device))


def partial_sampler_overrides(argv: list[str]) -> list[str]:
    """`sampler.top_p=0.9` without `sampler=<name>` edits the run's own sampler: Hydra needs
    `+sampler.top_p=0.9` for a key of a group that is not selected."""
    if any(a.split("=", 1)[0].lstrip("+~") == "sampler" for a in argv):
        return argv
    return [f"+{a}" if a.startswith("sampler.") else a for a in argv]


def sampler_config(cfg: DictConfig, run_sampler: DictConfig) -> DictConfig:
    """The sampler to use: `sampler=<name>` (+ its overrides), or the run's own sampler with
    `sampler.<key>=...` applied."""
    chosen = cfg.get("sampler")
    if not chosen:
        return run_sampler
    if "_target_" in chosen:
        return chosen
    unknown = sorted(set(chosen) - set(run_sampler))
    if unknown:
        options = ", ".join(k for k in run_sampler if k != "_target_")
        raise ValueError(f"sampler.{unknown[0]} is not an option of this run's sampler "
                         f"({run_sampler._target_}): its options are {options}")
    return OmegaConf.merge(run_sampler, chosen)


def check_sample_config(cfg: DictConfig) -> None:
    check_required(cfg)
    for key in ("num_samples", "batch_size"):
        if not int(cfg[key]) >= 1:
            raise ValueError(f"{key}={cfg[key]} must be >= 1")
    if cfg.steps is not None and not int(cfg.steps) >= 1:
        raise ValueError(f"steps={cfg.steps} must be >= 1 (or null for the sampler's default)")
    check_device(cfg.device, "device")


def sampler_label(used: dict[str, Any]) -> str:
    """The configs/sampler name whose settings `used` are (steps aside), else the sampler
    class plus a hash of its settings: every setting gets its own samples file."""
    settings = {k: v for k, v in used.items() if k != "steps"}
    for path in sorted((CONFIG_DIR / "sampler").glob("*.yaml")):
        named = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        if {k: v for k, v in named.items() if k != "steps"} == settings:
            return path.stem
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return f"{str(used['_target_']).rsplit('.', 1)[-1]}-{digest[:8]}"


def output_path(cfg: DictConfig, run_dir: Path, sampler_name: str, steps: Any) -> Path:
    """`out=` as given, else a file in the run folder named after what was sampled (another
    command's samples are never overwritten)."""
    if cfg.out:
        return Path(cfg.out)
    what = f"{sampler_name}_steps{steps}_n{cfg.num_samples}_seed{cfg.seed}"
    if cfg.prompt or cfg.suffix:
        text = f"{cfg.prompt or ''}|{cfg.suffix or ''}"
        what += "_prompt" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return run_dir / "samples" / f"{what}.json"


def sample(cfg: DictConfig) -> dict[str, Any]:
    check_sample_config(cfg)
    device = _device(cfg.device)
    run = load_run(cfg.ckpt, device=device)
    tok, algo = run.datamodule.tokenizer, run.algo
    sampler_cfg = sampler_config(cfg, run.cfg.sampler)
    sampler = build_sampler(sampler_cfg, steps=cfg.steps)
    sampler.check_algo(algo)  # before the judge is loaded and anything is sampled
    judge = make_judge(str(cfg.judge), device) if cfg.judge else None
    length = int(cfg.length or run.cfg.data.seq_len)
    prompt = torch.tensor(tok.encode(cfg.prompt)) if cfg.prompt else None
    infill = None
    if cfg.suffix:
        start = [] if prompt is None else prompt.tolist()
        end = tok.encode(cfg.suffix)
        middle = length - len(start) - len(end)
        if middle < 1:
            raise SystemExit(f"prompt + suffix ({len(start) + len(end)} tokens) leave nothing to "
                             f"generate in length {length}: raise length or shorten them")
        infill, prompt = torch.tensor(start + [tok.mask_id] * middle + end), None

    g = torch.Generator(device=device).manual_seed(int(cfg.seed))
    ids, t0, nfe = [], time.time(), 0
    for start in range(0, int(cfg.num_samples), int(cfg.batch_size)):
        n = min(int(cfg.batch_size), int(cfg.num_samples) - start)
        with inference_autocast(run.cfg.trainer.precision, device):  # the training precision
            ids.append(sampler.sample(algo, n, length, prompt=prompt, infill=infill,
                                      generator=g).cpu())
        nfe += getattr(sampler, "nfe", 0)
    ids_t = torch.cat(ids)
    texts = [tok.decode(row.tolist()) for row in ids_t]
    used = OmegaConf.to_container(sampler_cfg, resolve=True)
    if cfg.steps is not None and "steps" in used:
        used["steps"] = int(cfg.steps)
    run_dir = run.checkpoint_path.parent.parent if run.checkpoint_path.parent.name == \
        "checkpoints" else run.checkpoint_path.parent
    out: dict[str, Any] = {
        "checkpoint": str(run.checkpoint_path), "algo": algo.name, "sampler": used,
        "num_samples": len(texts), "length": length, "seconds": time.time() - t0, "nfe": nfe,
        "unigram_entropy": mean_unigram_entropy(ids_t.tolist()),
        "samples": texts, "ids": ids_t.tolist(),
        "out": str(output_path(cfg, run_dir, sampler_label(used), used.get("steps", "na"))),
    }
    if judge is not None:
        out["judge"] = str(cfg.judge)
        out["gen_ppl"] = generative_perplexity(judge, texts)
    return out


@hydra.main(config_path="../configs", config_name="sample", version_base="1.3")
def main(cfg: DictConfig) -> None:
    setup_torch()
    result = one_line_errors(sample)(cfg)
    write_json(Path(result["out"]), result)
    brief = {k: v for k, v in result.items() if k not in ("samples", "ids")}
    print(json.dumps(brief, indent=2))
    for i, text in enumerate(result["samples"][:3]):
        print(f"--- sample {i} ---\n{text[:300]}")


if __name__ == "__main__":
    sys.argv = partial_sampler_overrides(sys.argv)
    run_cli(main)
