"""What makes a run one run: its folder (identity), the guard against resuming it under
another config, the lock that keeps two jobs out of it, and its lineage (init from a parent)."""
