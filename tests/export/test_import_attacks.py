"""An imported folder's config.json is data (issue 22): its values become checked literal
overrides, never override grammar, so no value can smuggle a `_target_` that `instantiate`
would call. Each attack ends in one line naming the file and the key, and no code runs
(a marker file stays absent). Also the head-count check against the rotary buffer."""

from __future__ import annotations

import copy
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from src.export.import_model import import_model
from src.utils.cli import UserError
from tests.conftest import ROOT
from tests.export.test_import import reference_state


def lab_attacks(marker: Path) -> dict[str, tuple[tuple[str, ...], object]]:
    """{name: (path into config.json, value)} on a src.export folder's config.json."""
    grammar = f"{{_target_:src.utils.atomic.atomic_write_text,path:{marker},text:x}}"
    return {
        "override grammar in a leaf": (("dit", "dropout"), grammar),
        "target key in the model": (("dit", "_target_"), "src.utils.atomic.atomic_write_text"),
        "interpolation": (("dit", "dim"), "${oc.env:HOME}"),
        "unknown key": (("dit", "dimm"), 64),
        "algo choice injected": (("algo", "algo"), "mdlm model._target_=pathlib.Path.touch"),
        "string for a flag": (("algo", "time_conditioning"), "true,model.dropout=0.5"),
        "noise parameter": (("algo", "noise", "eps"), grammar),
        "mapping where a number goes": (("seq_len",), {"_target_": "builtins.int"}),
        "key with override syntax": (("dit", "dim=1,model._target_"), 1),
    }


def _attacked(folder: Path, tmp_path: Path, where: tuple[str, ...], value: object) -> Path:
    out = tmp_path / "attacked"
    shutil.copytree(folder, out)
    config = json.loads((out / "config.json").read_text())
    node = config
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = copy.deepcopy(value)
    (out / "config.json").write_text(json.dumps(config))
    return out


@pytest.mark.parametrize("name", list(lab_attacks(Path("m"))))
def test_export_config_json_is_data(exports, tmp_path, name):
    marker = tmp_path / "marker"
    where, value = lab_attacks(marker)[name]
    folder = _attacked(exports["mdlm"], tmp_path, where, value)
    with pytest.raises(UserError) as err:
        import_model(folder, tmp_path / "run", [])
    message = str(err.value)
    assert "\n" not in message and "config.json" in message, message
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_reference_config_json_is_data(tmp_path):
    marker = tmp_path / "marker"
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file({f"backbone.{k}": v for k, v in reference_state().items()},
              str(folder / "model.safetensors"))
    for value in (f"{{_target_:pathlib.Path.touch,self:{marker}}}", "4,model._target_=x", 4.5):
        (folder / "config.json").write_text(json.dumps({"model_type": "mdlm", "n_heads": value}))
        with pytest.raises(UserError, match=r"config.json: model.n_heads"):
            import_model(folder, tmp_path / "run", ["data=shakespeare_byte"])
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("program", ["src.zeroshot", "src.lm_eval"])  # they read HF folders
def test_cli_on_an_attacked_folder_says_one_line(exports, tmp_path, program):
    marker = tmp_path / "marker"
    folder = _attacked(exports["mdlm"], tmp_path, *lab_attacks(marker)["override grammar in a leaf"])
    extra = ["tasks=[x]"] if program == "src.lm_eval" else []
    proc = subprocess.run([sys.executable, "-m", program, f"ckpt={folder}", *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "model.dropout" in lines[0], proc.stderr[-2000:]
    assert not marker.exists()


def test_head_count_is_checked_against_the_rotary_buffer(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file(reference_state(dim=64, heads=4), str(path))
    with pytest.raises(UserError, match=r"model.n_heads=8 gives head dim 8, but its "
                                        r"rotary_emb.inv_freq was built for head dim 16: pass "
                                        r"model.n_heads=4"):
        import_model(path, tmp_path / "run", ["model.n_heads=8", "data=shakespeare_byte"])
    assert not (tmp_path / "run").exists()
    assert import_model(path, tmp_path / "run", ["model.n_heads=4",
                                                 "data=shakespeare_byte"])["n_heads"] == 4


def test_head_count_without_a_rotary_buffer_is_said(tmp_path, caplog):
    state = reference_state(dim=64, heads=4)
    del state["rotary_emb.inv_freq"]
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path))
    with caplog.at_level(logging.WARNING, logger="src.export.import_model"):
        import_model(path, tmp_path / "run", ["model.n_heads=8", "data=shakespeare_byte"])
    lines = [r.getMessage() for r in caplog.records if "cannot be verified" in r.getMessage()]
    assert len(lines) == 1 and "model.n_heads=8" in lines[0]


def test_another_rope_base_is_refused(tmp_path):
    state = reference_state(dim=64, heads=4)
    state["rotary_emb.inv_freq"] = 1.0 / (500_000 ** (torch.arange(0, 16, 2).float() / 16))
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match="not RoPE with base 10000"):
        import_model(path, tmp_path / "run", ["model.n_heads=4", "data=shakespeare_byte"])
