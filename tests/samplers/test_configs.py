"""configs/sampler/*.yaml instantiate through Hydra `_target_`."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.samplers import ARSampler, MDLMAncestral, build_sampler

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    ("name", "cls", "attrs"),
    [
        ("ar", ARSampler, {"temperature": 1.0, "top_p": 1.0, "use_kv_cache": True}),
        ("ancestral", MDLMAncestral, {"steps": 128, "cache": False, "top_p": 1.0}),
        ("ancestral_cache", MDLMAncestral, {"steps": 128, "cache": True, "top_p": 1.0}),
    ],
)
def test_config_instantiates(name: str, cls: type, attrs: dict[str, object]) -> None:
    sampler = build_sampler(OmegaConf.load(CONFIGS / "sampler" / f"{name}.yaml"))
    assert type(sampler) is cls
    assert {k: getattr(sampler, k) for k in attrs} == attrs
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(overrides=[f"+sampler={name}"])
    assert type(build_sampler(cfg.sampler, top_p=0.9)) is cls


def test_build_by_name() -> None:
    assert build_sampler("ancestral", steps=8).steps == 8
    with pytest.raises(ValueError, match="choose one of"):
        build_sampler("nope")
    with pytest.raises(ValueError, match="no _target_"):
        build_sampler({"steps": 3})
