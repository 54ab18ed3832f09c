"""What this machine is and what the lab will do on it, in a few seconds.

    python -m src.doctor              # hardware, matmul peaks, auto's choices, quickstart ETA
    python -m src.doctor --json       # the same as one JSON object

Prints the CPU (model, instruction sets, bf16 units, cores, threads, memory), the CUDA
devices (compute capability, memory, flash-attn), the measured fp32 and bf16 matmul peaks
(the same measurement scripts/bench_train.py divides by for MFU), what `auto` picks here
(precision, attention backend, threads, compile) and the predicted quickstart time, from
timing a few real training steps of the quickstart model under that precision.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

import torch

from src.builders import build_datamodule
from src.models.attention import resolve_backend
from src.runs.identity import compose_train
from src.runs.plan import plan_run
from src.utils.hardware import Hardware, flash_attn_status, onednn_bf16
from src.utils.matmul_peak import matmul_peak
from src.utils.precision import choose_precision, device_type, hardware
from src.utils.runtime import setup_torch, torch_threads
from src.utils.step_timer import bench_algo, time_training_steps

# Seconds of a quickstart spent outside the timed steps and validations (imports, the corpus
# read, BPE training and tokenization, checkpoints, four samples), measured on 2 cores.
QUICKSTART_FIXED_S = 20.0
# A validation forward costs about a third of a training step's forward + backward per token.
FORWARD_SHARE = 1 / 3
EMULATED_BF16_SIZES = (256, 512)  # an emulated bf16 matmul is slow: keep the doctor quick


def compile_policy(device: str) -> str:
    """What training.compile does here (it stays off unless asked: see the README's Speed)."""
    if device == "cuda":
        return ("off by default; training.compile=true pays on CUDA for ladder sizes "
                "(scripts/gpu_smoke.py checks it)")
    return ("off: on CPU a cold compile costs more than it saves over a quickstart-sized run "
            "(README, Precision and speed)")


def measure_peaks(hw: Hardware, device: str) -> dict[str, float]:
    """Measured matmul GFLOP/s in fp32 and bf16 on `device`."""
    bf16_sizes = None
    if device == "cpu" and not hw.cpu.native_bf16:
        bf16_sizes = EMULATED_BF16_SIZES
    return {"fp32": matmul_peak(device, torch.float32, seconds=1.0) / 1e9,
            "bf16": matmul_peak(device, torch.bfloat16, seconds=1.0, sizes=bf16_sizes) / 1e9}


def predict_quickstart(device: str, precision: str,
                       overrides: tuple[str, ...] = ()) -> dict[str, float]:
    """Time a few real training steps of `python -m src.train` and scale them to its run:
    its steps, and its validations over the tokens its validation split really has (the
    corpus is read and tokenized here as the quickstart would, then cached for it)."""
    cfg = compose_train(list(overrides))
    dm = build_datamodule(cfg)
    vocab = dm.tokenizer.vocab_size
    plan = plan_run(cfg, vocab)
    val_sequences = len(dm.dataset("validation"))
    if cfg.training.val_max_batches is not None:
        val_sequences = min(val_sequences,
                            int(cfg.training.val_max_batches) * int(cfg.data.eval_batch_size))
    val_tokens = val_sequences * plan.seq_len
    algo = bench_algo(cfg, vocab, device)
    step_s = time_training_steps(algo, int(cfg.data.batch_size), plan.seq_len, steps=5,
                                 warmup=2, precision=precision)
    # The cadence's validations, and the final one unless the cadence ends on the last step
    # (train.py reuses that one).
    # Each validation scores its tokens once per noise draw (diffusion; AR once), the final
    # one with final_val_draws (a separate pass when that differs).
    cadence = len(range(plan.val_every_n_steps, plan.max_steps + 1, plan.val_every_n_steps))
    draws, final_draws = (int(cfg.training.val_draws), int(cfg.training.final_val_draws)) \
        if algo.stochastic_nll else (1, 1)
    separate_final = plan.max_steps % plan.val_every_n_steps != 0 or final_draws != draws
    validations = cadence + separate_final
    passes = cadence * draws + separate_final * final_draws
    per_token = step_s / plan.tokens_per_step
    val_s = passes * val_tokens * per_token * FORWARD_SHARE
    total = QUICKSTART_FIXED_S + plan.max_steps * step_s + val_s
    return {"step_s": step_s, "steps": plan.max_steps, "tokens_per_s": 1 / per_token,
            "validations": validations, "validation_s": val_s, "predicted_s": total}


def diagnose(predict: bool = True) -> dict[str, Any]:
    hw = hardware()
    device = device_type("auto")
    cpu = hw.cpu
    precision = choose_precision(hw, device)
    report: dict[str, Any] = {
        "cpu": {"model": cpu.model, "features": cpu.features(),
                "native_bf16": cpu.native_bf16,
                "onednn_bf16_supported": onednn_bf16(),
                "logical_cpus": cpu.logical_cpus, "physical_cores": cpu.physical_cores,
                "memory_gib": round(cpu.memory_bytes / 2**30, 1)},
        "cuda": [{"index": d.index, "name": d.name, "capability": d.sm,
                  "memory_gib": round(d.memory_bytes / 2**30, 1), "bf16": d.native_bf16}
                 for d in hw.cuda],
        "flash_attn": flash_attn_status(hw.cuda),
        "torch": torch.__version__,
        "device": device,
        "matmul_gflops": measure_peaks(hw, device),
        "auto": {"precision": precision.value, "reason": precision.reason,
                 "attention": resolve_backend("auto", device), "threads": torch_threads(),
                 "compile": compile_policy(device)},
    }
    if predict:
        report["quickstart"] = predict_quickstart(device, precision.value)
    return report


def format_report(r: dict[str, Any]) -> str:
    cpu, auto, peaks = r["cpu"], r["auto"], r["matmul_gflops"]
    lines = [
        f"CPU      {cpu['model']}",
        f"         instruction sets: {', '.join(cpu['features']) or 'none detected'}",
        f"         fast bf16 matmuls: {'yes' if cpu['native_bf16'] else 'no'} (bf16 units: "
        f"{'yes' if any('BF16' in f for f in cpu['features']) else 'no'}, oneDNN bf16 path: "
        f"{'yes' if cpu['onednn_bf16_supported'] else 'no'})",
        f"         {cpu['physical_cores']} physical cores, {cpu['logical_cpus']} logical CPUs "
        f"usable, {cpu['memory_gib']} GiB memory",
    ]
    if r["cuda"]:
        for d in r["cuda"]:
            cores = "yes" if d["bf16"] else "no"
            lines.append(f"CUDA {d['index']}   {d['name']} ({d['capability']}), "
                         f"{d['memory_gib']} GiB, bf16 tensor cores: {cores}")
    else:
        lines.append("CUDA     no device visible")
    lines += [
        f"flash    {r['flash_attn']}",
        f"matmul   {r['device']}: fp32 {peaks['fp32']:,.1f} GFLOP/s, bf16 {peaks['bf16']:,.1f} "
        f"GFLOP/s (bf16/fp32 = {peaks['bf16'] / max(peaks['fp32'], 1e-9):.2f}x), measured now",
        f"auto     precision {auto['precision']} ({auto['reason']})",
        f"         attention {auto['attention']}, torch threads {auto['threads']}",
        f"         compile {auto['compile']}",
    ]
    q = r.get("quickstart")
    if q:
        lines.append(
            f"quick    python -m src.train: {q['steps']} steps x {q['step_s'] * 1e3:.0f} ms "
            f"({q['tokens_per_s']:,.0f} tokens/s) -> about {q['predicted_s'] / 60:.1f} min "
            f"predicted ({q['validation_s']:.0f} s validation, {QUICKSTART_FIXED_S:.0f} s setup)")
    lines.append(f"torch    {r['torch']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m src.doctor", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-predict", action="store_true", help="skip timing quickstart steps")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    setup_torch()
    t0 = time.perf_counter()
    report = diagnose(predict=not args.no_predict)
    report["doctor_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=2) if args.json else
          format_report(report) + f"\n(doctor took {report['doctor_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
