"""Run an entry point's command line inside the test process (no 10 s interpreter start-up
with torch + Lightning imports) and return the error line it would print.

One real subprocess per entry point stays in the suites (the exit status and the absence of
other stderr lines); the other bad-input cases use this.
"""

from __future__ import annotations

import sys

from hydra.core.global_hydra import GlobalHydra

from src.utils.cli import CONFIG_DIR, run_cli

# In-process, Hydra resolves the decorator's relative config_path as a Python package; point
# it at the folder instead, and keep Hydra quiet without touching the test process's logging: a
# null root makes Hydra skip dictConfig, whose `disable_existing_loggers` (set by the `disabled`
# logging config) would silence every module logger created so far, and with them the caplog
# checks of later tests.
CONFIG = ("--config-path", str(CONFIG_DIR))
QUIET = ("hydra/job_logging=disabled", "hydra/hydra_logging=disabled",
         "hydra.job_logging.root=null", "hydra.hydra_logging.root=null")


def cli_error(main: object, module: str, *args: str) -> str:
    """`python -m <module> <args>` in-process; returns its `error: ...` line (fails if none)."""
    argv = sys.argv
    sys.argv = [module, *CONFIG, *args, *QUIET]
    try:
        run_cli(main, check_keys=module == "src.train")  # type: ignore[arg-type]
    except SystemExit as stop:
        message = str(stop.code)
        assert message.startswith("error:"), f"exit without an error line: {stop.code!r}"
        assert "\n" not in message, message
        return message
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    raise AssertionError(f"python -m {module} {' '.join(args)} did not fail")
