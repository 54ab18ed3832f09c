"""Exact resume and preemption: atomic checkpoint files, choosing the checkpoint to resume
from (with a fallback past corrupt files), and the stop signals a cluster sends.

The training state needs no RNG state to resume exactly: all training noise is a pure
function of (seed, optimizer step, position in the global batch) (src/algos/base.py) and
the data stream restarts at the datamodule's ``consumed_batches``.
"""
