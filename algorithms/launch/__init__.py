"""Launchers for multi-run commands (the sweep scripts, the chain study): a local process pool or
SLURM job arrays through submitit, over one record of the sweep (`sweep.py`) and the runs' own
directories. `python -m algorithms.launch --help` shows the status and resubmit commands."""
