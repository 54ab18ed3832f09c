"""Copy the repo modules an exported model runs on into its folder, importable without `src`.

Hugging Face's `trust_remote_code` loads `modeling_dlm.py` from the model folder and the
files it imports relatively (`from .x import y`). So the exported code is this repo's own
code, not a second copy to keep in sync: starting from the entry module, every
`from src.a.b import c` is followed, each module is written flat as `a_b.py`, and its
imports are rewritten to `from .a_b import c`. Only the standard library and the packages
in `ALLOWED_PACKAGES` may be imported by what gets copied (checked with transformers' own
import scan, which also reads imports inside functions).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]
#: What a machine loading the export needs besides the standard library.
ALLOWED_PACKAGES = frozenset({"torch", "transformers", "safetensors", "tqdm", "yaml"})
_FROM_SRC = re.compile(r"^(\s*)from src\.([\w.]+) import", flags=re.MULTILINE)


def flat_name(module: str) -> str:
    """`src.samplers.base` -> `samplers_base` (one folder, no package)."""
    return module.removeprefix("src.").replace(".", "_")


def module_path(module: str) -> Path:
    path = SRC.parent / Path(*module.split(".")).with_suffix(".py")
    if not path.is_file():
        raise FileNotFoundError(f"{module} is not a module file under src/")
    return path


def src_imports(path: Path) -> list[str]:
    """The `src.*` modules a file imports (anywhere in it, functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(a.name.startswith("src") for a in node.names):
            raise ValueError(f"{path}: write `from src.x import y`, not `import src.x`, so "
                             "the export can rewrite it")
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.startswith("src."):
            found.append(node.module)
    return found


def closure(entry: str) -> list[str]:
    """`entry` and every `src` module it reaches, in discovery order."""
    seen: list[str] = []
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.append(module)
        todo.extend(m for m in src_imports(module_path(module)) if m not in seen)
    return seen


def third_party(path: Path) -> set[str]:
    """Top-level packages a file imports that are neither stdlib nor relative."""
    from transformers.dynamic_module_utils import get_imports

    return {m for m in get_imports(str(path)) if m not in sys.stdlib_module_names}


def vendor(entry: str, out: Path, entry_name: str) -> list[str]:
    """Write `entry`'s closure into `out` (the entry as `<entry_name>.py`); return file names.

    Raises:
        ValueError: a copied module imports a package outside `ALLOWED_PACKAGES` (the
            export would not load with torch + transformers + safetensors alone).
    """
    names = {m: flat_name(m) for m in closure(entry)}
    names[entry] = entry_name
    written = []
    for module, name in names.items():
        text = module_path(module).read_text(encoding="utf-8")
        text = _FROM_SRC.sub(lambda m: f"{m.group(1)}from .{names['src.' + m.group(2)]} import", text)
        target = Path(out) / f"{name}.py"
        target.write_text(text, encoding="utf-8")
        extra = third_party(target) - ALLOWED_PACKAGES
        if extra:
            raise ValueError(f"{module} imports {sorted(extra)}: the exported model must run "
                             f"on {sorted(ALLOWED_PACKAGES)} alone; move that import out")
        written.append(target.name)
    return written
