"""POGO multi-actor on CORL-style offline RL algorithms."""
