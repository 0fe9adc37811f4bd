"""The lionsweep control plane: REST sweeps on SQL-backed Optuna studies. Never imports torch."""
