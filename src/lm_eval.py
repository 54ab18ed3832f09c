"""lm-evaluation-harness on a run of this repo.

    python -m src.lm_eval ckpt=<run dir | .ckpt | HF folder> tasks=lambada_openai
    python -m src.lm_eval ckpt=<run> tasks=[my_task.yaml,wikitext] limit=100

A task is a registered lm-eval name or a path to a task YAML (its folder is added to the
task search path). The model is `dlm_lab` (src/eval/harness.py); lm-eval's own CLI works
once that module is imported:

    python -c "import sys, src.eval.harness, lm_eval.__main__ as m; sys.argv[0] = 'lm_eval'; \
        m.cli_evaluate()" --model dlm_lab --model_args ckpt=<run>,mc_samples=32 \
        --tasks my_task --include_path <folder with my_task.yaml>
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import yaml
from omegaconf import DictConfig, ListConfig

from src.runs.preflight import check_required
from src.results import emit
from src.utils.cli import UserError, one_line_errors, run_cli
from src.utils.resolvers import register_resolvers
from src.utils.runtime import setup_torch

register_resolvers()


class _TaskYamlLoader(yaml.SafeLoader):
    """Safe YAML that reads lm-eval's `!function module.name` tags as plain strings."""


_TaskYamlLoader.add_multi_constructor("!", lambda loader, tag, node: str(node.value))


def _task_name(path: Path) -> str:
    """The `task:` of a task YAML; a file that is not YAML is one line with where it breaks."""
    try:
        spec = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskYamlLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path} is not valid YAML ({getattr(err, 'problem', err)}{where}): "
                        f"fix the task file") from None
    if not isinstance(spec, dict) or not spec.get("task"):
        raise UserError(f"{path} has no `task:` name")
    return str(spec["task"])


def task_names(tasks: Any) -> tuple[list[str], list[str]]:
    """(task names, include paths): a YAML path contributes its `task:` name and folder."""
    items = list(tasks) if isinstance(tasks, (list, tuple, ListConfig)) else [tasks]
    names, include = [], []
    for item in map(str, items):
        path = Path(item)
        if path.suffix in (".yaml", ".yml"):
            if not path.is_file():
                raise UserError(f"task file {path} does not exist")
            names.append(_task_name(path))
            include.append(str(path.resolve().parent))
        else:
            names.append(item)
    return names, sorted(set(include))


def run_lm_eval(cfg: DictConfig) -> dict[str, Any]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from src.eval.harness import LabLM

    check_required(cfg)
    names, include = task_names(cfg.tasks)
    model = LabLM(ckpt=str(cfg.ckpt), mc_samples=cfg.mc_samples, mc_batch=cfg.mc_batch,
                  seed=cfg.seed, sampler=cfg.sampler, steps=cfg.steps,
                  max_length=cfg.max_length, device=cfg.device)
    try:
        results = lm_eval.simple_evaluate(
            model=model, tasks=names, num_fewshot=cfg.num_fewshot, limit=cfg.limit,
            task_manager=TaskManager(include_path=include or None), log_samples=False,
            random_seed=int(cfg.seed), numpy_random_seed=int(cfg.seed),
            torch_random_seed=int(cfg.seed), fewshot_random_seed=int(cfg.seed))
    except ConnectionError as err:  # a registered task whose data set is on the hub, offline
        raise UserError(f"tasks={','.join(names)}: its data cannot be downloaded here "
                        f"({str(err).splitlines()[0][:160]}); run with network access once "
                        f"(the data is cached), or give a task YAML over local files "
                        f"(README: lm-eval)") from None
    return {"checkpoint": str(cfg.ckpt), "algo": model.algo.name, "tasks": names,
            "mc_samples": model.mc_samples, "results": results["results"]}


@hydra.main(config_path="../configs", config_name="lm_eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    setup_torch()
    result = one_line_errors(run_lm_eval)(cfg)
    emit(result, cfg.out, shown=result["results"])


if __name__ == "__main__":
    run_cli(main)
