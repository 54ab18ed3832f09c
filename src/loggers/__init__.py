"""Experiment loggers that need more than Lightning's defaults (resumable CSV)."""
