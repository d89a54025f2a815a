"""Tuned hyperparameters as data: one YAML file per algorithm, one entry per env id, each naming its source."""
