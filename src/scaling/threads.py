"""Keep BLAS single-threaded while running thousands of tiny optimisations.

scipy's L-BFGS-B calls BLAS on 5x5-sized problems; with a multi-threaded
OpenBLAS on a busy machine, thread wake-ups cost ~10x the arithmetic. The
scripts set ``OPENBLAS_NUM_THREADS=1`` before numpy loads; inside a running
process, ``threadpoolctl`` (optional) can lower the count temporarily.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread inside the block when threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
