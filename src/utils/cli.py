"""Entry-point helpers: bad input ends with one clear error line naming the fix.

Set DLM_DEBUG=1 to get the full traceback instead.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

from src.utils.atomic import disk_full_cause

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CHECKED_GROUPS = ("algo", "model", "data", "sampler", "noise", "lr_scheduler", "trainer", "flops",
                  "logger", "experiment", "optim")


class UserError(Exception):
    """Bad input or a refused action that the user can fix; its message names the fix."""


USER_ERRORS = (UserError, ValueError, FileNotFoundError, NotADirectoryError, KeyError)


def disk_full_message(err: OSError) -> str:
    """One line for a write the disk refused. Every file the lab writes is written to a temp
    file and renamed (src/utils/atomic.py), so what was complete before is still there."""
    where = f" writing {err.filename}" if err.filename else ""
    fix = ("raise the file-size limit (ulimit -f)" if err.errno == errno.EFBIG else
           "free space there")
    return (f"{os.strerror(err.errno or errno.ENOSPC)}{where}: {fix}, or point paths.log_dir / "
            f"paths.cache_dir at a larger disk, then rerun the same command (checkpoints "
            f"already written are intact; a run resumes from its last one)")


def group_options(group: str) -> list[str]:
    folder = CONFIG_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


# Config groups mounted under another key: `noise=cosine` must be spelled with the package.
MOUNTED_GROUPS = {"noise": "algo.noise"}


def check_group_choices(argv: list[str]) -> None:
    """Reject `algo=foo`-style overrides that name no config file, listing the valid ones."""
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if sep and key in MOUNTED_GROUPS:
            raise SystemExit(f"error: {key}={value}: the {key} schedule is part of the algo: use "
                             f"{key}@{MOUNTED_GROUPS[key]}={value}")
        if not sep or key not in CHECKED_GROUPS or value in ("null", ""):
            continue
        options = group_options(key)
        for choice in value.split(","):  # multirun: algo=ar,mdlm
            if choice not in options and not choice.startswith(("glob(", "range(", "choice(")):
                raise SystemExit(
                    f"error: unknown {key} {choice!r}: choose one of {', '.join(options)} "
                    f"(configs/{key}/)"
                )


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors raised inside `fn` into a single `error: ...` line and exit code 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InstantiationException as e:
            # Hydra wraps a constructor's error in several lines: surface a user error's own.
            cause = e.__cause__
            if os.environ.get("DLM_DEBUG") or not isinstance(cause, USER_ERRORS):
                raise
            raise SystemExit(f"error: {cause}") from None
        except MissingMandatoryValue as e:
            if os.environ.get("DLM_DEBUG"):
                raise
            key = e.full_key or "a required value"
            raise SystemExit(f"error: {key} is required: pass {key}=... on the command line "
                             f"(see the config's comment for what it takes)") from None
        except USER_ERRORS as e:
            if os.environ.get("DLM_DEBUG"):
                raise
            message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            raise SystemExit(f"error: {message}") from None
        except Exception as e:  # only a refused write (full disk) becomes a line
            full = disk_full_cause(e)
            if os.environ.get("DLM_DEBUG") or full is None:
                raise
            raise SystemExit(f"error: {disk_full_message(full)}") from None

    return wrapper


def run_cli(main: Callable[[], Any], check_keys: bool = False) -> None:
    """Check the command line (group names; with `check_keys`, the training keys: see
    src/utils/override_keys.py), then run the Hydra entry point."""
    check_group_choices(sys.argv[1:])
    if check_keys:
        from src.runs.identity import compose_train
        from src.utils.override_keys import check_override_keys

        overrides = [a for a in sys.argv[1:] if re.match(r"^[+~]*[\w.@/-]+=", a)
                     and not a.lstrip("+~").startswith("hydra")]
        one_line_errors(check_override_keys)(overrides, compose_train)
    main()
