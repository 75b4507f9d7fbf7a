"""Offline datasets: D4RL-format HDF5 files with D4RL's semantics, local Minari datasets, and the
D4RL-style datasets this project makes from gymnasium MuJoCo with its shipped behaviour actors.

Modules, each importing only those above it in this list:
  envs.py            D4RL names, reference returns, the gymnasium envs behind them
  d4rl.py            HDF5 reading/writing, checks, `qlearning_dataset`, CORL's normalisations
  behavior_policy.py the behaviour actors (trained online with SAC) and their replay buffers
  make_dataset.py    random / medium / medium-replay / expert / medium-expert files
  minari_io.py       local Minari datasets <-> D4RL-format transitions
  training_data.py   a run's training set from whichever source its config names
"""
