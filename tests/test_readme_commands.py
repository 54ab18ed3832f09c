"""Every command the README shows runs as written: training commands compose (and pass the
pre-flight checks where they do not need a GPU), evaluate / sample commands compose, the
scripts it names exist and parse their flags, the cheat sheet's overrides compose, and every
path the README's layout names exists."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from functools import cache

import pytest
from hydra import compose, initialize_config_dir

from src.runs.identity import compose_train, identity_of
from src.runs.preflight import check_train_config
from src.sample import partial_sampler_overrides
from src.utils.cli import CONFIG_DIR, check_group_choices
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
GPU_ONLY = ("trainer=gpu", "trainer=fsdp", "hydra/launcher=slurm", "--compile")


def _code_lines() -> list[str]:
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _commands() -> list[tuple[str, list[str]]]:
    """(program, args): program is a module (src.train) or a script path."""
    out = []
    for line in _code_lines():
        line = re.sub(r"<[^>]*>", "placeholder", line)
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value python ...
                words = words[1:]
            if words[:2] == ["python", "-m"]:
                out.append((words[2], words[3:]))
            elif words[:1] == ["python"]:
                out.append((words[1], words[2:]))
            elif words and words[0] in ("bash", "./auto_resubmit.sh"):
                out.append((words[1] if words[0] == "bash" else words[0], []))
    return out


def _overrides(args: list[str]) -> list[str]:
    """Placeholders filled, `-m` dropped, each sweep at its first value."""
    out = []
    for arg in args:
        if arg == "-m":
            continue
        arg = re.sub(r"<[^>]*>", "placeholder", arg)
        key, _, value = arg.partition("=")
        if "," in value and not value.startswith(("[", "{")) and not key.startswith("hydra."):
            value = value.split(",")[0]
        out.append(f"{key}={value}" if _ else arg)
    return out


COMMANDS = _commands()


@pytest.mark.parametrize("args", [a for p, a in COMMANDS if p == "src.train"], ids=" ".join)
def test_training_commands_compose(args):
    overrides = _overrides(args)
    check_group_choices(overrides)
    cfg = compose_train(overrides)
    identity_of(cfg)
    if not any(flag in " ".join(args) for flag in GPU_ONLY):
        check_train_config(cfg)


@pytest.mark.parametrize("program, args", [(p, a) for p, a in COMMANDS
                                           if p in ("src.evaluate", "src.sample", "src.run_dir",
                                                    "src.export", "src.lm_eval", "src.zeroshot")],
                         ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_evaluate_sample_and_run_dir_commands_compose(program, args):
    overrides = _overrides(args)
    if program == "src.run_dir":
        identity_of(compose_train(overrides))
        return
    if program == "src.sample":
        overrides = partial_sampler_overrides(overrides)
    check_group_choices(overrides)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        compose(program.split(".")[1], overrides=overrides)


SCRIPTS = sorted({p for p, _ in COMMANDS if p.endswith((".py", ".sh"))
                  or p in ("src.data.prepare", "src.export.import_model")}
                 - {"scripts/install.sh", "scripts/model_stats.py"})


def _help_command(program: str) -> list[str]:
    cmd = ([sys.executable, "-m", program] if program.startswith("src.") else
           ["bash", program] if program.endswith(".sh") else [sys.executable, program])
    return [*cmd, "--help"]


@cache
def _all_help() -> dict[str, tuple[int, str]]:
    """Every script's --help, two processes at a time (each spends seconds importing torch)."""
    from concurrent.futures import ThreadPoolExecutor

    def run(program: str) -> tuple[int, str]:
        proc = subprocess.run(_help_command(program), cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        return proc.returncode, proc.stdout + proc.stderr

    existing = [p for p in SCRIPTS if p.startswith("src.") or (ROOT / p).is_file()]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(existing, pool.map(run, existing)))


@pytest.mark.parametrize("program", SCRIPTS)
def test_named_scripts_exist_and_parse(program):
    if not program.startswith("src."):
        assert (ROOT / program).is_file(), program
    returncode, output = _all_help()[program]
    assert returncode == 0 and "usage" in output.lower(), output[-2000:]


def test_model_stats_prints_what_the_readme_shows():
    (args,) = [a for p, a in COMMANDS if p == "scripts/model_stats.py"
               and any(x.startswith("flops_budget=") for x in a)]
    shown = re.search(r'# (\{"params": (\d+), \.\.\., "max_steps": \{"reference": (\d+), '
                      r'"6N": (\d+), "full": (\d+))', README)
    proc = subprocess.run([sys.executable, "scripts/model_stats.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for number in shown.groups()[1:]:
        assert number in proc.stdout, (number, proc.stdout)


def test_published_shape_counts_what_the_readme_says():
    """`model_stats.py model=gidd_mask_3b vocab_size=131072   # 2.04B non-embedding`."""
    (args,) = [a for p, a in COMMANDS if p == "scripts/model_stats.py" and "model=gidd_mask_3b" in a]
    said = float(re.search(r"model=gidd_mask_3b vocab_size=131072 +# ([\d.]+)B non-embedding",
                           README).group(1))
    proc = subprocess.run([sys.executable, "scripts/model_stats.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert round(json.loads(proc.stdout)["non_embedding_params"] / 1e9, 2) == said


def _cheat_sheet_snippets() -> list[list[str]]:
    """The overrides of each backticked snippet of the cheat sheet (first alternative)."""
    table = README.split("## Override cheat sheet")[1].split("\n\n")[1]
    out = []
    for row in table.splitlines()[2:]:
        for snippet in re.findall(r"`([^`]*)`", row.split("|", 2)[2].replace("\\|", "\x00")):
            words = [w.split("\x00")[0] for w in re.sub(r"<[^>]*>", "placeholder", snippet).split()
                     if "=" in w and not w.startswith(("DLM_", "WANDB_"))]
            if words:
                out.append(words)
    return out


@pytest.mark.parametrize("snippet", _cheat_sheet_snippets(), ids=" ".join)
def test_cheat_sheet_overrides_compose(snippet):
    """Each snippet composes, with the algo its algo.* keys belong to."""
    overrides = _overrides([w for w in snippet if w != "-m"])
    check_group_choices(overrides)
    if any(o.startswith("algo=") for o in overrides) or not any(o.startswith("algo.") for o in overrides):
        compose_train(overrides)
        return
    errors = []
    for algo in ("mdlm", "ar", "duo", "esolm", "gidd", "duo_distill"):
        try:
            compose_train([f"algo={algo}", *overrides])
            return
        except Exception as err:  # noqa: BLE001
            errors.append(f"{algo}: {str(err).splitlines()[0]}")
    pytest.fail(f"{snippet} composes with no algo: {errors}")


def test_layout_paths_exist():
    layout = README.split("## Layout")[1].split("```")[1]
    base = ""
    for line in layout.splitlines():
        words = line.split()
        if not words:
            continue
        if not line[0].isspace():  # an indented line continues the folder above
            base = words[0].rstrip("/") if "/" in words[0] else ""
        for name in re.findall(r"\b([\w./]+\.(?:py|sh|yaml))\b", line):
            path = ROOT / name if "/" in name and not base.startswith("src/") else ROOT / base / name
            assert path.exists() or (ROOT / name).exists(), (line, name)
        for folder in re.findall(r"\b(\w+)/(?=\s|$)", " ".join(words[1:])):
            root = ROOT / "configs" if base == "configs" else ROOT / base
            assert (root / folder).is_dir() or (ROOT / folder).is_dir(), (line, folder)


def test_layout_names_every_package_and_module():
    """The layout lists the whole tree: every src/ package and every module in it."""
    layout = README.split("## Layout")[1].split("```")[1]
    named = set(re.findall(r"[\w]+\.py", layout)) | set(re.findall(r"src/(\w+)/", layout))
    for path in sorted((ROOT / "src").rglob("*.py")):
        if path.name == "__init__.py":
            continue
        assert path.name in named, f"README layout does not name {path.relative_to(ROOT)}"
    for package in sorted(p.name for p in (ROOT / "src").iterdir() if (p / "__init__.py").is_file()):
        assert package in named, f"README layout does not name src/{package}/"
