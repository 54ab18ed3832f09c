"""Samplers for AR and masked-diffusion language models (float64 Gumbel-max throughout)."""

from src.samplers.ancestral import MDLMAncestral
from src.samplers.ar import ARSampler
from src.samplers.base import Sampler
from src.samplers.duo import DUOAncestral
from src.samplers.categorical import (
    apply_temperature,
    gumbel_from_uniform,
    gumbel_noise,
    sample_categorical,
    top_p_filter,
    uniform64,
)
from src.samplers.factory import build_sampler

__all__ = [
    "ARSampler",
    "DUOAncestral",
    "MDLMAncestral",
    "Sampler",
    "apply_temperature",
    "build_sampler",
    "gumbel_from_uniform",
    "gumbel_noise",
    "sample_categorical",
    "top_p_filter",
    "uniform64",
]
