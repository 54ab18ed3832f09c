"""A CSV logger whose `metrics.csv` survives resumption.

Lightning's CSVLogger deletes an existing `metrics.csv` when a new process starts logging
into the same folder, so a resumed run would keep only its last segment. This one keeps the
rows, drops those the resumed run logs again (every row at or after the first step it logs:
the steps after the checkpoint are replayed exactly) and rewrites the file atomically when
the header grows.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from src.utils.atomic import atomic_write


class ResumableExperimentWriter(ExperimentWriter):
    """Appends to an existing `metrics.csv` instead of deleting it."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self._trimmed = False

    def _check_log_dir_exists(self) -> None:
        return None  # the parent deletes metrics.csv here: that is what we must not do

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if not self._trimmed and step is not None:
            self._trim_from(step)
        super().log_metrics(metrics_dict, step)

    def _trim_from(self, step: int) -> None:
        """Keep only the rows before `step`, the first step this process logs."""
        self._trimmed = True
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = [r for r in reader if _step_of(r) < step]
        self.metrics_keys = header
        self._write_all(header, rows)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        self._write_all(fieldnames, rows)

    def _write_all(self, fieldnames: list[str], rows: list[dict[str, Any]]) -> None:
        # Temp file + rename: a job killed mid-rewrite leaves the old file, not half of it.
        def write(f: Any) -> None:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)

        atomic_write(self.metrics_file_path, write, newline="")


def _step_of(row: dict[str, Any]) -> float:
    try:
        return float(row.get("step") or "nan")
    except ValueError:
        return float("nan")


class ResumableCSVLogger(CSVLogger):
    """CSVLogger (same arguments) writing through ResumableExperimentWriter."""

    @property
    @rank_zero_experiment  # other ranks get a no-op writer, as with CSVLogger
    def experiment(self) -> ResumableExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ResumableExperimentWriter(log_dir=self.log_dir)
        return self._experiment
