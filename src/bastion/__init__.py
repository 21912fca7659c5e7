"""Bastion: attack, harden and guard machine-learning classifiers."""

__version__ = "0.1.0"
