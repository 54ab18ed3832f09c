"""Talking to a Slurm cluster from the outside: its queue, and the faults a chaos sweep throws."""
