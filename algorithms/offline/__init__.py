"""Offline RL: the POGO chain, the base algorithms, data and evaluation."""
