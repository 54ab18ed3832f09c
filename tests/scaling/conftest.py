"""Shared fixtures for the scaling-law tests: synthetic tables from known laws."""

import os

# Single-threaded BLAS keeps the many tiny L-BFGS runs fast (src/scaling/threads.py);
# effective when this suite is the first to load scipy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from src.scaling.synthetic import isoflop_table, repeated_data_table  # noqa: E402
from src.scaling.table import prepare_table  # noqa: E402


@pytest.fixture(scope="session")
def chinchilla_rows() -> pd.DataFrame:
    """Prepared IsoFLOP sweep from the Chinchilla law: 7 budgets x 9 sizes, 0.5% noise."""
    return prepare_table(isoflop_table(seed=0))


@pytest.fixture(scope="session")
def repeated_rows() -> pd.DataFrame:
    """Prepared multi-epoch sweep from the Chinchilla law with R* = 15.4."""
    return prepare_table(repeated_data_table(r_star=15.4, seed=0))
