"""forgetting-lab: a laboratory for measuring catastrophic forgetting."""

__version__ = "0.1.0"
